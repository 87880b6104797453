"""Executor overhead: what `scalelab run` costs per run on serial / processes / Ray, against
a plain Python loop over the same 12 runs (what a user would write instead).

The grid: 2 ladder models (gpt-d1, gpt-20k) x 2 learning rates x 3 seeds = 12 pretraining
runs of a few hundred steps on a small generated corpus (byte tokenizer, seq 32), 1 thread
per run. Every side runs in a fresh Python process (imports included), in a fresh output
folder, so each pays the same start-up:

| side | what |
|---|---|
| `loop` | `for run in runs: run_method(METHODS.get(run.method), RunContext(...))`: no store, no claims, no run folders' provenance, no progress |
| `serial` | `scalelab run --executor serial`: the driver trains each run itself |
| `processes` | `scalelab run --executor processes --workers W`: a pool of spawned workers |
| `ray` | `scalelab run --executor ray --workers W`: a fresh local Ray cluster (`ray.init`) per call |

Overhead per run = (side's wall - loop's wall) / runs, for the sides with one worker; for
2 workers the table gives the speed-up over the loop instead (2 cores: at most ~2x).
Rounds alternate the order of the sides (the host is noisy); figures are medians over rounds.

    python benchmarks/executor_overhead.py            # 3 rounds, ~6 min on 2 cores
    python benchmarks/executor_overhead.py --quick    # 1 round, tiny runs (smoke test)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scalelab.io import atomic_write_json
from scalelab.testing import make_corpus

RESULTS = Path(__file__).resolve().parent / "results"

# The loop side: the same runs, trained one after another through the engine, nothing else.
LOOP = """
import sys
from pathlib import Path
from scalelab.builtins import load_builtins
from scalelab.grid.api import open_experiment
from scalelab.methods.base import METHODS, RunContext, run_method

load_builtins()
exp = open_experiment(sys.argv[1], sys.argv[2])
for run in exp.runs:
    run_dir = Path(sys.argv[2]) / run.run_id
    run_dir.mkdir(parents=True)
    ctx = RunContext(run_id=run.run_id, model=run.model, task=run.task, params=run.params,
                     seed=run.seed, run_dir=run_dir, runtime=exp.spec.runtime,
                     report=lambda e: None, config=run.config, inputs=run.inputs)
    run_method(METHODS.get(run.method), ctx)
"""


def write_spec(path: Path, corpus: Path, steps: int, seeds: list[int]) -> Path:
    spec = {
        "name": "executor_overhead",
        "models": ["gpt-d1", "gpt-20k"],
        "tasks": {
            "dataset": str(corpus),
            "kind": "lm",
            "seq_len": 32,
            "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 2000},
        },
        "methods": "pretrain",
        "params": {"tokens": 8 * 32 * steps, "batch_size": 8, "lr": [1e-3, 3e-3]},
        "seeds": seeds,
        "runtime": {"threads": 1},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def side_command(side: str, workers: int, spec: Path, out: Path) -> list[str]:
    if side == "loop":
        return [sys.executable, "-c", LOOP, str(spec), str(out)]
    scalelab = str(Path(sys.executable).with_name("scalelab"))
    return [scalelab, "run", str(spec), "--quiet", "--output-dir", str(out),
            "--executor", side, "--workers", str(workers)]  # fmt: skip


def run_side(side: str, workers: int, spec: Path, root: Path) -> dict:
    out = root / f"{side}-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "RAY_DISABLE_IMPORT_WARNING": "1"}
    env.pop("RAY_ADDRESS", None)  # each Ray call starts (and stops) its own local cluster
    t0 = time.perf_counter()
    proc = subprocess.run(side_command(side, workers, spec, out), env=env, capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{side} (workers {workers}) failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "runs": sum(1 for p in out.rglob("config.json"))}


def measure(sides: list[tuple[str, int]], spec: Path, root: Path, rounds: int) -> dict:
    walls: dict[str, list[float]] = {f"{s} w{w}": [] for s, w in sides}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side, workers in order:
            res = run_side(side, workers, spec, root)
            walls[f"{side} w{workers}"].append(res["wall_s"])
            print(f"  round {r + 1}/{rounds} {side:<9} workers {workers}: "
                  f"{res['wall_s']:6.1f} s", flush=True)  # fmt: skip
    return walls


def summarise(walls: dict[str, list[float]], n_runs: int) -> list[dict]:
    loop = statistics.median(walls["loop w1"])
    rows = []
    for name, values in walls.items():
        med = statistics.median(values)
        workers = int(name.rsplit("w", 1)[1])
        rows.append({
            "side": name,
            "wall_s_median": med,
            "wall_s_min": min(values),
            "wall_s_max": max(values),
            "overhead_per_run_s": (med - loop) / n_runs if workers == 1 else None,
            "speedup_vs_loop": loop / med,
        })  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'side':<14} {'wall s':>8} {'min-max':>13} {'overhead/run':>13} {'vs loop':>8}")
    for r in rows:
        over = "" if r["overhead_per_run_s"] is None else f"{r['overhead_per_run_s']:+.2f} s"
        print(f"{r['side']:<14} {r['wall_s_median']:>8.1f} "
              f"{r['wall_s_min']:>6.1f}-{r['wall_s_max']:<6.1f} {over:>13} "
              f"{r['speedup_vs_loop']:>7.2f}x")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    ap.add_argument("--sides", default="loop,serial,processes,ray")
    ap.add_argument("--seeds", default="0,1,2", help="4 runs per seed (12 by default)")
    ap.add_argument("--parallel-workers", type=int, default=2, help="0: one worker only")
    ap.add_argument("--quick", action="store_true", help="1 round, 20 steps: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS / "executor_overhead.json")
    if ap.parse_args(argv).quick:  # tiny defaults; options given explicitly still win
        ap.set_defaults(rounds=1, steps=20)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = [s for s in args.sides.split(",") if s]
    if "loop" not in names:
        names.insert(0, "loop")
    sides = [(s, 1) for s in names]
    if args.parallel_workers > 1:
        sides += [(s, args.parallel_workers) for s in names if s in ("processes", "ray")]
    seeds = [int(x) for x in args.seeds.split(",")]
    n_runs = 4 * len(seeds)
    with tempfile.TemporaryDirectory(prefix="scalelab-exec-bench-") as tmp:
        root = Path(tmp)
        spec = write_spec(root / "spec.yaml", make_corpus(root / "corpus"), args.steps, seeds)
        print(f"{n_runs} runs x {args.steps} steps; sides: "
              + ", ".join(f"{s} w{w}" for s, w in sides))  # fmt: skip
        walls = measure(sides, spec, root, args.rounds)
    rows = summarise(walls, n_runs)
    print_table(rows)
    atomic_write_json(args.out, {
        "settings": {**vars(args), "out": str(args.out), "runs": n_runs},
        "walls": walls, "summary": rows, "cpu_count": os.cpu_count(),
    })  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
