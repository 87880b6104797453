"""Fuzz: hundreds of bad specs and command lines through the real CLI, in-process.

The promise for bad input: exit status 2, stderr exactly one line (under 300 characters)
starting with `error:` and naming the bad field or file, and nothing written. The cases are
deterministic mutations of the example specs in examples/ (wrong types; huge, tiny,
negative and NaN numbers; unicode; deep nesting; aliases; bad paths; unknown and duplicate
keys) plus bad command lines. Commands that would train get `--dry-run`, so a case that is
wrongly accepted costs a listing, not a run.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helpers import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(REPO.glob("examples/*.yaml"))}
NAN, INF = float("nan"), float("inf")


@dataclass
class Case:
    """One bad input. `spec`: the spec file's content (a dict is dumped as YAML; str/bytes
    written as is; None: no spec file); `args`: the command line, where "{spec}", "{dir}"
    and "{file}" stand for the spec path, the case's folder and a small regular file;
    `expect`: what the error line must contain (the field or the file it names)."""

    label: str
    spec: Any
    expect: str
    args: tuple[str, ...] = ("run", "{spec}", "--dry-run")
    env: dict[str, str] = field(default_factory=dict)


# --- spec mutations -------------------------------------------------------------------------


def _with(spec: dict, dotted: str, value: Any) -> dict:
    """A deep copy of `spec` with the value at `a.b.c` set (a missing level is created; a
    list level is entered at its first item)."""
    out = copy.deepcopy(spec)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        if isinstance(node.get(key), list):
            node = node[key][0]
            continue
        if not isinstance(node.get(key), dict):
            node[key] = {} if node.get(key) is None else {"dataset": node[key]}
        node = node[key]
    node[last] = value
    return out


# Field mutations: (field, bad value, what the error must name). "@" stands for where a
# stage's fields live ("stages.<first stage>." in a staged spec, "" otherwise). Each one is
# applied to one example, in turn, so every example gets a share of every kind.
GENERIC = [
    # The experiment: its name names folders; output_dir must be a folder results can go in.
    *[("name", bad, "name") for bad in ("", "..", ".hidden", "-x", "a b", "a/b", "名前",
                                         "x" * 101, "x" * 100_000, "a\0b", 123, None, ["a"])],
    *[("output_dir", bad, "output_dir") for bad in (
        "a\0b", "x" * 300, "/etc", "/proc/scalelab", "../" * 40 + "etc", "/dev/shm/x", "/sys",
        "/", "{file}", "{file}/sub", 7, ["a"])],
    ("description", {"a": 1}, "description"),
    ("colour", "red", "colour"),
    # Seeds: 32-bit, not negative, integers.
    *[("@seeds", bad, "@seeds") for bad in (-1, 2**32, 2**64, -(2**63), 1.5, "zero", [], [None],
                                           NAN, INF, 1e30, [[0]], {"a": 1})],
    *[("@models", bad, "@models") for bad in ([], "gpt-x9", "x" * 300, "a\0b", "/no/such/model",
                                             "@nostage", "@base[", "{file}", 123, {"a": 1})],
    *[("@methods", bad, "@methods") for bad in ([], "distil-magic", [{"lr": 1}],
                                               [{"name": "x" * 500}], 5, [{"name": None}])],
    *[(f"@params.{key}", bad, f"@params.{key[:20]}") for key, bad in (
        ("bogus", 1), ("lr", -1), ("lr", NAN), ("lr", "fast"), ("lr", []), ("lr", {"a": 1}),
        ("batch_size", 0), ("batch_size", -3), ("batch_size", 2.5), ("dtype", "fp8"),
        ("weight_decay", -0.1), ("warmup_frac", 1.5), ("warmup_frac", NAN), ("grad_clip", -1),
        ("beta1", 1.0), ("grad_accum_steps", 0), ("x" * 300, 1))],
    ("@params", [1, 2], "@params"),
    *[(f"runtime.{key}", bad, "executor" if key == "executor" else f"runtime.{key}")
      for key, bad in (
        ("workers", 0), ("workers", 10**6), ("workers", "two"), ("threads", -1),
        ("threads", 5000), ("device", "tpu"), ("device", 1), ("compile", "maybe"),
        ("checkpoint_every_s", NAN), ("checkpoint_every_s", -1), ("checkpoint_every_s", INF),
        ("checkpoint_every_steps", -1), ("num_gpus", -1), ("num_gpus", INF),
        ("num_cpus", NAN), ("executor", "x" * 500), ("executor", "warp-drive"),
        ("log_to", ["wandb"]), ("nproc_per_node", 0), ("bogus", 1))],
    ("@tasks", [[1]], "@tasks"),
    ("@tasks.kind", "regression", "kind"),
    ("@tasks.bogus", 1, "bogus"),
]  # fmt: skip
# Local data no run could read (the task keeps its kind); each goes to an LM and a
# classification example.
DATASETS = [
    ("no-such-data", "unknown dataset"), ("données", "unknown dataset"),
    ("/no/such/file.txt", "file.txt"), ("/dev/null", "/dev/null"), ("a\0b", "dataset"),
    ("/" + "x" * 300, "dataset"), ("{empty}", "empty.txt"), ("{binary}", "binary.txt"),
    ("{latin1}", "latin1.txt"), ("{fifo}", "fifo"), ("{nosplits}", "nosplits"),
    ({"a": 1}, "dataset"),
]  # fmt: skip
LM_ONLY = [
    *[(f"@tasks.{key}", bad, key.split(".")[-1]) for key, bad in (
        ("seq_len", 0), ("seq_len", -1), ("seq_len", 10**7), ("seq_len", NAN),
        ("seq_len", "long"), ("tokenizer.kind", "sentencepiece"),
        ("tokenizer.vocab_size", 10**30), ("tokenizer.bogus", 1), ("eval.window", 0),
        ("eval.window", 10**6), ("eval.stride", -4), ("eval.max_tokens", NAN),
        ("eval.bogus", 1))],
    *[("@tasks.tokenizer", tok, "tokenizer." + key) for tok, key in (
        ({"kind": "bpe", "vocab_size": 10}, "vocab_size"),
        ({"kind": "bpe", "vocab_size": 2**40}, "vocab_size"),
        ({"kind": "byte", "vocab_size": 512}, "vocab_size"),
        ({"kind": "pretrained"}, "path"),
        ({"kind": "pretrained", "path": "/no/such/tokenizer"}, "path"),
        ({"kind": "pretrained", "path": "{file}"}, "path"),
        ({"kind": "pretrained", "path": "org/tok"}, "path"))],
    ("@tasks", {"dataset": "{three}", "kind": "lm", "seq_len": 64}, "three.txt"),
]  # fmt: skip
CLASSIFICATION_ONLY = [
    ("@tasks", {"dataset": "{file}", "kind": "classification"}, "data.txt"),
    *[(f"@tasks.{key}", bad, key) for key, bad in (
        ("max_length", 0), ("max_length", "long"), ("train_size", -1), ("val_size", NAN),
        ("data_seed", -1), ("k_per_class", 0), ("draw", -1))],
]  # fmt: skip


def _fill(value: Any, files: dict[str, Path]) -> Any:
    """`value` with "{name}" placeholders in strings replaced by the files' paths."""
    if isinstance(value, str):
        for key, path in {**files, "file": files["text"]}.items():
            value = value.replace("{" + key + "}", str(path))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, files) for v in value]
    return value


def _mutated(name: str, spec: dict, dotted: str, value: Any, expect: str, files) -> Case:
    """`spec` with `dotted` (its "@" resolved) set to `value`, as a case."""
    stage = next(iter(spec["stages"])) if "stages" in spec else None
    if stage and dotted.startswith("@tasks") and "tasks" not in spec["stages"][stage]:
        stage = None  # the stage takes the top level's tasks: mutate those
    at = f"stages.{stage}." if stage else ""
    dotted, expect = dotted.replace("@", at, 1), expect.replace("@", at, 1)
    out = _with(spec, dotted, _fill(value, files))
    if dotted.startswith(f"{at}params."):  # a method entry's own value would win
        holder = out["stages"][stage] if stage else out
        entries = holder.get("methods") or []
        for entry in [entries] if isinstance(entries, dict) else entries:
            if isinstance(entry, dict):
                entry.pop(dotted.rsplit(".", 1)[1], None)
    env = {"HF_HUB_OFFLINE": "1"}
    if dotted == "runtime.device" and value == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""  # certainly no GPU, on any machine
    return Case(f"{name}:{dotted[:40]}={str(value)[:40]!r}", out, expect, env=env)


def _spec_cases(files: dict[str, Path]) -> list[Case]:
    names = list(EXAMPLES)
    lm = [n for n in names if _first_task(EXAMPLES[n])["dataset"] == "wikitext2"]
    cls = [n for n in names if n not in lm]
    generic = [*GENERIC, ("@models", "some-org/some-model", "some-org/some-model"),
               ("runtime.device", "cuda", "runtime.device")]  # fmt: skip
    cases = []
    for group, pool in ((generic, names), (LM_ONLY, lm), (CLASSIFICATION_ONLY, cls)):
        for i, (dotted, value, expect) in enumerate(group):
            name = pool[i % len(pool)]
            cases.append(_mutated(name, EXAMPLES[name], dotted, value, expect, files))
    for name in (lm[0], cls[0]):
        task = _first_task(EXAMPLES[name])
        kind = "lm" if name in lm else "classification"
        for bad, expect in DATASETS:
            entry = {**task, "dataset": bad, "kind": kind}
            cases.append(_mutated(name, EXAMPLES[name], "@tasks", entry, expect, files))
    staged = "pretrain_then_finetune"  # the cases below name its stages (base, tuned)
    spec, stage = EXAMPLES[staged], next(iter(EXAMPLES[staged]["stages"]))
    cases += [
        Case("stage-key", _with(spec, f"stages.{stage}.bogus", 1), "bogus"),
        Case("stage-name", {**spec, "stages": {"a b": {}}}, "stage name"),
        Case("stages-empty", {**spec, "stages": {}}, "stages"),
        Case("stage-ref-filter", _with(spec, "stages.tuned.models", "@base[model]"), "filter"),
        Case("stage-cycle", _with(spec, f"stages.{stage}.models", "@tuned"), "cycle"),
    ]
    return cases


def _first_task(spec: dict) -> dict:
    first = spec["stages"][next(iter(spec["stages"]))] if "stages" in spec else spec
    tasks = first.get("tasks") or spec["tasks"]  # a stage without tasks takes the top level's
    return tasks[0] if isinstance(tasks, list) else tasks  # a list: its first task


def _text_cases(base: str) -> list[Case]:
    """Specs written as text or bytes: YAML the loader must refuse."""
    lol = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    laughs = f"a: &a {lol}\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    cases = [
        Case("billion-laughs", laughs + "name: *i\n", "aliases"),
        Case(
            "laughs-in-params",
            base
            + "params:\n"
            + "".join(f"  {line}\n" for line in laughs.splitlines())
            + "  lr: *i\n",
            "aliases",
        ),  # fmt: skip
        Case("recursive-alias", base + "params: &p {lr: *p}\n", "alias"),
        Case("recursive-list", "name: &a [1, *a]\n", "alias"),
        Case("undefined-alias", base + "params: *nope\n", "alias"),
        Case("deep-flow-5000", base + "params: {lr: " + "[" * 5000 + "]" * 5000 + "}\n", "nesting"),
        Case("deep-flow-100", base + "seeds: " + "[" * 100 + "]" * 100 + "\n", "nesting"),
        Case(
            "deep-block-80",
            base
            + "params:\n"
            + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(80))
            + "  " * 81
            + "v: 1\n",
            "nesting",
        ),  # fmt: skip
        Case("dup-top", base + "name: again\n", "duplicate key 'name'"),
        Case(
            "dup-flow",
            base.replace("tasks:", "tasks: {dataset: a, dataset: b}\nold_tasks:"),
            "duplicate key 'dataset'",
        ),  # fmt: skip
        Case("dup-params", base + "params:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'"),
        Case("dup-runtime", base + "runtime: {workers: 1, workers: 2}\n", "duplicate key"),
        Case("dup-int-keys", base + "params: {1: a, 1: b}\n", "duplicate key"),
        Case("not-utf8", base.encode() + b"description: caf\xe9\n", "not UTF-8"),
        Case("utf16", base.encode("utf-16"), "not UTF-8"),
        Case("nul-char", base + "description: a\0b\n", "invalid YAML"),
        Case("control-char", base + "description: a\x07b\n", "invalid YAML"),
        Case("tab-indent", base + "runtime:\n\tworkers: 2\n", "invalid YAML"),
        Case("unclosed", base + "models: [gpt-d1\n", "invalid YAML"),
        Case(
            "python-tag",
            base + "params: !!python/object/apply:os.system ['true']\n",
            "invalid YAML",
        ),  # fmt: skip
        Case("top-list", "- name: x\n", "mapping"),
        Case("top-scalar", "just words\n", "mapping"),
        Case("empty-file", "", "mapping"),
        Case("only-comment", "# nothing\n", "mapping"),
        Case("too-big", base + "description: " + "x" * 1_100_000 + "\n", "larger than"),
        Case("merge-unknown", base + "defaults: &d {lr: 1}\nparams: {<<: *d}\n", "defaults"),
        Case(
            "merge-override", base + "runtime: {<<: {workers: 1}, workers: 0}\n", "runtime.workers"
        ),  # fmt: skip
        Case("merge-non-map", base + "params: {<<: [1, 2]}\n", "invalid YAML"),
        Case("key-unhashable", base + "params: {? [a, b] : 1}\n", "invalid YAML"),
        Case("bidi-name", base.replace("name: ", "name: \u202egpt", 1), "name"),
    ]
    return cases


def _cli_cases() -> list[Case]:
    """Bad command lines (the spec, when there is one, is the valid quickstart)."""
    qs = EXAMPLES["quickstart"]
    return [
        Case(f"cli:{' '.join(a)[:40]}", qs if "{spec}" in a else None, expect, a)
        for a, expect in [
            (("run", "{spec}", "--no-such-flag"), "--no-such-flag"),
            (("run", "{spec}", "--workers", "0"), "--workers"),
            (("run", "{spec}", "--workers", "-1"), "--workers"),
            (("run", "{spec}", "--workers", "two"), "--workers"),
            (("run", "{spec}", "--workers"), "--workers"),
            (("run", "{spec}", "--dry-run", "--executor", "warp-drive"), "warp-drive"),
            (("run", "{spec}", "--dry-run", "--output-dir", "/etc/scalelab"), "output_dir"),
            (("run", "{spec}", "--dry-run", "--output-dir", "{file}"), "output_dir"),
            (("run", "{spec}", "--dry-run", "--output-dir", "x" * 300), "output_dir"),
            (("run", "{spec}", "--dry-run", "--output-dir", "a\0b"), "--output-dir"),
            (("run", "{spec}", "--dry-run", "--dry-run=yes"), "--dry-run"),
            (("run",), "Missing argument 'spec'"),
            (("run", "{dir}/missing.yaml", "--dry-run"), "missing.yaml"),
            (("run", "{dir}", "--dry-run"), "folder"),
            (("run", "{dir}/fifo", "--dry-run"), "fifo"),
            (("run", "/dev/null", "--dry-run"), "/dev/null"),
            (("run", "/dev/zero", "--dry-run"), "/dev/zero"),
            (("run", "{dir}/" + "y" * 300 + ".yaml", "--dry-run"), "yyy"),
            (("run", "{dir}/a\0b.yaml", "--dry-run"), "'spec'"),
            (("results", "{spec}", "--format", "xml"), "--format"),
            (("results", "{dir}/missing.yaml"), "missing.yaml"),
            (("results", "{spec}", "--output-dir", "/proc"), "output_dir"),
            (("compare", "{dir}/missing.yaml"), "missing.yaml"),
            (("compare", "{spec}", "--by"), "--by"),
            (("sweep", "{spec}"), "--out"),
            (("report",), "experiment file or --csv"),
            (("report", "{dir}/missing.yaml"), "missing.yaml"),
            (("report", "{dir}/fifo"), "fifo"),
            (("report", "--csv", "{dir}/missing.csv"), "missing.csv"),
            (("report", "{spec}", "--loss-to-loss", "a"), "--loss-to-loss"),
            (("report", "--csv", "{file}", "--out", "/etc/report"), "--out"),
            (("report", "--csv", "{file}", "--out", "{dir}/" + "r" * 300), "--out"),
            (("sweep", "{spec}", "--out", "{file}"), "--out"),
            (("fit", "{dir}/missing.csv", "--law", "power", "--x", "N", "--y", "L"), "missing.csv"),
            (("fit", "{dir}/fifo", "--law", "power", "--x", "N", "--y", "L"), "fifo"),
            (("fit", "{file}", "--law", "cubic", "--x", "N", "--y", "L"), "--law"),
            (("fit", "{file}", "--law", "power", "--x", "N"), "--y"),
            (
                ("fit", "{file}", "--law", "power", "--x", "N", "--y", "L", "--bootstrap", "-1"),
                "--bootstrap",
            ),  # fmt: skip
            (
                ("fit", "{dir}/" + "z" * 300 + ".csv", "--law", "power", "--x", "N", "--y", "L"),
                "zzz",
            ),  # fmt: skip
            (("data", "fetch", "no-such-data"), "no-such-data"),
            (("data", "fetch"), "Missing argument 'name'"),
            (("data", "wipe"), "wipe"),
            (("no-such-command",), "no-such-command"),
            (("--no-such-flag",), "--no-such-flag"),
        ]
    ]


def all_cases(files: dict[str, Path]) -> list[Case]:
    cases = _spec_cases(files)
    # Text cases add params/runtime/seeds themselves: the base has none of them.
    lean = {k: v for k, v in EXAMPLES["quickstart"].items() if k not in ("params", "runtime")}
    base = yaml.safe_dump({**lean, "output_dir": "{dir}/out"}, sort_keys=False)
    return cases + _text_cases(base) + _cli_cases()


# --- running them ---------------------------------------------------------------------------


def _make_files(folder: Path) -> dict[str, Path]:
    """Small data files the cases point at (all outside the cases' output folders)."""
    folder.mkdir()
    files = {
        "text": folder / "data.txt",
        "empty": folder / "empty.txt",
        "binary": folder / "binary.txt",
        "latin1": folder / "latin1.txt",
        "three": folder / "three.txt",
        "nosplits": folder / "nosplits",
        "fifo": folder / "fifo",
    }
    files["text"].write_text("The cat sat on the mat.\n" * 200)
    files["empty"].write_text("")
    files["binary"].write_bytes(bytes(range(256)) * 8)
    files["latin1"].write_bytes("Café au lait, crème brûlée.\n".encode("latin-1") * 50)
    files["three"].write_text("The cat sat on the mat.\nA dog ran.\nIt was red.\n")
    files["nosplits"].mkdir()
    (files["nosplits"] / "notes.txt").write_text("not a split\n")
    os.mkfifo(files["fifo"])
    return files


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run_case(case: Case, folder: Path, files: dict[str, Path], capsys, monkeypatch) -> str:
    """Run one case; return why it broke the promise ("" when it kept it)."""
    folder.mkdir()
    os.mkfifo(folder / "fifo")
    spec_path = folder / "exp.yaml"
    if isinstance(case.spec, dict):
        spec = {"output_dir": str(folder / "out"), **case.spec}
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    elif isinstance(case.spec, str):
        spec_path.write_text(case.spec.replace("{dir}", str(folder)))
    elif isinstance(case.spec, bytes):
        spec_path.write_bytes(case.spec.replace(b"{dir}", os.fsencode(folder)))
    subs = {"{spec}": str(spec_path), "{dir}": str(folder), "{file}": str(files["text"])}
    args = []
    for a in case.args:
        for key, value in subs.items():
            a = a.replace(key, value)
        args.append(a)
    before = _snapshot(folder)
    with monkeypatch.context() as m:
        for key, value in case.env.items():
            m.setenv(key, value)
        try:
            code, _, err = cli(*args, capsys=capsys)
        except BaseException as exc:  # a traceback breaks the promise too
            return f"raised {type(exc).__name__}: {str(exc)[:200]}"
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    line = err.rstrip("\n")
    if err.count("\n") != 1 or not err.endswith("\n"):
        problems.append(f"{err.count(chr(10))} lines")
    if not line.startswith("error: "):
        problems.append("no 'error: '")
    if len(line) >= 300:
        problems.append(f"{len(line)} characters")
    if case.expect not in line:
        problems.append(f"does not name {case.expect!r}")
    if _snapshot(folder) != before:
        problems.append(f"wrote {sorted(_snapshot(folder) - before)[:3]}")
    return "; ".join(problems) + (f" :: {line[:200]!r}" if problems else "")


def test_examples_are_accepted(tmp_path, capsys):
    """The control: unmutated, every example passes --dry-run (so the cases below fail
    because of their mutation)."""
    for name, spec in EXAMPLES.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**spec, "output_dir": str(tmp_path / "out")}))
        code, _, err = cli("run", path, "--dry-run", capsys=capsys)
        assert code == 0, (name, err)
    assert not (tmp_path / "out").exists()


def test_bad_input_fuzz(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no case may wait on the network
    files = _make_files(tmp_path / "files")
    cases = all_cases(files)
    start = time.monotonic()
    failures = []
    for i, case in enumerate(cases):
        why = _run_case(case, tmp_path / f"case{i:03d}", files, capsys, monkeypatch)
        if why:
            failures.append(f"{case.label}: {why}")
    elapsed = time.monotonic() - start
    print(f"{len(cases)} bad inputs in {elapsed:.1f} s")
    assert len(cases) >= 200
    assert not failures, f"{len(failures)} of {len(cases)} broke the promise:\n" + "\n".join(
        failures
    )
