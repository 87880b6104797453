"""One self-contained report.html: PNGs inlined as base64, a table of fitted laws, notes."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalelab.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; }
td.flag { color: #a40; max-width: 28em; }
"""
PARAM_NAMES = (
    "E", "A", "alpha", "B", "beta", "K", "kappa", "E_x", "E_y",
    "floor", "ceiling", "k", "L0", "epsilon", "gamma",
)  # fmt: skip


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def fits_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """HTML table of fit objects (as from `GroupFit.as_dict`): params with 95% CIs, R², n,
    holdout error and the identifiability flags in words."""
    if not rows:
        return "<p class='note'>No laws could be fitted.</p>"
    head = (
        "<tr><th>fit</th><th>group</th><th>law</th><th>parameters (95% CI)</th>"
        "<th>R²</th><th>n</th><th>holdout error</th><th>identifiability flags</th></tr>"
    )
    body = []
    for r in rows:
        names = [k for k in PARAM_NAMES if k in r]
        parts = []
        for k in names:
            ci = r.get("ci", {}).get(k)
            parts.append(f"{k}={_fmt(r[k])}" + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
        flags = "<br>".join(_fmt(f["message"]) for f in r.get("flags", [])) or "–"
        body.append(
            f"<tr><td class='l'>{_fmt(r.get('title', ''))}</td><td class='l'>{_fmt(r['group'])}</td>"
            f"<td class='l'>{_fmt(r['law'])}</td><td class='l'>{'<br>'.join(parts)}</td>"
            f"<td>{_fmt(r['r2'])}</td><td>{r['n_points']}</td><td>{_holdout(r.get('holdout'))}</td>"
            f"<td class='l flag'>{flags}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _holdout(hold: Mapping[str, Any] | None) -> str:
    """Relative error for a loss law, absolute accuracy error for a task law."""
    if not hold:
        return "–"
    if "pred" in hold:  # task accuracy
        return f"|acc err| {_fmt(hold['mean_abs_error'])} (k={hold['k']})"
    return f"|rel err| {_fmt(hold['mean_abs_rel_error'])} (k={hold['k']})"


def write_html(
    path: Path,
    title: str,
    images: Sequence[tuple[str, Path]],
    fit_rows: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
) -> Path:
    """Write the report: `images` are (caption, png path) pairs, embedded inline."""
    figs = "".join(f"<h3>{html.escape(cap)}</h3>{_image(p)}" for cap, p in images)
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<h2>Fitted laws</h2>{fits_table(fit_rows)}"
        + (f"<h2>Notes</h2><ul class='note'>{note_items}</ul>" if note_items else "")
        + f"<h2>Figures</h2>{figs}</body></html>"
    )
    atomic_write_text(Path(path), doc)
    return Path(path)
