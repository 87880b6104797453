"""Math word problems with worked rationales (GSM8K style), and the task kind `math`.

`load_math` gives raw records `{"question", "rationale", "answer"}`: GSM8K's answer field is
the rationale (with `<<a=b>>` calculator marks kept) then `#### <final answer>`.
`load_math_splits(MathTask)` gives `Problem`s (marks removed) for training and evaluation:

    tasks: {dataset: gsm_symbolic, train_size: 200, gsm8k_size: 300}

For `gsm_symbolic` whole templates are held out: a seeded permutation of the templates
gives `validation_templates` for validation, `test_templates` for test and the rest for
training, so no instance of a held-out template is trained on; the optional `gsm8k` split
holds GSM8K test questions that no training template was made from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import NonNegativeInt, PositiveInt, field_validator, model_validator

from scalelab.config import Strict
from scalelab.data import catalog
from scalelab.data.loaders import not_found_error, split_files
from scalelab.data.tasks import register_task_kind
from scalelab.errors import ScalelabError

Record = dict[str, str]
SPLITS = ("train", "validation", "test")
# gsm_symbolic split sizes when not given (problems; the templates are unlimited).
DEFAULT_SIZES = {"train": 200, "validation": 50, "test": 100}


@dataclass(frozen=True)
class Problem:
    """One math word problem with its gold worked solution.

    id: stable, `gsm8k/test/17` or `gsm_symbolic/0042/3` (template 42, instance 3);
    rationale: the solution without `<<...>>` calculator marks and without `#### N`;
    answer: the final answer without commas (`1200`, `-3`, `2.5`);
    template: the GSM-Symbolic template id (None for other problems);
    id_orig: the index of the GSM8K test question it derives from (a GSM8K test problem:
    its own index; None when unknown, e.g. a local file);
    options: a multiple-choice question's option texts (`data/mcqa.py`; its answer is then
    the gold option's letter and its rationale may be ""); () for a math problem.
    """

    id: str
    question: str
    rationale: str
    answer: str
    template: int | None = None
    id_orig: int | None = None
    options: tuple[str, ...] = ()


def parse_gsm8k(record: dict, where: str) -> Record:
    """Split a GSM8K `answer` into rationale and final answer (commas dropped)."""
    try:
        question, full = record["question"], record["answer"]
        rationale, _, final = full.rpartition("####")
    except (KeyError, TypeError, AttributeError):
        raise ScalelabError(f"{where}: expected fields question and answer") from None
    if not rationale:
        raise ScalelabError(f"{where}: answer has no '#### <final answer>' line")
    return {
        "question": question.strip(),
        "rationale": rationale.strip(),
        "answer": final.strip().replace(",", ""),
    }


def _read(path: Path) -> list[Record]:
    from scalelab.io import read_jsonl_records

    return [parse_gsm8k(record, where) for where, record in read_jsonl_records(path)]


def load_math(name_or_path: str) -> dict[str, list[Record]]:
    """Problems per split, only the splits that exist (GSM8K offline: `test` only).

    A local `.jsonl` file counts as `test`; a local folder may hold train/validation/test
    `.jsonl` files.
    """
    if name_or_path == "gsm_symbolic":
        raise ScalelabError("gsm_symbolic holds templates, not problems: use a math task")
    if name_or_path in catalog.DATASETS:
        entry = catalog.get_dataset(name_or_path)
        if entry.kind != "math":
            raise ScalelabError(f"dataset {entry.name!r} is a {entry.kind} dataset, not math")
        files = catalog.fetch_files(entry)
        if "hub" in files:
            files = split_files(files["hub"], (".jsonl",))
        return {split: _read(path) for split, path in files.items()}
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return {s: _read(p) for s, p in split_files(path, (".jsonl",)).items()}
    if path.is_file():
        return {"test": _read(path)}
    raise not_found_error(name_or_path)


# --- the task kind `math` --------------------------------------------------------------


class MathTask(Strict):
    """Math word problems with rationales (`load_math_splits`).

    dataset: `gsm_symbolic`, `gsm8k`, or a local GSM8K-format `.jsonl` file (its `test`
    split) or folder of train/validation/test `.jsonl` files;
    train_size / validation_size / test_size: problems per split (gsm_symbolic: instances
    drawn, default 200/50/100; other datasets: a cap on the first N, default all);
    gsm8k_size (gsm_symbolic only): a `gsm8k` split of up to N GSM8K test questions that no
    training template was made from (0: none);
    validation_templates / test_templates (gsm_symbolic only): templates held out whole;
    data_seed: which templates go where and which instances are drawn.
    """

    kind: Literal["math"] = "math"
    dataset: str
    train_size: PositiveInt | None = None
    validation_size: PositiveInt | None = None
    test_size: PositiveInt | None = None
    gsm8k_size: NonNegativeInt = 0
    validation_templates: PositiveInt = 10
    test_templates: PositiveInt = 20
    data_seed: NonNegativeInt = 0

    @field_validator("dataset")
    @classmethod
    def _known_math_dataset(cls, dataset: str) -> str:
        if dataset != "gsm_symbolic":
            _splits_of(dataset)  # unknown, or not a math dataset: a ValueError
        return dataset

    @model_validator(mode="after")
    def _check(self) -> MathTask:
        symbolic = self.dataset == "gsm_symbolic"
        if symbolic and self.validation_templates + self.test_templates >= TEMPLATE_COUNT:
            raise ValueError(
                f"validation_templates + test_templates ({self.validation_templates} + "
                f"{self.test_templates}) leave no training template of the {TEMPLATE_COUNT} "
                "that instantiate"
            )
        if self.gsm8k_size > GSM8K_TEST:
            raise ValueError(f"gsm8k_size: GSM8K has {GSM8K_TEST:,} test questions, not "
                             f"{self.gsm8k_size:,}")  # fmt: skip
        only = {"gsm8k_size", "validation_templates", "test_templates"} & self.model_fields_set
        if not symbolic and only:
            raise ValueError(f"{sorted(only)[0]} is for dataset gsm_symbolic only")
        if not symbolic:
            present = _splits_of(self.dataset)
            for split in SPLITS:
                if getattr(self, f"{split}_size") is not None and split not in present:
                    raise ValueError(
                        f"{split}_size: dataset {self.dataset!r} has no {split} split "
                        f"(it has: {', '.join(present) or 'none'})"
                    )
        return self


# English GSM-Symbolic templates in the catalog's package that instantiate: 100 less the
# two broken ones `gsm_symbolic.screen` leaves out (a test checks the two agree).
TEMPLATE_COUNT = 98
GSM8K_TEST = 1319  # GSM8K's test questions


def task_splits(task: MathTask) -> list[str]:
    """The splits a math task's runs will have (known at spec time, no data read)."""
    if task.dataset == "gsm_symbolic":
        return [*SPLITS, *(["gsm8k"] if task.gsm8k_size else [])]
    return _splits_of(task.dataset)


def _splits_of(dataset: str) -> list[str]:
    """The splits a non-gsm_symbolic math dataset offers, checked at spec time. Raises
    ValueError for an unknown dataset or one of another kind."""
    if dataset in catalog.DATASETS:
        entry = catalog.get_dataset(dataset)
        if entry.kind != "math":
            raise ValueError(f"dataset {dataset!r} is a {entry.kind} dataset, not math")
        return [s for s in SPLITS if s in entry.splits]
    path = Path(dataset).expanduser()
    if path.is_dir():
        return [s for s in SPLITS if s in split_files(path, (".jsonl",))]
    if path.is_file():
        return ["test"]
    raise ValueError(str(not_found_error(dataset)))


register_task_kind("math", MathTask)


def load_math_splits(task: MathTask) -> dict[str, list[Problem]]:
    """train/validation/test (+ `gsm8k`) problems of a math task.

    gsm_symbolic: the templates that instantiate (`gsm_symbolic.screen`) are split by a
    permutation seeded with `data_seed` into validation, test and training templates;
    each split's instances are drawn round-robin over its templates, instance k of
    template t from `Random("<data_seed>/<t>/<k>")`, so no validation or test template's
    instance reaches training. Other datasets: the splits they have, each cut to its size;
    GSM8K offline has `test` only. Deterministic in (dataset, sizes, data_seed). Raises
    ScalelabError when the data cannot be fetched or read.
    """
    if task.dataset == "gsm_symbolic":
        return _symbolic_splits(task)
    name = task.dataset if task.dataset in catalog.DATASETS else Path(task.dataset).stem
    out = {}
    for split, records in load_math(task.dataset).items():
        size = getattr(task, f"{split}_size", None)
        out[split] = [
            problem_from_record(r, f"{name}/{split}/{i}", i if name == "gsm8k" else None)
            for i, r in enumerate(records[:size])
        ]
    return out


def problem_from_record(record: Record, id: str, id_orig: int | None) -> Problem:
    """A `load_math` record as a `Problem` (calculator marks removed)."""
    from scalelab.data.gsm_symbolic import strip_marks

    return Problem(
        id=id, question=record["question"], rationale=strip_marks(record["rationale"]),
        answer=record["answer"], id_orig=id_orig,
    )  # fmt: skip


def _symbolic_splits(task: MathTask) -> dict[str, list[Problem]]:
    """`load_math_splits` for gsm_symbolic (see there)."""
    from scalelab.data.gsm_symbolic import fetch_templates, screen

    usable, _ = screen(fetch_templates())
    held_out = task.validation_templates + task.test_templates
    if held_out >= len(usable):
        raise ScalelabError(
            f"gsm_symbolic: {len(usable)} templates instantiate; validation_templates + "
            f"test_templates ({held_out}) leave none for training"
        )
    order = sorted(usable, key=lambda t: t.id)
    random.Random(f"gsm_symbolic/templates/{task.data_seed}").shuffle(order)
    groups = {
        "validation": order[: task.validation_templates],
        "test": order[task.validation_templates : held_out],
        "train": order[held_out:],
    }
    out = {
        split: _draw_round_robin(templates, _size(task, split), task.data_seed)
        for split, templates in groups.items()
    }
    if task.gsm8k_size:
        out["gsm8k"] = _unseen_gsm8k(task.gsm8k_size, {t.id_orig for t in groups["train"]})
    return {k: out[k] for k in (*SPLITS, "gsm8k") if k in out}


def _size(task: MathTask, split: str) -> int:
    size = getattr(task, f"{split}_size")
    return DEFAULT_SIZES[split] if size is None else size


# A template whose instances repeat (few valid draws) gives up its turn after this many
# draws in a row that were already in the split.
_MAX_REPEATS = 20


def _draw_round_robin(templates: list, size: int, data_seed: int) -> list[Problem]:
    """`size` distinct problems, one template at a time in turn; instance k of template t is
    drawn from `Random("<data_seed>/<t>/<k>")`, so each is the same whatever the size (a
    repeated question or a failing draw is passed over). Raises ScalelabError when the
    templates run out of new problems first."""
    from scalelab.data.gsm_symbolic import TemplateError, instantiate

    out: list[Problem] = []
    seen: set[str] = set()
    next_k = dict.fromkeys((t.id for t in templates), 0)
    live = list(templates)
    while len(out) < size and live:
        for template in list(live):
            if len(out) == size:
                break
            for _ in range(_MAX_REPEATS):
                k = next_k[template.id]
                next_k[template.id] += 1
                rng = random.Random(f"{data_seed}/{template.id}/{k}")
                try:
                    problem = instantiate(template, rng, index=k)
                except TemplateError:  # a rare draw the template's solution gets wrong
                    continue
                if problem.question not in seen:
                    seen.add(problem.question)
                    out.append(problem)
                    break
            else:  # this template has no new instance left (or almost none)
                live.remove(template)
    if len(out) < size:
        raise ScalelabError(
            f"gsm_symbolic: {len(templates)} templates gave only {len(out)} distinct "
            f"problems of the {size} asked for"
        )
    return out


def _unseen_gsm8k(size: int, trained_origins: set[int]) -> list[Problem]:
    """The first `size` GSM8K test problems (in file order) that no training template was
    made from."""
    records = load_math("gsm8k")["test"]
    out = []
    for i, record in enumerate(records):
        if i not in trained_origins:
            out.append(problem_from_record(record, f"gsm8k/test/{i}", i))
            if len(out) == size:
                break
    return out
