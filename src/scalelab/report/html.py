"""One self-contained report.html: PNGs inlined as base64, tables, notes, sized to the page.

The page is a column 960 pixels wide at most; figures are drawn 880 pixels wide and scale
down with the window; wide tables scroll inside their own box, so nothing overflows.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalelab.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 960px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
figure { margin: 1em 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
.note { color: #555; font-size: 0.9em; }
td.flag { color: #a40; max-width: 28em; }
"""
PARAM_NAMES = (
    "E", "A", "alpha", "B", "beta", "K", "kappa", "E_x", "E_y",
    "floor", "ceiling", "k", "L0", "epsilon", "gamma",
)  # fmt: skip


def esc(v: Any) -> str:
    """A cell value as HTML text: floats to 4 significant digits, everything escaped."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def figure(path: Path, caption: str) -> str:
    """<figure> with the PNG at `path` inlined and its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], left: int = 1) -> str:
    """A plain table of `rows` (dicts) in `columns` order; the first `left` columns are
    left-aligned (names), the rest right-aligned (numbers)."""

    def cls(i: int) -> str:
        return " class='l'" if i < left else ""

    head = "".join(f"<th{cls(i)}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>"
        + "".join(f"<td{cls(i)}>{esc(r.get(c, ''))}</td>" for i, c in enumerate(columns))
        + "</tr>"
        for r in rows
    )
    return f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"


def notes(items: Sequence[str]) -> str:
    """A bulleted list of notes ("" for none)."""
    if not items:
        return ""
    return "<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in items) + "</ul>"


def fits_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """HTML table of fit objects (as from `GroupFit.as_dict`): params with 95% CIs, R², n,
    holdout error and the identifiability flags in words."""
    if not rows:
        return "<p class='note'>No laws could be fitted.</p>"
    head = (
        "<tr><th class='l'>fit</th><th class='l'>group</th><th class='l'>law</th>"
        "<th class='l'>parameters (95% CI)</th>"
        "<th>R²</th><th>n</th><th>holdout error</th><th class='l'>identifiability flags</th></tr>"
    )
    body = []
    for r in rows:
        names = [k for k in PARAM_NAMES if k in r]
        parts = []
        for k in names:
            ci = r.get("ci", {}).get(k)
            parts.append(f"{k}={esc(r[k])}" + (f" [{esc(ci[0])}, {esc(ci[1])}]" if ci else ""))
        flags = "<br>".join(esc(f["message"]) for f in r.get("flags", [])) or "–"
        body.append(
            f"<tr><td class='l'>{esc(r.get('title', ''))}</td>"
            f"<td class='l'>{esc('all runs' if r['group'] is None else r['group'])}</td>"
            f"<td class='l'>{esc(r['law'])}</td><td class='l'>{'<br>'.join(parts)}</td>"
            f"<td>{esc(r['r2'])}</td><td>{r['n_points']}</td><td>{_holdout(r.get('holdout'))}</td>"
            f"<td class='l flag'>{flags}</td></tr>"
        )
    return f"<div class='wide'><table>{head}{''.join(body)}</table></div>"


def _holdout(hold: Mapping[str, Any] | None) -> str:
    """Relative error for a loss law, absolute accuracy error for a task law."""
    if not hold:
        return "–"
    if "pred" in hold:  # task accuracy
        return f"|acc err| {esc(hold['mean_abs_error'])} (k={hold['k']})"
    return f"|rel err| {esc(hold['mean_abs_rel_error'])} (k={hold['k']})"


def write_page(path: Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write the report: `sections` are (heading, inner HTML) pairs, in page order."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections if inner)
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    atomic_write_text(Path(path), doc)
    return Path(path)
