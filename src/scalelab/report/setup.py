"""The set-up block that heads every report: what was trained on what, for how long, by
which code. Everything comes from the runs table (and a classification run's eval.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.report import html
from scalelab.report.style import human

VERSION_KEYS = ("python", "torch", "transformers", "peft", "numpy")


def _values(runs: pd.DataFrame, col: str) -> list[Any]:
    if col not in runs:
        return []
    return [v for v in dict.fromkeys(runs[col].dropna().tolist())]


def _join(values: list[Any], fmt=str) -> str:
    return ", ".join(fmt(v) for v in values) if values else ""


def _count(v: Any) -> str:
    try:
        return f"{int(float(v)):,}"
    except (TypeError, ValueError):
        return str(v)


# what one item of a task kind is called (an LM task is counted in tokens)
NOUNS = {"classification": "examples", "math": "problems", "mcqa": "questions",
         "multiple_choice": "questions"}  # fmt: skip
# the task fields that ask for a split's size (classification spells validation `val_size`)
SIZE_FIELDS = {"train": ("train_size",), "validation": ("val_size", "validation_size"),
               "test": ("test_size",)}  # fmt: skip


def _noun(runs: pd.DataFrame) -> str:
    """ "examples", "problems" or "questions" by the runs' task kinds ("examples" unknown)."""
    nouns = dict.fromkeys(NOUNS.get(str(k), "examples") for k in _values(runs, "task.kind"))
    return " / ".join(nouns) or "examples"


def _evaluated(runs: pd.DataFrame) -> str:
    """ "260 questions scored (limit 300; 40 skipped: ...)" for evaluate runs, "" else."""
    scored = _values(runs, "n_questions")
    if not scored:
        return ""
    notes = [f"limit {_join(_values(runs, 'params.limit'), _count)}"] if _values(
        runs, "params.limit") else []  # fmt: skip
    if skipped := [v for v in _values(runs, "n_skipped") if v]:
        notes.append(f"{_join(skipped, _count)} skipped: an answer alone is longer than the "
                     "model's window")  # fmt: skip
    if cut := [v for v in _values(runs, "n_truncated") if v]:
        notes.append(f"{_join(cut, _count)} with their context cut to the window")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"{_join(scored, _count)} {_noun(runs)} scored{extra}"


def _split_sizes(runs: pd.DataFrame, eval_reports: Mapping[str, Mapping[str, Any]]) -> str:
    """ "train 2,000 / validation 546 / test 500 examples" (classification: the training
    examples and each run's eval.json), the questions an evaluation scored, the sizes a
    math or multiple-choice task asked for, or tokens (LM)."""
    if out := _evaluated(runs):
        return out
    if "train_examples" in runs and runs["train_examples"].notna().any():
        parts = [f"train {_join(_values(runs, 'train_examples'), _count)}"]
        for split in ("validation", "test"):
            ns = list(dict.fromkeys(r[split]["n"] for r in eval_reports.values() if split in r))
            ns = ns or [v for f in SIZE_FIELDS[split] for v in _values(runs, f"task.{f}")]
            if ns:
                parts.append(f"{split} {_join(ns, _count)}")
        return " / ".join(parts) + f" {_noun(runs)}"
    asked = [(s, [v for f in fields for v in _values(runs, f"task.{f}")])
             for s, fields in SIZE_FIELDS.items()]  # fmt: skip
    if any(v for _, v in asked):
        return " / ".join(f"{s} {_join(v, _count)}" for s, v in asked if v) + f" {_noun(runs)}"
    cols = {"train": "train_split_tokens", "validation scored": "val_tokens_scored",
            "test scored": "test_tokens_scored"}  # fmt: skip
    parts = [f"{k} {_join(_values(runs, c), _count)}" for k, c in cols.items() if _values(runs, c)]
    if parts:
        return " / ".join(parts) + " tokens"
    cap = _values(runs, "task.eval.max_tokens")
    return f"evaluation capped at {_join(cap, _count)} tokens a split" if cap else "not recorded"


def _evaluation_only(runs: pd.DataFrame) -> bool:
    return "method" in runs and len(runs) > 0 and bool((runs["method"] == "evaluate").all())


def _budget(runs: pd.DataFrame) -> str:
    if _evaluation_only(runs):
        shots = _values(runs, "params.shots")
        return "no training (evaluation" + (f", {_join(shots, _count)}-shot)" if shots else ")")
    if _values(runs, "params.tokens"):
        per = _values(runs, "params.batch_size")
        seq = _values(runs, "task.seq_len")
        out = f"{_join(_values(runs, 'params.tokens'), human)} training tokens a run"
        if per and seq:
            out += f" (batches of {_join(per, _count)} × {_join(seq, _count)} tokens)"
        return out
    if _values(runs, "params.epochs"):
        out = f"{_join(_values(runs, 'params.epochs'), _count)} epochs"
        if _values(runs, "params.batch_size"):
            out += f" of batches of {_join(_values(runs, 'params.batch_size'), _count)} examples"
        return out
    return "not recorded"


def _tokenizer(runs: pd.DataFrame) -> str:
    if _evaluation_only(runs):
        return "each model's own"
    kinds = _values(runs, "task.tokenizer.kind")
    if kinds:
        vocab = _values(runs, "vocab_size")
        return _join(kinds) + (f" (vocabulary {_join(vocab, _count)})" if vocab else "")
    if _values(runs, "task.max_length"):
        lengths = _join(_values(runs, "task.max_length"), _count)
        return f"each model's own, truncated to {lengths} tokens"
    return "not recorded"


def _versions(runs: pd.DataFrame) -> str:
    seen = []
    for text in _values(runs, "versions"):
        try:
            v = json.loads(text) if isinstance(text, str) else dict(text)
        except (ValueError, TypeError):
            continue
        line = ", ".join(f"{k} {v[k]}" for k in VERSION_KEYS if k in v)
        if line and line not in seen:
            seen.append(line)
    return "; ".join(seen) or "not recorded"


def _seeds(runs: pd.DataFrame, seeds: list[Any]) -> str:
    if _evaluation_only(runs):
        return "none (evaluation)"
    return f"{_join(sorted(seeds, key=str))} ({len(seeds)})" if seeds else "not recorded"


def setup_rows(
    runs: pd.DataFrame,
    eval_reports: Mapping[str, Mapping[str, Any]] | None = None,
    planned: pd.DataFrame | None = None,
    models: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """(item, value) rows describing one stage's runs: dataset and splits with sizes,
    tokenizer, budget, models (`models` renames run products), methods, seeds, runs
    done/failed, commit and versions."""
    eval_reports, models = eval_reports or {}, models or {}
    seeds = _values(planned if planned is not None else runs, "seed")
    status = runs["status"].value_counts().to_dict() if "status" in runs else {}
    commits = _values(runs, "git_commit")
    rows = [
        ("dataset", _join(_values(runs, "task.dataset")) or "not recorded"),
        ("splits", _split_sizes(runs, eval_reports)),
        ("tokenizer", _tokenizer(runs)),
        ("budget", _budget(runs)),
        (
            "models",
            _join([models.get(str(m), m) for m in _values(runs, "model")]) or "not recorded",
        ),
        ("methods", _join(_values(runs, "method")) or "not recorded"),
        ("seeds", _seeds(runs, seeds)),
        ("runs", ", ".join(f"{n} {s}" for s, n in status.items()) or f"{len(runs)}"),
        ("commit", _join([str(c)[:12] for c in commits]) or "not recorded"),
        ("versions", _versions(runs)),
    ]
    if planned is not None and len(planned) > len(runs):
        rows.append(("not run yet", f"{len(planned) - len(runs)} of {len(planned)} planned runs"))
    return [{"item": k, "value": v} for k, v in rows]


def setup_html(rows: list[dict[str, str]]) -> str:
    return html.table(rows, ["item", "value"], left=2)


def read_eval_reports(runs: pd.DataFrame, runs_dir: Path | None) -> dict[str, dict]:
    """run id -> the run's eval.json (per-class reports, confusion matrices), for the runs
    whose folder has one; {} without a runs folder."""
    out: dict[str, dict] = {}
    if runs_dir is None or "run_id" not in runs:
        return out
    for run_id in runs["run_id"]:
        path = Path(runs_dir) / str(run_id) / "eval.json"
        try:
            out[str(run_id)] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def runs_html(runs: pd.DataFrame, models: Mapping[str, str]) -> str:
    """The runs table with provenance: one row per run (every status), its short id,
    stage, model (products named), method or label, seed, every config field that varies,
    its headline metrics, wall time, start time and code commit."""
    from scalelab.analysis.seeds import varying_columns
    from scalelab.analysis.table import field_text
    from scalelab.metrics import format_value, headline_metrics

    skip = ("model", "method", "variant", "seed")
    extra = [c for c in varying_columns(runs) if c not in skip]
    rows = []
    for _, r in runs.iterrows():
        method = str(r.get("method"))
        shown = headline_metrics(method, r.to_dict())
        commit = r.get("git_commit")
        rows.append({
            "run": str(r["run_id"])[:8], "stage": r.get("stage", ""),
            "model": models.get(str(r.get("model")), str(r.get("model"))),
            "method": str(r.get("variant", method)), "seed": r.get("seed", ""),
            "config": " ".join(t for c in extra if (t := field_text(c, r.get(c), models))),
            "status": r.get("status", ""),
            "metrics": "  ".join(f"{d.name} {format_value(d, r[d.name])}" for d in shown),
            "wall s": format_value(None, r.get("wall_s")) if pd.notna(r.get("wall_s")) else "",
            "started": str(r.get("started_at") or "")[:19].replace("T", " "),
            "commit": str(commit)[:10] if isinstance(commit, str) else "",
        })  # fmt: skip
    cols = ["run", "stage", "model", "method", "seed", "config", "status", "metrics", "wall s",
            "started", "commit"]  # fmt: skip
    return html.table(rows, cols, left=8)
