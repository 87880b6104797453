"""Predicting the largest models' task accuracy from the smaller ones, on published data.

For each pretraining-data group of the "LLMs on the Line" table (Mayilvahanan et al. 2025;
129 public models, copied to tests/analysis/data/llm_line_tasks.csv) and each of nine
multiple-choice tasks, hold out the `--holdout` models of largest training compute
(C = 6 N D) and predict their accuracy from the rest, three ways:

- two-step (Bhagia et al. 2024): task loss from C (power law), then accuracy from task loss
  (sigmoid, floor fixed at chance = 1 / number of choices, ceiling fitted);
- step 2 alone: the same sigmoid applied to the held-out models' observed task loss;
- direct: today's power law on the error rate 1 - acc against C (`--higher-is-better`).

The table is the mean absolute accuracy error on the held-out models, in points (0.01 = 1
point). Groups without sizes (Dolma) get step 2 alone, holding out the lowest task losses.
Writes results/task_accuracy_llm_line.json and prints the README table.
Usage: python benchmarks/task_accuracy_llm_line.py [--holdout 3] [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CSV = REPO / "tests" / "analysis" / "data" / "llm_line_tasks.csv"
# Answer choices per task (the task's chance accuracy is 1 / choices).
CHOICES = {
    "ARC-Challenge": 4,
    "ARC-Easy": 4,
    "HellaSwag": 4,
    "Winogrande": 2,
    "PIQA": 2,
    "Social IQa": 3,
    "CommonSenseQA": 5,
    "COPA": 2,
    "OpenBookQA": 4,
}
GROUP = "Pretraining Data"


def measure(csv: Path = CSV, holdout: int = 3) -> list[dict]:
    """One row per (group, task): held-out errors of each method, flags, chance checks."""
    from scalelab.analysis.api import FitSpec, fit_table
    from scalelab.analysis.table import read_csv

    df = read_csv(csv)
    sizes = {"n_col": "Size", "d_col": "Tokens", "group": GROUP, "holdout": holdout}
    rows = []
    for task, k in CHOICES.items():
        acc, loss = f"{task} Accuracy", f"{task} Loss"
        chain = fit_table(
            df, FitSpec("task-accuracy", "compute", acc, loss_col=loss, chance=1 / k, **sizes)
        )
        expo = fit_table(
            df,
            FitSpec(
                "task-accuracy", "compute", acc, loss_col=loss, chance=1 / k, acc_form="exponential",
                **sizes,
            ),
        )  # fmt: skip
        power = fit_table(df, FitSpec("power", "compute", acc, higher_is_better=True, **sizes))
        step2 = fit_table(
            df, FitSpec("loss-to-acc", loss, acc, chance=1 / k, group=GROUP, holdout=holdout)
        )
        direct = {g.group: g for g in power.groups}
        exponential = {g.group: g for g in expo.groups}
        for g in chain.groups:
            h = g.holdout
            rows.append(
                {
                    "group": g.group,
                    "task": task,
                    "n": g.fit.n_points,
                    "chance": 1 / k,
                    "two_step": h.mean_abs_error,
                    "step2_alone": h.as_dict()["step2_mean_abs_error"],
                    "two_step_exponential": exponential[g.group].holdout.mean_abs_error,
                    "direct_power": direct[g.group].holdout.mean_abs_error,
                    "below_chance": h.n_below_chance,
                    "flags": [f.message for f in g.flags],
                }
            )
        for g in step2.groups:
            if (g.group, task) not in {(r["group"], r["task"]) for r in rows}:
                rows.append(
                    {
                        "group": g.group,
                        "task": task,
                        "n": g.fit.n_points,
                        "chance": 1 / k,
                        "step2_alone": g.holdout.mean_abs_error,
                        "below_chance": g.holdout.n_below_chance,
                        "flags": [f.message for f in g.flags],
                    }
                )
    return rows


def _pts(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def markdown(rows: list[dict]) -> str:
    """The README table: per task, per group, two-step / direct power law (points), and
    the count of (group, task) pairs each wins."""
    groups = sorted({r["group"] for r in rows if "two_step" in r})
    others = sorted({r["group"] for r in rows} - set(groups))
    head = ["task", *(f"{g}: two-step / power" for g in groups), *(f"{g}: step 2" for g in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    by = {(r["group"], r["task"]): r for r in rows}
    for task in CHOICES:
        cells = [task]
        for g in groups:
            r = by.get((g, task))
            cells.append(f"{_pts(r['two_step'])} / {_pts(r['direct_power'])}" if r else "–")
        cells += [_pts(by[(g, task)]["step2_alone"]) if (g, task) in by else "–" for g in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    """Wins of the two-step chain over the direct power law (ties count for neither)."""
    pairs = [r for r in rows if "two_step" in r]
    two = sum(r["two_step"] < r["direct_power"] for r in pairs)
    direct = sum(r["direct_power"] < r["two_step"] for r in pairs)
    mean = {
        key: sum(r[key] for r in pairs) / len(pairs)
        for key in ("two_step", "step2_alone", "two_step_exponential", "direct_power")
    }
    per_task = {
        t: [sum(r["two_step"] < r["direct_power"] for r in pairs if r["task"] == t),
            sum(r["task"] == t for r in pairs)]
        for t in CHOICES
    }  # fmt: skip
    return {
        "pairs": len(pairs),
        "two_step_wins": two,
        "direct_wins": direct,
        "exponential_wins": sum(r["two_step_exponential"] < r["direct_power"] for r in pairs),
        "per_task_two_step_wins": per_task,
        "tasks_two_step_majority": sum(2 * w > n for w, n in per_task.values()),
        "tasks_direct_majority": sum(2 * w < n for w, n in per_task.values()),
        "tasks_tied": sum(2 * w == n for w, n in per_task.values()),
        "mean": mean,
        "below_chance": sum(r["below_chance"] for r in rows),
        "flagged_pairs": sum(bool(r["flags"]) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore"):  # degenerate direct fits (see README)
        rows = measure(args.csv, args.holdout)
    out = {"holdout": args.holdout, "rows": rows, "summary": summary(rows)}
    path = REPO / "benchmarks" / "results" / "task_accuracy_llm_line.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(rows))
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
