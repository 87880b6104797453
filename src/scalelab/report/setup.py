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


def _split_sizes(runs: pd.DataFrame, eval_reports: Mapping[str, Mapping[str, Any]]) -> str:
    """ "train 2,000 / validation 546 / test 500 examples" (classification), tokens (LM) or
    the problems a math or mcqa task asked for."""
    asked = [(s, _values(runs, f"task.{s}_size")) for s in ("train", "validation", "test")]
    if any(v for _, v in asked):
        return " / ".join(f"{s} {_join(v, _count)}" for s, v in asked if v) + " problems"
    if "train_examples" in runs and runs["train_examples"].notna().any():
        parts = [f"train {_join(_values(runs, 'train_examples'), _count)}"]
        for split in ("validation", "test"):
            ns = list(dict.fromkeys(r[split]["n"] for r in eval_reports.values() if split in r))
            if ns:
                parts.append(f"{split} {_join(ns, _count)}")
        return " / ".join(parts) + " examples"
    cols = {"train": "train_split_tokens", "validation scored": "val_tokens_scored",
            "test scored": "test_tokens_scored"}  # fmt: skip
    parts = [f"{k} {_join(_values(runs, c), _count)}" for k, c in cols.items() if _values(runs, c)]
    if parts:
        return " / ".join(parts) + " tokens"
    cap = _values(runs, "task.eval.max_tokens")
    return f"evaluation capped at {_join(cap, _count)} tokens a split" if cap else "not recorded"


def _budget(runs: pd.DataFrame) -> str:
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
        ("seeds", f"{_join(sorted(seeds, key=str))} ({len(seeds)})" if seeds else "not recorded"),
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
