"""Stages whose runs feed later runs: references, stage order, and the DAG of runs.

A spec with `stages` declares one grid per stage; a later stage names an earlier one's
products with a reference string, in `models` or as a method param value:

    stages:
      teacher:  {models: gpt-d2, methods: pretrain, params: {tokens: 1000000}}
      students: {models: "@teacher", methods: pretrain, params: {lr: [1e-3, 3e-3]}}

`@teacher` means the model product (`runs/<id>/model`) of every run of stage `teacher`: it
is an axis, one dependent per matching run. `@teacher[model=gpt-d2,seed=0]` keeps the runs
whose config matches (keys: model, method, seed, or a column such as params.lr or
task.dataset; values are YAML: `@weak[params.keep_layers=[0, 5]]`, `[...=null]`). In `models`, `@teacher@2000000` (or `@teacher[...]@2000000`) names the model
each run kept at 2,000,000 tokens (pretrain's `keep_checkpoints`: `runs/<id>/revisions/`).
A dependent's config records its input as `run:<id>` (`run:<id>@<tokens>`), so its run id
hashes its inputs' ids: changing a teacher reruns its students and nothing else. Stages may
be written in any order; a cycle or a reference to a stage that does not exist is a spec
error.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scalelab.config import validate
from scalelab.data.tasks import local_data_identity, parse_task, task_entry
from scalelab.engine.args import identity
from scalelab.errors import ScalelabError, clip, shown
from scalelab.grid.spec import ExperimentSpec, RunSpec, Stage, expand_axes, run_id_of
from scalelab.methods.base import METHODS
from scalelab.models.registry import ModelRef, resolve_model

# Filter values may be lists one level deep: @weak[params.keep_layers=[0, 5]].
_REF = re.compile(
    r"^@(?P<stage>[A-Za-z0-9_-]+)(?:\[(?P<filters>(?:[^\[\]]|\[[^\[\]]*\])*)\])?"
    r"(?:@(?P<revision>[0-9]+))?$"
)


@dataclass(frozen=True)
class StageRef:
    """A parsed `@stage[key=value,...]@revision` reference to another stage's model
    products (revision: a token count the runs kept their model at, or None)."""

    stage: str
    filters: tuple[tuple[str, str], ...] = ()
    revision: str | None = None

    def matches(self, run: RunSpec) -> bool:
        return all(_same_value(_config_value(run, k), v) for k, v in self.filters)


def parse_ref(value: Any, where: str) -> StageRef | None:
    """A StageRef for a string starting with '@'; None for anything else."""
    if not (isinstance(value, str) and value.startswith("@")):
        return None
    m = _REF.match(value.strip())
    if not m:
        raise ScalelabError(
            f"{where}: bad stage reference {shown(value)} (write @stage, "
            "@stage[key=value,...] or @stage@<tokens> for a kept revision)"
        )
    filters = []
    for part in filter(None, (p.strip() for p in _top_level_split(m["filters"] or ""))):
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise ScalelabError(f"{where}: bad filter {shown(part)} (write key=value)")
        filters.append((key.strip(), val.strip()))
    return StageRef(m["stage"], tuple(filters), m["revision"])


def _top_level_split(text: str) -> list[str]:
    """`text` split at the commas outside brackets (`a=1,b=[0, 5]` -> `a=1`, `b=[0, 5]`)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


_MISSING = "\0missing"


def _config_value(run: RunSpec, key: str) -> Any:
    """The run's value at `key` (`model`, `seed`, `params.lr`, ...), as its config holds it
    (a number, a string, a list, None), or _MISSING."""
    if key == "model":
        return run.model.name
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return omitted_default(run, key)
        node = node[part]
    return node


def omitted_default(run: RunSpec, key: str) -> Any:
    """A params/task field that run ids leave out at its default (`ID_OMIT_DEFAULTS`):
    the validated model's value; anything else: _MISSING."""
    section, _, name = key.partition(".")
    holder = {"params": run.params, "task": run.task}.get(section)
    if holder is None or "." in name or name not in type(holder).model_fields:
        return _MISSING
    return getattr(holder, name)


def _same_value(have: Any, written: str) -> bool:
    """Whether a filter's written value names `have`: the same text, the same number, or
    the same YAML value (`[0, 5]`, `null`, `true`)."""
    if have is _MISSING:
        return False
    if str(have) == written:
        return True
    if isinstance(have, int | float) and not isinstance(have, bool):
        try:
            return float(written) == float(have)  # 3e-3 (which YAML 1.1 reads as text)
        except ValueError:
            pass
    import yaml

    try:
        want = yaml.safe_load(written)
    except yaml.YAMLError:
        return False
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    return want == have


def _refs_of(stage: Stage, name: str, spec: ExperimentSpec) -> list[tuple[str, StageRef]]:
    """Every (where, reference) written in a stage's models, params and method entries."""
    prefix = f"stages.{name}." if spec.stages else ""
    out = []
    for i, m in enumerate(stage.models or []):
        if (ref := parse_ref(m, f"{prefix}models[{i}]")) is not None:
            out.append((f"{prefix}models[{i}]", ref))
    sections = [("params", stage.params)] + [
        (f"methods[{i}]", e) for i, e in enumerate(stage.methods or []) if isinstance(e, dict)
    ]
    for where, section in sections:
        for key, v in section.items():
            field = f"{prefix}{where}.{clip(key, 40)}"
            for item in _leaves(v):  # a value, a list, or a list of lists (an axis of sets)
                if (ref := parse_ref(item, field)) is not None:
                    out.append((field, ref))
    return out


def _leaves(v: Any) -> list[Any]:
    """The scalars of a value, a list or nested lists, in order."""
    if isinstance(v, list):
        return [leaf for item in v for leaf in _leaves(item)]
    return [v]


def stage_order(spec: ExperimentSpec) -> list[str]:
    """Stage names, each after every stage it references (written order among equals).

    Raises ScalelabError for a reference to an unknown stage or a cycle (naming it)."""
    stages = spec.stage_list()
    needs: dict[str, set[str]] = {}
    for name, st in stages.items():
        needs[name] = set()
        for where, ref in _refs_of(st, name, spec):
            if ref.stage not in stages:
                known = ", ".join(stages) if spec.stages else "none (no `stages` in this spec)"
                raise ScalelabError(f"{where}: unknown stage {shown(ref.stage)} (stages: {known})")
            needs[name].add(ref.stage)
    order: list[str] = []
    while len(order) < len(stages):
        ready = [n for n in stages if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ScalelabError(f"stages form a cycle: {_cycle(needs, set(order))}")
        order.append(ready[0])
    return order


def _cycle(needs: dict[str, set[str]], placed: set[str]) -> str:
    """One cycle among the unplaced stages, as 'a -> b -> a'."""
    node = next(n for n in needs if n not in placed)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = sorted(needs[node] - placed)[0]
    return " -> ".join([*path[path.index(node) :], node])


def _matching(
    ref: StageRef, produced: dict[str, list[RunSpec]], where: str, model: bool = True
) -> list[RunSpec]:
    """The runs of `ref`'s stage its filters keep. In `models` (model=True) each must save
    a model; a param may name runs by any product they leave (labels, rationales): the
    method that reads it checks which (`MethodDef.check_run`)."""
    runs = [r for r in produced[ref.stage] if ref.matches(r)]
    if not runs:
        filters = clip(",".join(f"{k}={v}" for k, v in ref.filters))
        unknown = [k for k, _ in ref.filters
                   if all(_config_value(r, k) is _MISSING for r in produced[ref.stage])]  # fmt: skip
        if unknown:
            raise ScalelabError(
                f"{where}: @{ref.stage}[{filters}]: no run of stage {ref.stage!r} has "
                f"{clip(unknown[0], 40)!r} (keys: model, method, seed, or a results column "
                f"such as params.lr or task.dataset)"
            )
        raise ScalelabError(f"{where}: @{ref.stage}[{filters}] matches no run of that stage")
    for r in runs:
        products = METHODS.get(r.method).for_kind(r.task.kind).products
        if (model and "model" not in products) or not products:
            raise ScalelabError(
                f"{where}: method {r.method!r} of stage {ref.stage!r} saves no "
                + ("model" if model else "product another run can read")
            )
    return runs


LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,39}")


def _method_entries(stage: Stage, prefix: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(method name, its own params, where, label) per entry of `methods`. `label` names
    the entry in tables, `smallest` and the report (default: the method's name); it is
    presentation only, not part of any run id."""
    out = []
    for i, entry in enumerate(stage.methods or []):
        where = f"{prefix}methods[{i}]"
        label = None
        if isinstance(entry, str):
            name, own = entry, {}
        else:
            own = dict(entry)
            name = own.pop("name", None)
            label = own.pop("label", None)
            if not isinstance(name, str):
                raise ScalelabError(f"{where}.name: field required")
        if not isinstance(name, str) or name not in METHODS:
            # The registry's own message would echo the name whole, however long.
            known = ", ".join(METHODS)
            raise ScalelabError(f"{where}: unknown method {shown(name)} (known: {known})")
        if label is not None and not (isinstance(label, str) and LABEL_PATTERN.fullmatch(label)):
            raise ScalelabError(
                f"{where}.label: {shown(label)} is not a label (1-40 letters, digits and "
                "_ . + = -, starting with a letter or digit)"
            )
        if label in METHODS and label != name:
            raise ScalelabError(f"{where}.label: {label!r} is another method's name")
        out.append((name, own, where, label or name))
    return out


def _models(stage, prefix, produced, runs_dir) -> list[tuple[ModelRef, RunSpec | None]]:
    """(model reference, the run that produced it or None) for each model of a stage."""
    out = []
    for i, m in enumerate(stage.models):
        where = f"{prefix}models[{i}]"
        ref = parse_ref(m, where)
        if ref is None:
            try:
                out.append((resolve_model(m), None))
            except ScalelabError as err:
                raise ScalelabError(f"{where}: {err}") from None
            continue
        for up in _matching(ref, produced, where):
            at = f"@{ref.revision}" if ref.revision else ""
            if ref.revision:
                _check_revision(up, ref, where)
            name = f"@{ref.stage}:{up.model.name}{at}"
            out.append((ModelRef.for_run(up.run_id, runs_dir, name, ref.revision), up))
    return out


def _check_revision(up: RunSpec, ref: StageRef, where: str) -> None:
    """A run of the referenced stage keeps its model at the revision's token count
    (`keep_checkpoints`). Raises ScalelabError naming the counts it keeps."""
    kept = getattr(up.params, "keep_checkpoints", None) or []
    if int(ref.revision) not in kept:
        have = ", ".join(map(str, kept)) or "none (params.keep_checkpoints keeps some)"
        raise ScalelabError(
            f"{where}: @{ref.stage}@{ref.revision}: run {up.model.name} of stage "
            f"{ref.stage!r} keeps no revision {ref.revision} (revisions: {have})"
        )


def _seeds(spec, name: str, stage: Stage, method, inputs: dict) -> list[int]:
    """A stage's seeds, or for a method with `seed_from` the seed of the one run it pairs
    with (inputs: as `check_run` gets them, "model" -> the model's run); such a stage
    names no seeds."""
    key = method.seed_from
    if key is None:
        return list(stage.seeds)
    what = ("continues its model's run with that run's seed" if key == "model"
            else f"takes the seed of the run params.{key} names")  # fmt: skip
    own = (spec.stages or {}).get(name)
    if own is not None and own.seeds is not None:
        raise ScalelabError(f"stages.{name}.seeds: method {method.name!r} {what}; leave seeds out")
    ups = inputs.get(key, ())
    if len(ups) != 1:
        where = "models" if key == "model" else f"params.{key}"
        raise ScalelabError(
            f"stages.{name}.{where}: method {method.name!r} {what}: name one earlier "
            f"stage's run per value (@stage), got {len(ups)}"
        )
    return [ups[0].seed]


def _resolve_param_refs(section, prefix, produced) -> tuple[dict[str, Any], dict[str, dict]]:
    """Params with each `@stage` value replaced by its matching runs' `run:<id>`, and run id
    -> RunSpec of every input found. A string reference matching several runs becomes a
    list (an axis, unless the field takes a list: then all of them are one value). Inside a
    list each reference expands in place (`teachers: ["@t[model=gpt-d6]", "@t"]`), and in
    a list of lists (an axis over lists) within each inner list."""
    out, found = {}, {}
    for key, v in section.items():
        where = f"{prefix}{key}"
        if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
            out[key] = [_expand_refs(inner, where, produced, found) for inner in v]
        elif isinstance(v, list):
            out[key] = _expand_refs(v, where, produced, found)
        else:
            values = _expand_refs([v], where, produced, found)
            out[key] = values if len(values) > 1 else values[0]
    return out, found


def _expand_refs(items: list, where: str, produced, found: dict) -> list:
    """`items` with each `@stage` reference replaced by its matching runs' `run:<id>`."""
    values = []
    for item in items:
        ref = parse_ref(item, where)
        if ref is None:
            values.append(item)
            continue
        if ref.revision:
            raise ScalelabError(
                f"{where}: {shown(item)}: a revision (@<tokens>) names a model in `models`, "
                "not a param's run"
            )
        for up in _matching(ref, produced, where, model=False):
            values.append(f"run:{up.run_id}")
            found[up.run_id] = up
    return values


def expand_stages(spec: ExperimentSpec) -> list[RunSpec]:
    """All runs of every stage: tasks x methods x param sweeps x models x seeds per stage,
    stages in dependency order. Raises ScalelabError naming the bad field."""
    stages = spec.stage_list()
    produced: dict[str, list[RunSpec]] = {}
    for name in stage_order(spec):
        produced[name] = _expand_stage(spec, name, stages[name], produced)
    runs = [r for name in produced for r in produced[name]]
    _check_once(runs)
    if spec.report.beats:
        _check_reference(spec.report.beats, runs)
    if spec.report.metric:
        _check_metric(spec.report.metric, runs)
    for axis in spec.report.best_over:
        _check_axis(axis, runs)
    return runs


def _check_once(runs: list[RunSpec]) -> None:
    """Every run once (a label is not part of a run id, so two entries that differ only in
    their labels are one run), and each label names one method."""
    from scalelab.grid.api import label

    first: dict[str, RunSpec] = {}
    for r in runs:
        if r.run_id in first:
            o = first[r.run_id]
            raise ScalelabError(
                f"the grid lists the same run twice: {label(r)} (stage {r.stage}) is "
                f"{label(o)} (stage {o.stage}); entries that differ only in their labels, "
                "models or values listed twice, or a list param written as a string"
            )
        first[r.run_id] = r
    methods: dict[str, set[str]] = {}
    for r in runs:
        methods.setdefault(r.entry_label, set()).add(r.method)
    for lab, names in methods.items():
        if len(names) > 1:
            raise ScalelabError(
                f"label {lab!r} names entries of {len(names)} methods "
                f"({', '.join(sorted(names))}): give each method its own labels"
            )


def _check_metric(metric: str, runs: list[RunSpec]) -> None:
    """`report.metric` is a quality metric (loss, accuracy, ...) one of the grid's methods
    declares."""
    from scalelab.metrics import metrics_for

    names = sorted({r.method for r in runs})
    defn = next((d for d in metrics_for(names) if d.name == metric), None)
    if defn is None or defn.higher_is_better is None:
        raise ScalelabError(
            f"report.metric: {shown(metric)} is not a quality metric of {', '.join(names)} "
            "(see `scalelab methods`)"
        )


def _check_axis(axis: str, runs: list[RunSpec]) -> None:
    """`report.best_over` names a config field that takes more than one value in the grid."""
    from scalelab.config import flatten

    values = {json.dumps(flat[axis], default=str)
              for r in runs if axis in (flat := flatten(r.config))}  # fmt: skip
    if len(values) < 2:
        has = f"one value, {clip(values.pop(), 40)}" if values else "no such field"
        raise ScalelabError(
            f"report.best_over: {axis} does not vary in the grid ({has}): nothing to choose"
        )


def _model_spellings(run: RunSpec) -> set[str]:
    """The names a person may give a run's model: as the spec wrote it (`gpt-d6`,
    `@teacher:gpt-d8`), as the results table has it, and as the report shows a product
    (`gpt-d8 (stage teacher)`)."""
    names = {run.model.name, run.model.config_name}
    stage, colon, model = run.model.name.partition(":")
    if stage.startswith("@") and colon:
        names.add(f"{model} (stage {stage[1:]})")
    return names


def _check_reference(beats: str, runs: list[RunSpec]) -> None:
    """`report.beats` names a model and a method (or label) some run of the grid has."""
    model, _, method = beats.rpartition("/")
    arms = {r.entry_label for r in runs}
    if method not in arms:
        hidden = sorted({r.variant for r in runs if r.method == method})
        where = (f"its entries have labels: {', '.join(hidden)}; name one" if hidden
                 else f"it has: {', '.join(sorted(arms))}")  # fmt: skip
        raise ScalelabError(
            f"report.beats: no method or label {shown(method)} in the grid ({where})"
        )
    models = set().union(*(_model_spellings(r) for r in runs if r.entry_label == method))
    # A cell may name fields after the model ("gpt-d3 tokens=750000"): the model comes first.
    if model not in models and not any(model.startswith(f"{m} ") for m in models):
        raise ScalelabError(
            f"report.beats: {method} runs have no model {shown(model)} "
            f"(they have: {clip(', '.join(sorted(models)), 150)})"
        )


@contextmanager
def _in_stage(prefix: str):
    """A method's spec-time error naming `params.x` or `tasks.x` names its stage too
    (`stages.students.params.x`), as the validation of the stage's own keys does."""
    try:
        yield
    except ScalelabError as err:
        text = str(err)
        if prefix and text.startswith(("params.", "tasks.", "models:")):
            raise ScalelabError(prefix + text) from None
        raise


def _expand_stage(spec, name: str, stage: Stage, produced) -> list[RunSpec]:
    prefix = f"stages.{name}." if spec.stages else ""
    models = _models(stage, prefix, produced, spec.runs_dir)
    runs: list[RunSpec] = []
    for ti, raw_task in enumerate(stage.tasks):
        where_t = f"{prefix}tasks[{ti}]"
        entry, kind_model = task_entry(raw_task, where_t)
        for task_raw in expand_axes(entry, kind_model, where_t):
            task = parse_task(task_raw, where_t)
            for method_name, own, where, variant in _method_entries(stage, prefix):
                method = METHODS.get(method_name)
                if task.kind not in method.task_kinds:
                    raise ScalelabError(
                        f"{where}: method {method_name!r} does not apply to task kind "
                        f"{task.kind!r} (it takes {', '.join(method.task_kinds)})"
                    )
                method = method.for_kind(task.kind)
                section, inputs = _resolve_param_refs({**stage.params, **own}, prefix, produced)
                for p_raw in expand_axes(section, method.params, f"{prefix}params"):
                    params = validate(method.params, p_raw, f"{prefix}params")
                    with _in_stage(prefix):
                        if method.check:
                            method.check(task, params)
                        extra = method.data_identity(task, params) if method.data_identity else None
                    named = {k: tuple(inputs[i] for i in ids)
                             for k, ids in _named_inputs(p_raw, inputs).items()}  # fmt: skip
                    for model, up in models:
                        own = {**named, "model": (up,)} if up is not None else named
                        if method.check_run:
                            with _in_stage(prefix):
                                method.check_run(task, params, model, own)
                        deps = (up.run_id,) if up is not None else ()
                        for seed in _seeds(spec, name, stage, method, own):
                            runs.append(
                                _run(spec, name, model, deps, task, method_name, params, seed,
                                     p_raw, inputs, variant, extra)
                            )  # fmt: skip
    return runs


def _named_inputs(p_raw: dict[str, Any], inputs: dict[str, Any]) -> dict[str, list[str]]:
    """param -> ids of the runs it names (`run:<id>` values, alone or in a list), in order."""
    out = {}
    for k, v in p_raw.items():
        ids = [x[4:] for x in (v if isinstance(v, list) else [v])
               if isinstance(x, str) and x.startswith("run:") and x[4:] in inputs]  # fmt: skip
        if ids:
            out[k] = ids
    return out


def _run(spec, stage, model, model_deps, task, method, params, seed, p_raw, inputs, variant,
         method_data=None):  # fmt: skip
    config = {
        "model": model.config_name,
        "task": identity(task),
        "method": method,
        "params": identity(params),
        "seed": seed,
    }
    if method_data is not None:  # files the params name (a prompt): their content
        config["method_data"] = method_data
    data = local_data_identity(task)
    if data is not None:  # a local corpus: its content, so an edit in place reruns
        config["data"] = data
    if model.kind == "local":  # a model folder: its files, so a changed checkpoint reruns
        from scalelab.models.backends.fingerprint import model_files_identity

        if (files := model_files_identity(model)) is not None:
            config["model_files"] = files
    param_inputs = {
        k: tuple(
            ModelRef.for_run(i, spec.runs_dir, f"@{inputs[i].stage}:{inputs[i].model.name}")
            for i in ids
        )
        for k, ids in _named_inputs(p_raw, inputs).items()
    }
    used = [r.run_id for refs in param_inputs.values() for r in refs]
    deps = tuple(dict.fromkeys([*model_deps, *used]))
    return RunSpec(
        run_id_of(config),
        spec.name,
        model,
        task,
        method,
        params,
        seed,
        config,
        stage=stage,
        deps=deps,
        inputs=param_inputs,
        variant=variant,
    )
