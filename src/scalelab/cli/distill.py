"""`scalelab fit --law distillation`: the distillation scaling law of Busbridge et al.
(2025), its parameters with intervals, flags, holdout error and the answers asked for."""

from __future__ import annotations

import json
from typing import Any

import typer

from scalelab.cli.common import g as _g
from scalelab.cli.common import jsonable
from scalelab.errors import ScalelabError

SUP_ORDER = ("E", "A", "alpha", "B", "beta", "gamma")
DIST_ORDER = ("c0", "c1", "d1", "f1", "A'", "alpha'", "B'", "beta'", "gamma'")
EQ1 = "L~(N, D) = E + (A/N^alpha + B/D^beta)^gamma"
EQ8 = "L_S = L_T + L_T^-c0 (1 + (L_T/(L~_S d1))^(1/f1))^(-c1 f1) (A'/N_S^alpha' + B'/D_S^beta')^gamma'"
SIDES = {
    "before": "before the gap (a stronger teacher would help)",
    "past": "past the gap (too strong: a weaker teacher would do better)",
    "at": "at the gap (within its interval)",
    "unknown": "gap not found",
}


def reject_other_options(given: dict[str, bool]) -> None:
    """Options of the other laws make no sense here: one error naming the first."""
    for opt, used in given.items():
        if used:
            raise ScalelabError(f"{opt} does not apply to --law distillation")


def run(spec: Any, csv: Any, fmt: str) -> None:
    """Fit and print (`fmt` table | json). `spec`: a `DistillSpec`."""
    from scalelab.analysis.distill_table import fit_distill_table
    from scalelab.analysis.table import read_csv

    out = jsonable(fit_distill_table(read_csv(csv), spec).as_dict())
    typer.echo(json.dumps(out, indent=2) if fmt == "json" else format_report(out))


def _ci(e: dict[str, Any], spec: str = ".4g") -> str:
    if e.get("lo") is None or e.get("hi") is None:
        return ""
    tail = f"; {e['unreached']:.0%} of refits never reach it" if e.get("unreached") else ""
    return f" (95% CI [{_g(e['lo'], spec)}, {_g(e['hi'], spec)}]{tail})"


def _params(r: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    lines = []
    for k in names:
        if k in r:
            ci = r["ci"].get(k)
            ci_s = f"   95% CI [{_g(ci[0], '.5g')}, {_g(ci[1], '.5g')}]" if ci else ""
            lines.append(f"    {k:<7} = {_g(r[k], '.6g'):<12}{ci_s}")  # "inf" after jsonable
    return lines


def format_report(r: dict[str, Any]) -> str:
    """Plain-text rendering of `DistillReport.as_dict()` (after `jsonable`)."""
    st = r["stages"]
    lines = [
        *(
            [
                "no bootstrap: the answers below are point estimates without intervals "
                "(--bootstrap N adds them)"
            ]
            if not r.get("bootstrap")
            else []
        ),  # fmt: skip
        f"distillation (Busbridge et al. 2025): n={st['distillation']['n_points']} distilled, "
        f"{st['supervised']['n_points']} from scratch",
        f"  supervised, Eq. 1: {EQ1}  R²={_g(st['supervised']['r2'], '.4f')}",
        *_params(r, SUP_ORDER),
        f"  distillation, Eq. 8: {EQ8}  R²={_g(st['distillation']['r2'], '.4f')}",
        *_params(r, DIST_ORDER),
        f"  teachers: {', '.join(r['teachers'])}",
    ]
    h = r.get("holdout")
    if h:
        lines.append(
            f"  holdout, refitted without {h['held_out']} ({h['k']} run{'s' * (h['k'] != 1)}): mean |rel err| "
            f"{_g(h['mean_abs_rel_error'])}, max {_g(h['max_abs_rel_error'])}, "
            f"mean |err| {_g(h.get('mean_abs_error'))} nats"
        )
    for s in r["answers"].get("students", []):
        lines.extend(_student_lines(s))
    if "smallest" in r["answers"]:
        sm = r["answers"]["smallest"]
        lines.append(f"  smallest student beating {sm['target']:.4g} ({sm['at']}):")
        for row in sm["rows"]:
            lines.append(f"    {row['teacher']}: N_S {_g(row['N_S']['value'])}{_ci(row['N_S'])}")
    lines.extend(f"  flag: {f['message']}" for f in r["flags"])
    lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(line.rstrip() for line in lines)


def _student_lines(s: dict[str, Any]) -> list[str]:
    star, best = s["L_T_star"], s["L_S_at_L_T_star"]
    lines = [
        f"  student N_S {_g(s['N_S'])}, D_S {_g(s['D_S'])} ({s['D_S_from']}):",
        f"    capacity gap: best teacher loss L_T* {_g(star['value'])}{_ci(star)}, "
        f"student loss there {_g(best['value'])}{_ci(best)}",
    ]
    for t in s["teachers"]:
        lines.append(
            f"    {t['teacher']}: predicted L_S {_g(t['L_S']['value'])}{_ci(t['L_S'])}, "
            f"{SIDES[t['side']]}"
        )
    lines.append(
        "    vs training this student from scratch on the same compute (6ND to train, "
        "2ND per teacher forward):"
    )
    for v in s["versus_supervised"]:
        lines.append(f"      {v['teacher']}, distilled L_S "
                     f"{_g(v['rows'][0]['L_distilled']['value'])}:")  # fmt: skip
        for row in v["rows"]:
            a = row["advantage"]
            lines.append(
                f"        {row['budget']:<18} {_g(row['compute'], '.3g')} FLOP: from scratch "
                f"{_g(row['L_supervised']['value'])} on D {_g(row['D_supervised'], '.3g')}, "
                f"advantage {_g(a['value'], '+.4f')}{_ci(a, '+.4f')}: {row['verdict']}"
            )
    return lines
