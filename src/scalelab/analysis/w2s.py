"""Performance gap recovered (PGR) of weak-to-strong runs: pure functions over a runs table.

Burns et al. (2023, "Weak-to-Strong Generalization", Sec. 3, Eq. in "Performance gap
recovered"): PGR = (acc_w2s - acc_weak) / (acc_strong_ceiling - acc_weak): 0 when the
student is no better than its weak supervisor, 1 when it matches the strong model trained
on ground truth.

Roles come from the runs table (`methods/w2s.py` docstring): a student is a `w2s` run that
ends its chain (chain_step == chain_steps); its weak run is the start of its chain
(following `params.labels` back to a run that is not `w2s`); its strong ceiling is the
ground-truth fine-tuning run (not `w2s`) of the same model, seed and dataset on the
student's half. A model is named as `table.shown_models` names it (cut models with their
blocks), its size is `non_embedding_params`.

Intervals: a bootstrap that resamples seeds and, when per-example test correctness is
given (`predictions.npz` of each run), test examples, the same draws for every run so that
comparisons are paired. Pairs whose strong ceiling does not beat the weak ceiling (mean
over seeds) have no meaningful PGR: they are excluded from the medians and listed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalelab.analysis.table import require_columns, shown_models
from scalelab.errors import ScalelabError


def pgr(acc_w2s, acc_weak, acc_strong):
    """(acc_w2s - acc_weak) / (acc_strong - acc_weak), elementwise; NaN where the strong
    ceiling does not beat the weak one (the gap is 0 or negative)."""
    w2s, weak, strong = (np.asarray(a, dtype=float) for a in (acc_w2s, acc_weak, acc_strong))
    gap = strong - weak
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (w2s - weak) / np.where(gap > 0, gap, 1.0), np.nan)


def _method(runs: pd.DataFrame) -> pd.Series:
    return runs["variant"] if "variant" in runs else runs["method"]


def roles(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished student: method (its label), seed, weak / strong model names
    and sizes, and the run ids of the student, its weak run and its strong ceiling (None
    when the grid has none). Raises ScalelabError when the table lacks a needed column."""
    if "method" in runs and not (runs["method"] == "w2s").any():
        raise ScalelabError("no w2s runs in these results: weak-to-strong needs a stage of "
                            "students (methods: {name: w2s, labels: '@weak', ...})")  # fmt: skip
    require_columns(runs, ["run_id", "model", "method", "seed", "params.labels",
                           "test_accuracy"], "weak-to-strong")  # fmt: skip
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    shown = shown_models(done, None)
    by_id = done.set_index("run_id")
    half = done.get("task.half", pd.Series(None, index=done.index))
    data = done.get("task.dataset", pd.Series("", index=done.index))
    gt = done[(done["method"] != "w2s") & half.notna()]
    ceiling = {(shown[i], r["seed"], half[i], data[i]): r["run_id"] for i, r in gt.iterrows()}
    students = done[(done["method"] == "w2s")]
    if "chain_step" in students:
        students = students[students["chain_step"] == students["chain_steps"]]
    rows = []
    for i, r in students.iterrows():
        weak_id, hops = str(r["params.labels"])[4:], 0
        while weak_id in by_id.index and by_id.at[weak_id, "method"] == "w2s" and hops < 50:
            weak_id, hops = str(by_id.at[weak_id, "params.labels"])[4:], hops + 1
        if weak_id not in by_id.index:
            continue  # the weak run is not finished (or not in this table)
        w = done.index[done["run_id"] == weak_id][0]
        rows.append({
            "method": _method(done).at[i], "seed": r["seed"],
            "weak": shown[w], "strong": shown[i],
            "weak_size": done.at[w, "non_embedding_params"] if "non_embedding_params" in done
            else np.nan,
            "strong_size": r.get("non_embedding_params", np.nan),
            "student_id": r["run_id"], "weak_id": weak_id,
            "ceiling_id": ceiling.get((shown[i], r["seed"], half[i], data[i])),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "seed", "weak", "strong", "weak_size",
                                       "strong_size", "student_id", "weak_id", "ceiling_id"])  # fmt: skip


@dataclass(frozen=True)
class PGRSummary:
    """per_seed: one row per (method, weak, strong, seed): the three accuracies and PGR;
    pairs: per (method, weak, strong): accuracies averaged over seeds and PGR of those
    means, `excluded` True where the strong ceiling does not beat the weak one;
    medians: per method: median PGR over its included pairs, the bootstrap interval,
    pairs counted; differences: per method other than `baseline`: median PGR minus the
    baseline's, with its paired interval; excluded: "weak -> strong (method)" lines."""

    per_seed: pd.DataFrame
    pairs: pd.DataFrame
    medians: pd.DataFrame
    differences: pd.DataFrame
    excluded: list[str] = field(default_factory=list)
    resampled: str = "seeds"
    baseline: str | None = None


def _accuracy_matrix(ids, correct, table_acc, pick):
    """Accuracies [draws] of each run id on the resampled test examples `pick` (rows of
    indices), or its stored accuracy repeated when no per-example results exist."""
    out = {}
    for run_id in ids:
        c = correct.get(run_id) if correct is not None else None
        out[run_id] = c[pick].mean(axis=1) if c is not None and pick is not None else (
            np.full(len(pick) if pick is not None else 1, table_acc[run_id]))  # fmt: skip
    return out


def _pair_table(cells: pd.DataFrame, acc: Mapping[str, np.ndarray], seeds_of_draw) -> dict:
    """(method, weak, strong) -> PGR per draw, from the seed means of the draws' seeds."""
    out = {}
    for key, sub in cells.groupby(["method", "weak", "strong"], sort=False):
        by_seed = {s: r for s, r in zip(sub["seed"], sub.itertuples(), strict=True)}
        vals = []
        for d, seeds in enumerate(seeds_of_draw):
            rows = [by_seed[s] for s in seeds if s in by_seed]
            if not rows:
                vals.append(np.nan)
                continue
            a = [np.mean([acc[getattr(r, c)][d % len(acc[getattr(r, c)])] for r in rows])
                 for c in ("student_id", "weak_id", "ceiling_id")]  # fmt: skip
            vals.append(float(pgr(*a)))
        out[key] = np.array(vals)
    return out


def summarize_pgr(
    runs: pd.DataFrame,
    correct: Mapping[str, np.ndarray] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    baseline: str | None = None,
) -> PGRSummary:
    """PGR per (method, weak, strong, seed), per pair (seed means) and its median per
    method with 95% percentile-bootstrap intervals.

    runs: a scalelab runs table; correct: run id -> bool [n_test] (test example correct),
    the same test examples in the same order for every run; without it (or for a run it
    lacks) only seeds are resampled. baseline: the method the others are compared with
    (default: `xent`/`naive` if present, else the first method). Raises ScalelabError when
    there are no students with both a weak run and a strong ceiling.
    """
    cells = roles(runs)
    missing = cells[cells["ceiling_id"].isna()]
    cells = cells[cells["ceiling_id"].notna()]
    if cells.empty:
        raise ScalelabError(
            "no weak-to-strong student with a finished weak run and a strong ceiling (a "
            "ground-truth run of the same model and seed on the student's half)"
        )
    acc_of = dict(zip(runs["run_id"], pd.to_numeric(runs["test_accuracy"]), strict=True))
    per_seed = cells.assign(
        acc_w2s=cells["student_id"].map(acc_of), acc_weak=cells["weak_id"].map(acc_of),
        acc_strong=cells["ceiling_id"].map(acc_of))  # fmt: skip
    per_seed["pgr"] = pgr(per_seed["acc_w2s"], per_seed["acc_weak"], per_seed["acc_strong"])
    keys = ["method", "weak", "strong"]
    pairs = per_seed.groupby(keys, sort=False, as_index=False).agg(
        weak_size=("weak_size", "first"), strong_size=("strong_size", "first"),
        acc_w2s=("acc_w2s", "mean"), acc_weak=("acc_weak", "mean"),
        acc_strong=("acc_strong", "mean"), seeds=("seed", "nunique"))  # fmt: skip
    pairs["pgr"] = pgr(pairs["acc_w2s"], pairs["acc_weak"], pairs["acc_strong"])
    pairs["excluded"] = ~(pairs["acc_strong"] > pairs["acc_weak"])
    excluded = [f"{r.weak} -> {r.strong} ({r.method}): strong ceiling {r.acc_strong:.4f} <= "
                f"weak ceiling {r.acc_weak:.4f}" for r in pairs[pairs["excluded"]].itertuples()]  # fmt: skip
    excluded += [f"{r.weak} -> {r.strong} ({r.method}, seed {r.seed}): no strong ceiling run"
                 for r in missing.itertuples()]  # fmt: skip
    draws, resampled = _draws(cells, correct, n_boot, seed)
    ids = set(cells["student_id"]) | set(cells["weak_id"]) | set(cells["ceiling_id"])
    acc = _accuracy_matrix(ids, correct, acc_of, draws["pick"])
    boot = _pair_table(cells, acc, draws["seeds"])
    med, diffs_df, baseline = _medians(pairs, boot, n_boot, baseline)
    return PGRSummary(per_seed.reset_index(drop=True), pairs, med, diffs_df, excluded,
                      resampled, baseline)  # fmt: skip


def _medians(pairs: pd.DataFrame, boot: dict, n_boot: int, baseline: str | None):
    """(medians per method, differences from the baseline, the baseline): point values from
    the included pairs, intervals from the bootstrap draws `boot` ((method, weak, strong)
    -> PGR per draw; the same draws for every method, so differences are paired)."""
    methods = list(dict.fromkeys(pairs["method"]))
    if baseline is None:
        baseline = next((m for m in ("naive", "xent") if m in methods), methods[0])
    medians, per_method = [], {}
    for m in methods:
        inc = pairs[(pairs["method"] == m) & ~pairs["excluded"]]
        reps = np.array([boot[(m, r.weak, r.strong)] for r in inc.itertuples()])
        with warnings.catch_warnings():  # a draw where every pair's gap closed: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_method[m] = np.nanmedian(reps, axis=0) if len(reps) else np.full(n_boot, np.nan)
        lo, hi = _interval(per_method[m])
        medians.append({"method": m, "median_pgr": float(np.median(inc["pgr"])) if len(inc)
                        else np.nan, "ci_low": lo, "ci_high": hi, "pairs": len(inc),
                        "excluded": int(((pairs["method"] == m) & pairs["excluded"]).sum())})  # fmt: skip
    med = pd.DataFrame(medians)
    diffs = []
    for m in methods:
        if m == baseline:
            continue
        d = per_method[m] - per_method[baseline]
        point = med.set_index("method")
        lo, hi = _interval(d)
        diffs.append({"method": m, "baseline": baseline, "difference":
                      point.at[m, "median_pgr"] - point.at[baseline, "median_pgr"],
                      "ci_low": lo, "ci_high": hi})  # fmt: skip
    diffs_df = pd.DataFrame(diffs, columns=["method", "baseline", "difference", "ci_low",
                                            "ci_high"])  # fmt: skip
    return med, diffs_df, baseline


def _interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles of the finite bootstrap values (NaN if none)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan"), float("nan")
    return float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))


def _draws(cells: pd.DataFrame, correct, n_boot: int, seed: int) -> tuple[dict, str]:
    """Bootstrap draws: per draw, the seeds (drawn with replacement from those the students
    have) and, when every run has per-example results of one length, the test examples."""
    rng = np.random.default_rng(seed)
    seeds = sorted(cells["seed"].unique())
    seed_draws = [list(rng.choice(seeds, size=len(seeds), replace=True)) for _ in range(n_boot)]
    ids = set(cells["student_id"]) | set(cells["weak_id"]) | set(cells["ceiling_id"])
    lengths = {len(correct[i]) for i in ids if correct is not None and i in correct}
    if correct is None or len(lengths) != 1 or any(i not in correct for i in ids):
        return {"seeds": seed_draws, "pick": None}, "seeds"
    n = lengths.pop()
    pick = rng.integers(0, n, size=(n_boot, n))
    return {"seeds": seed_draws, "pick": pick}, "seeds and test examples"


def accuracy_table(runs: pd.DataFrame, summary: PGRSummary) -> pd.DataFrame:
    """Every model's test accuracy per role, mean over seeds: one row per model (by size),
    columns `weak ceiling` (trained on half A), `strong ceiling` (half B) and one per
    method (the student's accuracy, the mean over its weak supervisors)."""
    ps = summary.per_seed
    rows: dict[str, dict] = {}
    for role, model_col, acc_col in (("weak ceiling", "weak", "acc_weak"),
                                     ("strong ceiling", "strong", "acc_strong")):  # fmt: skip
        for model, sub in ps.drop_duplicates([model_col, "seed"]).groupby(model_col):
            rows.setdefault(model, {})[role] = sub[acc_col].mean()
    for (method, model), sub in ps.groupby(["method", "strong"]):
        rows.setdefault(model, {})[method] = sub["acc_w2s"].mean()
    size = {**dict(zip(ps["weak"], ps["weak_size"], strict=True)),
            **dict(zip(ps["strong"], ps["strong_size"], strict=True))}  # fmt: skip
    out = pd.DataFrame([{"model": m, "size": size.get(m, np.nan), **v} for m, v in rows.items()])
    return out.sort_values("size", kind="stable").reset_index(drop=True)


def error_split(summary: PGRSummary, correct: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Do students copy their supervisor's mistakes? Per (method, weak, strong) and whether
    the weak model was right on a test example: the student's and the strong ceiling's
    error rates there (pooled over seeds, each seed's weak run against its own students),
    and the examples counted. Test examples stand in for the weak labels here: both come
    from the same weak model, and its test predictions are kept (`predictions.npz`).
    Pairs lacking per-example results are left out."""
    rows = []
    ps = summary.per_seed
    for (method, weak, strong), sub in ps.groupby(["method", "weak", "strong"], sort=False):
        ids = [(r.weak_id, r.student_id, r.ceiling_id) for r in sub.itertuples()]
        if not all(i in correct for t in ids for i in t):
            continue
        for weak_right in (False, True):
            n = err = err_c = 0
            for w, s, c in ids:
                mask = correct[w] == weak_right
                n += int(mask.sum())
                err += int((~correct[s][mask]).sum())
                err_c += int((~correct[c][mask]).sum())
            rows.append({"method": method, "weak": weak, "strong": strong,
                         "weak_right": weak_right, "n": n,
                         "student_error": err / n if n else np.nan,
                         "ceiling_error": err_c / n if n else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "weak", "strong", "weak_right", "n",
                                       "student_error", "ceiling_error"])  # fmt: skip
