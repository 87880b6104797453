"""What monitoring (engine/monitor.py) costs a training step, at three ladder sizes.

Pretraining gpt-d1/d4/d8 (by default) on the test corpus (`scalelab.testing.make_corpus`)
with the byte tokenizer, seq 128, fp32 on the CPU, `--steps` steps of batch `--batch-size`,
in three modes run back to back in an order that alternates every round (the host is
noisy): monitoring off (`monitor_every: 0`), a point after every step (`monitor_every: 1`,
the worst case) and the default cadence (`monitor_every` unset: max(MIN_EVERY,
steps // MONITOR_POINTS)).

Two figures per size:
- the cost of one monitor point, timed inside the loop (`Monitor.grad_norms` + `point`,
  wrapped here), divided by the median step time with monitoring off: the overhead of
  monitoring every step; divided by the default cadence, the default's overhead. This one
  is precise: it times only the monitor's own work;
- end to end, the median step interval of each mode / that of "off" (per-round paired
  ratios, median and min-max): noisy on a shared host, it checks nothing else slows down.

    python benchmarks/monitor_overhead.py            # 3 sizes x 3 modes x 30 steps x 3 rounds
    python benchmarks/monitor_overhead.py --quick    # tiny settings (smoke test)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scalelab.builtins import load_builtins
from scalelab.config import validate
from scalelab.engine import monitor as mon
from scalelab.engine.loop import train
from scalelab.io import atomic_write_json
from scalelab.methods.base import METHODS, RunContext
from scalelab.models.registry import resolve_model

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"off": 0, "every step": 1, "default": None}


class Timed:
    """Wraps Monitor.grad_norms and Monitor.point to sum the seconds they take."""

    def __init__(self) -> None:
        self.seconds, self.points = 0.0, 0
        self._orig = (mon.Monitor.grad_norms, mon.Monitor.point)

    def __enter__(self) -> Timed:
        grad_norms, point = self._orig

        def timed_grads(m):
            t0 = time.perf_counter()
            try:
                return grad_norms(m)
            finally:
                self.seconds += time.perf_counter() - t0

        def timed_point(m, *a, **k):
            t0 = time.perf_counter()
            try:
                return point(m, *a, **k)
            finally:
                self.seconds += time.perf_counter() - t0
                self.points += 1

        mon.Monitor.grad_norms, mon.Monitor.point = timed_grads, timed_point
        return self

    def __exit__(self, *exc) -> None:
        mon.Monitor.grad_norms, mon.Monitor.point = self._orig


def run_once(args: argparse.Namespace, corpus: Path, size: str, every: int | None) -> dict:
    """One pretraining run; its step intervals (from ctx.report) and monitor time."""
    from scalelab.data.tasks import LMTask
    from scalelab.grid.spec import Runtime

    task = LMTask(dataset=str(corpus), tokenizer={"kind": "byte"}, seq_len=args.seq_len,
                  eval={"max_tokens": 2048})  # fmt: skip
    params = validate(METHODS.get("pretrain").params, {
        "tokens": args.steps * args.batch_size * args.seq_len, "batch_size": args.batch_size,
        "eval_every": args.steps, "eval_tokens": 2048})  # fmt: skip
    stamps: list[float] = []
    report = lambda e: stamps.append(time.perf_counter()) if "loss" in e else None  # noqa: E731
    runtime = Runtime(threads=args.threads, checkpoint_every_s=1e9, monitor_every=every)
    with tempfile.TemporaryDirectory(prefix="monbench-") as tmp, Timed() as timed:
        ctx = RunContext(run_id="bench", model=resolve_model(size), task=task, params=params,
                         seed=0, run_dir=Path(tmp), runtime=runtime, report=report)  # fmt: skip
        train(METHODS.get("pretrain").load()(ctx), ctx)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"median_step_s": statistics.median(gaps), "monitor_s": timed.seconds,
            "points": timed.points}  # fmt: skip


def measure(args: argparse.Namespace, corpus: Path, size: str) -> dict:
    """Every mode `args.rounds` times, alternating the order; the summary row of `size`."""
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            runs[mode].append(run_once(args, corpus, size, MODES[mode]))
    step_s = statistics.median(x["median_step_s"] for x in runs["off"])
    every_step = runs["every step"]
    point_s = sum(x["monitor_s"] for x in every_step) / sum(x["points"] for x in every_step)
    default_every = mon.resolve_every(None, args.steps)
    paired = {m: [x["median_step_s"] / o["median_step_s"]
                  for x, o in zip(runs[m], runs["off"], strict=True)]
              for m in ("every step", "default")}  # fmt: skip
    return {
        "size": size, "step_ms_off": 1e3 * step_s, "point_ms": 1e3 * point_s,
        "overhead_every_step": point_s / step_s, "default_every": default_every,
        "overhead_default": point_s / (default_every * step_s),
        "e2e_ratio": {m: [statistics.median(v), min(v), max(v)] for m, v in paired.items()},
        "runs": runs,
    }  # fmt: skip


def print_table(rows: list[dict]) -> None:
    print(f"{'size':<8}{'step ms':>9}{'point ms':>10}{'every step':>12}{'default':>16}"
          f"{'e2e every step':>22}{'e2e default':>22}")  # fmt: skip
    for r in rows:
        e, d = r["e2e_ratio"]["every step"], r["e2e_ratio"]["default"]
        print(f"{r['size']:<8}{r['step_ms_off']:>9.1f}{r['point_ms']:>10.2f}"
              f"{r['overhead_every_step']:>11.2%} {r['overhead_default']:>8.3%} (1/{r['default_every']})"
              f"{e[0]:>8.3f} [{e[1]:.3f}-{e[2]:.3f}]{d[0]:>8.3f} [{d[1]:.3f}-{d[2]:.3f}]")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="gpt-d1,gpt-d4,gpt-d8")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "monitor_overhead.json")
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.batch_size, args.seq_len, args.rounds = "gpt-d1", 4, 2, 16, 1
    return args


def main(argv: list[str] | None = None) -> None:
    from scalelab.testing import make_corpus

    args = parse_args(argv)
    load_builtins()
    torch.set_num_threads(args.threads)
    t0, load_at_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="monbench-data-") as tmp:
        corpus = make_corpus(Path(tmp) / "corpus")
        run_once(args, corpus, args.sizes.split(",")[0], 1)  # warm-up: token cache, first calls
        rows = [measure(args, corpus, size) for size in args.sizes.split(",")]
    print_table(rows)
    report = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": args.threads, "load_average_at_start": load_at_start,
                        "device": "cpu"},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows, "wall_s": time.perf_counter() - t0, "load_average_at_end": os.getloadavg(),
    }  # fmt: skip
    atomic_write_json(args.out, report)
    print(f"\nwall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
