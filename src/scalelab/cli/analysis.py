"""`scalelab fit`: a scaling law fitted to a results CSV, with intervals and flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from scalelab.cli import distill
from scalelab.cli.common import g as _g
from scalelab.cli.common import input_file, jsonable
from scalelab.errors import ScalelabError, shown

LAW_CHOICES = (
    "power", "chinchilla", "loss-to-loss", "loss-to-acc", "task-accuracy", "distillation",
)  # fmt: skip
PARAM_ORDER = (
    "E", "A", "alpha", "B", "beta", "K", "kappa", "E_x", "E_y",
    "floor", "ceiling", "k", "L0", "epsilon", "gamma",
)  # fmt: skip


def _format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text rendering of fit objects: one block per group."""
    lines = []
    for r in rows:
        head = f"[{r['group']}] " if r["group"] is not None else ""
        lines.append(f"{head}{r['law']}: n={r['n_points']}  R²={_g(r['r2'], '.4f')}")
        for k in PARAM_ORDER:
            if k in r:
                ci = r["ci"].get(k)
                ci_s = f"   95% CI [{ci[0]:.5g}, {ci[1]:.5g}]" if ci else ""
                lines.append(f"  {k:<7} = {r[k]:<12.6g}{ci_s}")
        signs = {f.get("param") for f in r.get("flags", []) if f.get("kind") == "sign"}
        if "compute_optimal" in r and not signs:  # an exponent <= 0 makes it meaningless
            co = r["compute_optimal"]
            lines.append(
                f"  N_opt ∝ C^{co['N_opt_exponent']:.4f}, D_opt ∝ C^{co['D_opt_exponent']:.4f}"
            )
        if r.get("steps"):
            s1, s2 = r["steps"]["step1"], r["steps"]["step2"]
            lines.append(
                f"  steps: {s1['law']} task loss from size R²={_g(s1['r2'], '.4f')}; "
                f"{s2['law']} R²={_g(s2['r2'], '.4f')}"
            )
        if r.get("holdout"):
            lines.extend(_holdout_lines(r["holdout"]))
        if r.get("smallest"):
            s = r["smallest"]
            ci = ""
            if s["lo"] is not None:
                ci = f" (95% CI [{_g(s['lo'])}, {_g(s['hi'])}])"
            what = s.get("at") or "smallest x"
            lines.append(f"  {what} reaching {s['target']:.4g}: {s['n']:.4g}{ci}")
            lines.extend(f"    {v}" for v in s.get("validity", []))
            if r.get("flags"):
                lines.append("    from a fit with identifiability flags (below): read it with them")
        lines.extend(f"  flag: {f['message']}" for f in r.get("flags", []))
        lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(line.rstrip() for line in lines)


def _holdout_lines(h: dict[str, Any]) -> list[str]:
    """Holdout summary: relative errors for losses; absolute accuracy errors for task laws."""
    if "pred" not in h:
        line = (
            f"  holdout (largest {h['k']}): mean |rel err| {_g(h['mean_abs_rel_error'])}, "
            f"max {_g(h['max_abs_rel_error'])}"
        )
        if h.get("mean_abs_error") is not None:
            line += f", mean |err| {_g(h['mean_abs_error'])}"
        return [line]
    lines = [
        f"  holdout ({h['k']} most capable): mean |acc err| {_g(h['mean_abs_error'], '.4f')}, "
        f"max {_g(h['max_abs_error'], '.4f')}, "
        + (
            f"{h['n_below_chance']} below chance {h['chance']:.4g}"
            if h.get("chance") is not None
            else "chance not given (floor fitted)"
        )  # fmt: skip
        + (
            f"; step 2 alone (observed task loss) {_g(h['step2_mean_abs_error'], '.4f')}"
            if "step2_mean_abs_error" in h
            else ""
        )
    ]
    labels = h.get("labels") or [f"#{i + 1}" for i in range(h["k"])]
    for i, name in enumerate(labels):
        ci = f"  95% CI [{_g(h['lo'][i], '.4f')}, {_g(h['hi'][i], '.4f')}]" if "lo" in h else ""
        lines.append(
            f"    {name}: acc {_g(h['acc'][i], '.4f')}, predicted {_g(h['pred'][i], '.4f')}{ci}"
        )
    return lines


def fit_command(
    csv: Path = typer.Argument(..., help="Results table (CSV, one row per run)."),
    law: str = typer.Option(
        ...,
        "--law",
        help="power | chinchilla | loss-to-loss | loss-to-acc | task-accuracy | distillation",
    ),
    x: str = typer.Option(
        ...,
        "--x",
        help="x column (N, D, 'compute' = 6ND, L_x, or the task loss for loss-to-acc; "
        "distillation: N, the student's N_S on distilled rows).",
    ),
    y: str = typer.Option(
        ..., "--y", help="y column (a loss, L_y for loss-to-loss, an accuracy for task laws)."
    ),
    x2: str | None = typer.Option(
        None, "--x2", help="Chinchilla, task-accuracy, distillation: the D (tokens) column."
    ),
    group: str | None = typer.Option(None, "--group", help="Fit separately per value of COL."),
    n_boot: int = typer.Option(0, "--bootstrap", help="Bootstrap refits for 95% CIs."),
    holdout: int = typer.Option(0, "--holdout", help="Refit without the K largest; report error."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    no_offset: bool = typer.Option(False, "--no-offset", help="Power law without E."),
    x2_is_compute: bool = typer.Option(False, "--x2-is-compute", help="--x2 is C; D = C/(6N)."),
    n_col: str | None = typer.Option(None, "--n-col", help="Loss-to-loss: N column for E fits."),
    d_col: str | None = typer.Option(None, "--d-col", help="Loss-to-loss: D column for E fits."),
    e_x: float | None = typer.Option(None, "--e-x", help="Loss-to-loss: E_x given explicitly."),
    e_y: float | None = typer.Option(None, "--e-y", help="Loss-to-loss: E_y given explicitly."),
    drop_top_loss: int = typer.Option(0, "--drop-top-loss", help="Drop the K highest-y rows."),
    target: float | None = typer.Option(None, "--target", help="Smallest x reaching this y."),
    target_row: str | None = typer.Option(None, "--target-row", help="Target = y of this run."),
    higher_is_better: bool = typer.Option(False, "--higher-is-better", help="y is an accuracy."),
    loss_col: str | None = typer.Option(
        None, "--loss-col", help="task-accuracy: the task loss column (step 1's y, step 2's x)."
    ),
    acc_form: str = typer.Option(
        "sigmoid", "--acc-form", help="Task laws: accuracy from loss, sigmoid | exponential."
    ),
    chance: float | None = typer.Option(None, "--chance", help="Task laws: chance accuracy."),
    choices_col: str | None = typer.Option(
        None, "--choices-col", help="Task laws: column of answer choices K (chance = 1/K)."
    ),
    ceiling: float | None = typer.Option(
        None, "--ceiling", help="Task laws (sigmoid): fix the ceiling, e.g. 1 [default: fitted]."
    ),
    tokens_per_param: float | None = typer.Option(
        None, "--tokens-per-param", help="task-accuracy --target, distillation: D = R*N."
    ),
    target_tokens: float | None = typer.Option(
        None, "--target-tokens", help="task-accuracy --target, distillation answers: D tokens."
    ),
    teacher_loss: str | None = typer.Option(
        None, "--teacher-loss", help="distillation: the teacher's loss L_T column (required)."
    ),
    scratch: str | None = typer.Option(
        None,
        "--scratch",
        help="distillation: COL=VALUE marks from-scratch rows [default: no teacher loss].",
    ),
    teacher_n: str | None = typer.Option(
        None, "--teacher-n", help="distillation: the teacher's N_T column (compute answers)."
    ),
    teacher_d: str | None = typer.Option(
        None, "--teacher-d", help="distillation: the teacher's D_T column (compute answers)."
    ),
    supervised_gamma: float | None = typer.Option(
        None, "--supervised-gamma", help="distillation: hold gamma of Eq. 1 (1 = Chinchilla)."
    ),
    holdout_by: str = typer.Option(
        "student", "--holdout-by", help="distillation --holdout K: student | teacher."
    ),
    student: list[float] | None = typer.Option(
        None, "--student", help="distillation: answer for a student of N_S (repeatable)."
    ),
    at_teacher_loss: list[float] | None = typer.Option(
        None, "--at-teacher-loss", help="distillation: also predict at this L_T (repeatable)."
    ),
    max_ci_factor: float = typer.Option(
        10.0, "--max-ci-factor", help="Flag a parameter whose 95% CI spans more than this factor."
    ),
    max_holdout_error: float | None = typer.Option(
        None,
        "--max-holdout-error",
        help="Flag a holdout error above this [default: 0.05 relative for losses, 0.03 absolute "
        "for accuracies].",
    ),
    best_over: list[str] = typer.Option(
        [],
        "--best-over",
        help="Per model (and other unswept config), keep the best run over "
        "this swept column, e.g. params.lr (repeatable): the sweep's envelope.",
    ),
    select_on: str | None = typer.Option(
        None,
        "--select-on",
        help="--best-over: the validation column to choose on [default: "
        "the validation twin of --y (test_X -> val_X), else val_loss].",
    ),
    select_higher: bool = typer.Option(
        False,
        "--select-higher",
        help="--best-over: higher --select-on is better (accuracies) "
        "[default: as the CSV's methods declare it, else lower].",
    ),
) -> None:
    """Fit a scaling law to a results CSV and print parameters with bootstrap intervals and
    identifiability flags."""
    if law not in LAW_CHOICES:
        raise ScalelabError(f"--law must be one of {', '.join(LAW_CHOICES)} (got {shown(law)})")
    if fmt not in ("table", "json"):
        raise ScalelabError(f"--format must be table or json (got {shown(fmt)})")
    if min(n_boot, holdout, drop_top_loss) < 0:
        raise ScalelabError("--bootstrap, --holdout and --drop-top-loss must be >= 0")
    if not (max_ci_factor > 1 and (max_holdout_error is None or max_holdout_error > 0)):
        raise ScalelabError("--max-ci-factor must be > 1 and --max-holdout-error > 0")
    input_file(csv, "CSV file")
    from scalelab.analysis.identify import Thresholds  # heavy: after the checks

    limits = {}
    if max_holdout_error is not None:
        limits = {"holdout_rel": max_holdout_error, "holdout_abs": max_holdout_error}
    thresholds = Thresholds(ci_factor=max_ci_factor, **limits)
    distill_opts = {
        "--teacher-loss": teacher_loss is not None,
        "--scratch": scratch is not None,
        "--teacher-n": teacher_n is not None,
        "--teacher-d": teacher_d is not None,
        "--supervised-gamma": supervised_gamma is not None,
        "--holdout-by": holdout_by != "student",
        "--student": bool(student),
        "--at-teacher-loss": bool(at_teacher_loss),
    }
    if law == "distillation":
        from scalelab.analysis.distill_table import DistillSpec

        distill.reject_other_options(
            {
                "--group": group is not None,
                "--no-offset": no_offset,
                "--x2-is-compute": x2_is_compute,
                "--n-col": n_col is not None,
                "--d-col": d_col is not None,
                "--e-x": e_x is not None,
                "--e-y": e_y is not None,
                "--drop-top-loss": drop_top_loss > 0,
                "--target-row": target_row is not None,
                "--higher-is-better": higher_is_better,
                "--loss-col": loss_col is not None,
                "--acc-form": acc_form != "sigmoid",
                "--chance": chance is not None,
                "--choices-col": choices_col is not None,
                "--ceiling": ceiling is not None,
                "--best-over": bool(best_over),
            }
        )
        if teacher_loss is None or x2 is None:
            raise ScalelabError(
                "--law distillation needs --teacher-loss (the L_T column) and --x2 (tokens)"
            )
        spec = DistillSpec(
            n=x, d=x2, y=y, teacher_loss=teacher_loss, scratch=scratch, teacher_n=teacher_n,
            teacher_d=teacher_d, gamma=supervised_gamma, bootstrap=n_boot, seed=seed,
            holdout=holdout, holdout_by=holdout_by, students=tuple(student or ()),
            teacher_losses=tuple(at_teacher_loss or ()), target=target,
            target_tokens=target_tokens, tokens_per_param=tokens_per_param,
            thresholds=thresholds,
        )  # fmt: skip
        distill.run(spec, csv, fmt)
        return
    for opt, used in distill_opts.items():
        if used:
            raise ScalelabError(f"{opt} applies to --law distillation only")
    if (select_on is not None or select_higher) and not best_over:
        opt = "--select-on" if select_on is not None else "--select-higher"
        raise ScalelabError(f"{opt} applies with --best-over only")
    from scalelab.analysis.api import FitSpec, fit_table
    from scalelab.analysis.table import read_csv

    spec = FitSpec(
        law=law,
        x=x,
        y=y,
        x2=x2,
        group=group,
        bootstrap=n_boot,
        holdout=holdout,
        seed=seed,
        offset=not no_offset,
        x2_is_compute=x2_is_compute,
        n_col=n_col,
        d_col=d_col,
        e_x=e_x,
        e_y=e_y,
        drop_top_loss=drop_top_loss,
        target=target,
        target_row=target_row,
        higher_is_better=higher_is_better,
        loss_col=loss_col,
        acc_form=acc_form,
        chance=chance,
        choices_col=choices_col,
        ceiling=ceiling,
        tokens_per_param=tokens_per_param,
        target_tokens=target_tokens,
        thresholds=thresholds,
    )
    data, env = read_csv(csv), None
    if best_over:
        env = _envelope(data, spec, best_over, select_on, select_higher)
        data = env.rows
    report = fit_table(data, spec)
    rows = [jsonable(g.as_dict()) for g in report.groups]
    if fmt == "json" and env is not None:
        from scalelab.analysis.envelope import envelope_json

        doc = {"fits": rows, "best_over": envelope_json(env)}
        typer.echo(json.dumps(jsonable(doc), indent=2))
    elif fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        if env is not None:
            from scalelab.analysis.envelope import winners_text

            typer.echo("\n".join([*winners_text(env), ""]))
        typer.echo(_format_table(rows))
    for s in report.skipped:
        typer.echo(f"skipped: {s}", err=True)


SIZE_LAWS = ("power", "chinchilla", "task-accuracy")  # --x is a size: it names a model


def _envelope(data, spec, axes: list[str], select_on: str | None, higher: bool):
    """The sweep's envelope (`analysis/envelope.py`) of a CSV for `fit --best-over`: a cell
    is the table's config columns plus the law's size columns and --group; the selection
    column is --select-on, else the validation twin of --y, else val_loss. Raises
    ScalelabError (one line) for a bad axis or selection column."""
    from scalelab.analysis.envelope import (
        best_over,
        declared_direction,
        default_cells,
        validation_twin,
    )

    twin = validation_twin(spec.y)
    if select_on is None:
        found = [c for c in (twin, "val_loss") if c.startswith("val_") and c in data.columns]
        if not found:
            want = twin if twin.startswith("val_") else "val_loss"
            raise ScalelabError(
                f"--best-over chooses on validation: no {want} column here; name one with "
                "--select-on COL"
            )
        select_on = found[0]
    sizes = [spec.x if spec.law in SIZE_LAWS else None, spec.x2, spec.group, spec.n_col,
             spec.d_col]  # fmt: skip
    cells = default_cells(data, axes)
    cells += [c for c in sizes if c and c in data.columns and c not in cells and c not in axes]
    if not cells:
        raise ScalelabError(
            "--best-over: no column names a model (a model column, or --x a size column)"
        )
    if not higher:
        declared = declared_direction(select_on, data) if select_on in data.columns else None
        higher = declared if declared is not None else spec.higher_is_better and select_on == twin
    return best_over(data, axes, select_on, bool(higher), cells)


def register(app: typer.Typer) -> None:
    """Add `fit` to the main app."""
    app.command("fit")(fit_command)
