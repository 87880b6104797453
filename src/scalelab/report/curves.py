"""Learning-curve figures of the report: runs named by model and method, coloured by size,
and the results table's number drawn where the curve's points are another evaluation.

What a curve point is:
- pretraining: `val_loss` of a periodic pass (the first `params.eval_tokens` validation
  tokens, non-overlapping `seq_len` windows; step 0 is the untrained model), except the
  last point, which is the final sliding-window evaluation the table reports (runs stored
  before that rule keep their periodic last point; the star shows the table's value);
- classification: `val_accuracy` of the current weights on the whole validation split at
  step 0 and at each epoch end; the table's `val_accuracy` is that of the kept (best) step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.seeds import label_columns
from scalelab.report import html, plots

SIZE_COLUMNS = ("non_embedding_params", "total_params")


def run_labels(runs: pd.DataFrame, models: Mapping[str, str] | None = None) -> dict[str, str]:
    """run id -> "gpt-d2 pretrain" plus the seed when seeds vary and each other varying
    field (`lr=0.001`): names a reader knows, never a hash."""
    models = models or {}
    extra = label_columns(runs, exclude=())
    return {str(r["run_id"]): table.run_name(r, extra, models) for _, r in runs.iterrows()}


def _value_key(v: object) -> tuple[int, float, str]:
    """Sort key of a config value: numbers numerically (3e-05 < 0.0001), then text."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(v))
    return (0, f, "") if f == f else (2, 0.0, "")


def _config_fields(runs: pd.DataFrame) -> list[str]:
    """The columns that tell configurations apart (seeds aside): model, method or label,
    then every other varying field."""
    head = [c for c in ("model", "variant" if "variant" in runs else "method") if c in runs]
    return head + [c for c in label_columns(runs, exclude=()) if c != "seed"]


def size_order(runs: pd.DataFrame) -> list[str]:
    """Run ids, smallest model first (non-embedding, else total parameters), then by each
    varying field's value (numbers numerically: lr 3e-05 before 0.0001), then seed; the
    colour and legend order of every curve figure."""
    col = next((c for c in SIZE_COLUMNS if c in runs and runs[c].notna().any()), None)
    sizes = pd.to_numeric(runs[col], errors="coerce") if col else pd.Series(0.0, runs.index)
    fields = _config_fields(runs) + (["seed"] if "seed" in runs else [])
    keys = {i: (_value_key(sizes[i]), *(_value_key(runs.at[i, c]) for c in fields),
                str(runs.at[i, "run_id"])) for i in runs.index}  # fmt: skip
    return [str(runs.at[i, "run_id"]) for i in sorted(runs.index, key=keys.__getitem__)]


def run_colors(runs: pd.DataFrame) -> dict[str, object]:
    """run id -> colour, the same in every figure of a report (`style.size_colors`,
    viridis, smallest dark): by model size where each model has one configuration, else
    one colour per configuration in `size_order`; a configuration's seeds share it."""
    from scalelab.report.style import size_colors

    fields = _config_fields(runs)
    by_id = runs.set_index(runs["run_id"].astype(str))
    config = {rid: tuple(str(by_id.at[rid, c]) for c in fields) for rid in by_id.index}
    order = size_order(runs)
    configs = list(dict.fromkeys(config[r] for r in order))
    models = (
        list(dict.fromkeys(str(by_id.at[r, "model"]) for r in order)) if "model" in runs else []
    )
    if models and len(models) == len(configs):
        colors = size_colors(models)
        return {r: colors[str(by_id.at[r, "model"])] for r in order}
    colors = size_colors(configs)
    return {r: colors[config[r]] for r in order}


def _x_of(curves: pd.DataFrame) -> str:
    return "tokens" if "tokens" in curves and curves["tokens"].notna().any() else "step"


def final_points(runs: pd.DataFrame, curves: pd.DataFrame, y: str, at: str = "last") -> dict:
    """run id -> (x, the table's `y`): at the curve's last step (`at="last"`) or at the
    run's `best_step` (`at="best"`, the kept weights)."""
    x = _x_of(curves)
    out = {}
    by_run = dict(tuple(curves.groupby("run_id", sort=False)))
    for _, r in runs.iterrows():
        sub = by_run.get(r["run_id"])
        if sub is None or y not in r or pd.isna(r[y]):
            continue
        if at == "best" and "best_step" in r and pd.notna(r["best_step"]):
            hit = sub[sub["step"] == int(r["best_step"])]
            row = hit.iloc[0] if len(hit) else sub.sort_values("step").iloc[-1]
        else:
            row = sub.sort_values("step").iloc[-1]
        out[str(r["run_id"])] = (float(row[x]), float(r[y]))
    return out


def lm_curves(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    out: Path,
    prefix: str,
    models: Mapping[str, str] | None = None,
    per: str = "token",
) -> str:
    """Validation-loss curves of pretraining runs, training loss dashed, the table's
    val_loss starred at the end. Returns the figure's HTML."""
    cur = curves[curves["run_id"].isin(runs["run_id"])]
    final = final_points(runs, cur, "val_loss")
    png = plots.plot_learning_curves(
        cur, out / f"{prefix}curves.png", x=_x_of(cur), labels=run_labels(runs, models),
        order=size_order(runs), final=final, title="learning curves (validation loss)",
        final_label="final evaluation = the table's val_loss", per=per, colors=run_colors(runs),
    )  # fmt: skip
    eval_tokens = ", ".join(f"{int(v):,}" for v in runs.get("params.eval_tokens", pd.Series(
        [32768])).dropna().unique()) or "32,768"  # fmt: skip
    caption = (
        "Circles: validation loss of the periodic passes (the first "
        f"{eval_tokens} validation tokens in non-overlapping windows; step 0 is the untrained "
        "model where the run logged it). Star: the final evaluation the results table "
        "reports (sliding window over task.eval.max_tokens), at the last step. Dashed: mean "
        "training loss since the previous point"
        + (" (for distill runs the objective, next-token CE and the KD term mixed, which is "
           "why it sits below validation)." if "method" in runs and (runs["method"] == "distill").any() else ".")
    )  # fmt: skip
    return html.figure(png, caption)


def classification_curves(runs: pd.DataFrame, curves: pd.DataFrame, out: Path, prefix: str) -> str:
    """Validation-accuracy curves per run; the kept step (the table's val_accuracy) starred."""
    cur = curves[curves["run_id"].isin(runs["run_id"])]
    labels = {str(r["run_id"]): f"{r['_label']} seed {r['seed']}" for _, r in runs.iterrows()}
    order, colors = size_order(runs), run_colors(runs)
    png = plots.plot_learning_curves(
        cur, out / f"{prefix}val_accuracy_curves.png", x=_x_of(cur), y="val_accuracy",
        labels=labels, order=order, final=final_points(runs, cur, "val_accuracy", at="best"),
        final_label="kept weights = the table's val_accuracy", train=False,
        title="learning curves (validation accuracy)", per="example",
        x_label="training examples seen", colors=colors,
    )  # fmt: skip
    return html.figure(
        png,
        "Validation accuracy of the current weights at step 0 (where logged) and after each "
        "epoch; the star marks the step whose weights were kept for the test evaluation.",
    )
