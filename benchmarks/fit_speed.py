"""Chinchilla Approach 3: straightforward fit vs scalelab's fast fitter, side by side.

Baseline (Besiroglu et al. 2024): scipy L-BFGS-B with finite-difference gradients from each
of the 4,500 grid starts, objective written with scipy.special.huber and logsumexp. Fast:
`scalelab.analysis.fitting.fit_chinchilla` (all starts scored in one vectorised pass, best 20
refined with analytic gradients). Both run with OpenBLAS limited to one thread, so the ratio
measures the algorithms, not thread-pool overhead.

    python benchmarks/fit_speed.py [--baseline-starts N] [--bootstrap 1000]

With --baseline-starts N < 4500 the baseline runs on N evenly spaced grid starts and its time
is extrapolated linearly to 4,500 (the output says so).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp
from threadpoolctl import threadpool_limits

from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.chinchilla_fast import default_grid
from scalelab.analysis.fitting import fit_chinchilla
from scalelab.analysis.table import read_csv
from scalelab.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "analysis" / "data" / "chinchilla_svg_extracted_data.csv"
NAMES = ("E", "A", "alpha", "B", "beta")


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N, D = C / 6N, loss, after dropping the 5 highest-loss rows."""
    df = read_csv(path).sort_values("loss").iloc[:-5]
    n = df["Model Size"].to_numpy(float)
    return n, df["Training FLOP"].to_numpy(float) / (6 * n), df["loss"].to_numpy(float)


def baseline(n: np.ndarray, d: np.ndarray, loss: np.ndarray, n_starts: int) -> tuple[dict, float]:
    """Straightforward Approach 3 from `n_starts` evenly spaced grid starts; (params, seconds)."""
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)

    def objective(th: np.ndarray) -> float:
        a, b, e, alpha, beta = th
        pred = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
        return float(np.sum(huber(1e-3, pred - log_l)))

    grid = default_grid()
    starts = grid[np.linspace(0, len(grid) - 1, n_starts).round().astype(int)]
    t0 = time.perf_counter()
    best = min((minimize(objective, s, method="L-BFGS-B") for s in starts), key=lambda r: r.fun)
    secs = time.perf_counter() - t0
    a, b, e, alpha, beta = best.x
    return {"E": np.exp(e), "A": np.exp(a), "alpha": alpha, "B": np.exp(b), "beta": beta}, secs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-starts", type=int, default=4500)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fit_speed.json")
    args = ap.parse_args(argv)
    n, d, loss = load(args.data)

    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        fast = fit_chinchilla(n, d, loss).params
        fast_s = time.perf_counter() - t0
        base, base_s = baseline(n, d, loss, args.baseline_starts)
    base_full_s = base_s * 4500 / args.baseline_starts
    extrapolated = args.baseline_starts < 4500

    df = read_csv(args.data)
    spec = FitSpec(
        "chinchilla",
        "Model Size",
        "loss",
        x2="Training FLOP",
        x2_is_compute=True,
        drop_top_loss=5,
        bootstrap=args.bootstrap,
        seed=0,
    )
    t0 = time.perf_counter()
    boot_fit = fit_table(df, spec).groups[0]
    boot_s = time.perf_counter() - t0

    rel = {k: (fast[k] - base[k]) / base[k] for k in NAMES}
    print(f"Chinchilla Approach 3 on {args.data.name} (240 points after dropping 5)")
    print(f"{'param':<7}{'fast':>14}{'baseline':>14}{'rel diff':>12}")
    for k in NAMES:
        print(f"{k:<7}{fast[k]:>14.6g}{base[k]:>14.6g}{rel[k]:>12.2e}")
    note = (
        f" (measured on {args.baseline_starts} of 4500 starts: {base_s:.1f} s, "
        "extrapolated linearly)"
        if extrapolated
        else ""
    )
    print(f"fast fit (4500 starts scored, 20 refined): {fast_s:8.2f} s")
    print(f"baseline, 4500 starts, numerical grads:    {base_full_s:8.1f} s{note}")
    print(f"speed-up: {base_full_s / fast_s:.0f}x")
    print(
        f"fit + {args.bootstrap} bootstrap refits (fast, warm-started): {boot_s:.1f} s "
        f"({boot_fit.boot.n_failed} failed)"
    )
    atomic_write_json(
        args.out,
        {
            "fast_s": fast_s,
            "baseline_measured_s": base_s,
            "baseline_starts": args.baseline_starts,
            "baseline_4500_s": base_full_s,
            "baseline_extrapolated": extrapolated,
            "speedup": base_full_s / fast_s,
            "fast_params": fast,
            "baseline_params": base,
            "rel_diff": rel,
            "bootstrap_n": args.bootstrap,
            "bootstrap_s": boot_s,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
