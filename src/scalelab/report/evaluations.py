"""The results of `evaluate` runs as a table: one row per evaluated model, one column per
task (corpus losses, multiple-choice accuracy and task loss).

An evaluate stage of a spec scores other runs' models; its rows are measurements of those
models, not a size ladder of their own, so the report shows them as a table and the
evaluated runs' rows carry them as `<metric>@<task>` columns (grid/api.py
`with_evaluations`) for the scaling and loss-to-loss sections.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from scalelab.report import html

# Per task kind, the metrics a reader compares first (the rest are in `results`).
SHOWN = {"lm": ("val_loss",), "multiple_choice": ("acc", "acc_norm", "task_loss"),
         "math": ("test_exact_match", "gsm8k_exact_match"),
         "mcqa": ("test_exact_match",)}  # fmt: skip


def is_evaluation(runs: pd.DataFrame) -> bool:
    """Every run is an `evaluate` run of a task this table shows (multiple choice, a corpus,
    math). Zero-shot classification reports fine-tuning's metrics (test_accuracy, per-class
    F1) and gets the classification section instead."""
    if "method" not in runs or not len(runs) or not (runs["method"] == "evaluate").all():
        return False
    return not ("test_accuracy" in runs and runs["test_accuracy"].notna().all())


def _model_label(run: pd.Series, models: Mapping[str, str], producers: pd.DataFrame) -> str:
    """The evaluated model: its name, and for a run product the producing run's dataset
    (one ladder per pretraining corpus reads apart)."""
    model = str(run.get("model", ""))
    name = models.get(model, model)
    run_id = model[4:].partition("@")[0] if model.startswith("run:") else None
    if run_id and "task.dataset" in producers and run_id in producers.index:
        from scalelab.grid.api import evaluation_name

        name += f" · trained on {evaluation_name(str(producers.loc[run_id, 'task.dataset']))}"
    return name


def _cell(run: pd.Series, metric: str) -> str:
    """`0.6200 ± 0.0488 (n=100)`: an accuracy with its standard error over the questions
    (lm-eval's) and how many there were, so 0.40 vs 0.45 on 20 questions reads as noise."""
    text = f"{float(run[metric]):.4f}"
    err = run.get(f"{metric}_stderr")
    if err is not None and pd.notna(err):
        text += f" ± {float(err):.4f}"
    count = {"acc": "n_questions", "test_exact_match": "test_n", "gsm8k_exact_match": "gsm8k_n"}
    n = run.get(count.get(metric, ""))
    return text + (f" (n={int(n)})" if n is not None and pd.notna(n) else "")


def evaluations_section(runs: pd.DataFrame, every: pd.DataFrame, models: Mapping[str, str]) -> str:
    """HTML: one table of `evaluate` runs (rows: models; columns: task metrics, accuracies
    with their standard error and question count). every: the whole experiment's runs (to
    name the producing runs)."""
    from scalelab.grid.api import evaluation_name

    producers = every.set_index("run_id") if "run_id" in every else pd.DataFrame()
    cells: dict[str, dict[str, object]] = {}
    columns: list[str] = []
    for _, r in runs.iterrows():
        shots = r.get("params.shots")
        where = evaluation_name(str(r.get("task.dataset", "")))
        if pd.notna(shots) and shots:
            where += f" ({int(shots)}-shot)"
        for metric in SHOWN.get(str(r.get("task.kind")), ()):
            if metric in r and pd.notna(r[metric]):
                col = f"{metric} {where}"
                columns += [col] if col not in columns else []
                row = cells.setdefault(_model_label(r, models, producers), {})
                row[col] = _cell(r, metric)
    if not cells:
        return ""
    rows = [{"model": name, **vals} for name, vals in cells.items()]
    caption = ("<p>Each cell: one <code>evaluate</code> run of that model on that task "
               "(val_loss: nats per token on the corpus's validation split, scored with the "
               "model's own tokenizer; acc and acc_norm: lm-eval's accuracies ± their standard "
               "error over the n questions; task_loss: the gold answer's negative "
               "log-likelihood per token; test_exact_match: the share of math problems whose "
               "final number is right, or of multiple-choice questions whose written option "
               "letter is, few-shot, greedy).</p>")  # fmt: skip
    return caption + html.table(rows, ["model", *columns])
