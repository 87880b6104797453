"""The training engine vs the loops it replaced, side by side in one process.

(a) Pretraining: `scalelab.engine.loop.train(PretrainRecipe(ctx), ctx)` against the old
`pretrain_loop.run(ctx)` (benchmarks/baselines/pretrain_loop_v0.py, verbatim but for its
imports) on the same RunContext: ladder models gpt-d1/d2/d4, WikiText-2 with the byte
tokenizer, `--steps` steps of batch x seq_len, fp32, one validation pass (at the last
step), checkpoint_every_s large. (b) Fine-tuning: the engine's `full` recipe against the old
fine-tuning loop (baselines/finetune_loop_v0.py) on MiniLM-L6 and a TREC subsample.

Each round runs every (size, implementation) pair once, the two implementations of a setting
back to back in an order that alternates every round (the host is noisy). Throughput comes
from `ctx.report`, which both loops call once after every optimizer step, so it covers
everything a loop does per step (batch, schedule, forward/backward, clip, AdamW,
bookkeeping, logging) and neither setup nor the final evaluation. The headline figure is
the median step interval (work per step / median time between reports): on a shared host
the mean is dominated by stalls of hundreds of ms when other processes take the cores. The
ratio engine / old is the median of the per-round paired ratios, with their min-max; the
whole-loop ratio (mean over steps 2..N) is printed beside it, and so is the CPU-time ratio
(work per CPU-second of this process over steps 2..N): with `--threads 1` it hardly moves
when other processes take the cores, so on a shared host it is the figure to read. Also recorded: each run's own
`tokens_per_s` / `examples_per_s` metric and the whole call's wall time.

Bit-identity: the per-step losses (from the reports) and the final metrics of the two
implementations are compared exactly. Pretraining should match to the last bit (same
batches, schedule, fused AdamW, clipping). The old fine-tuning loop used multi-tensor
(`foreach`) AdamW where the engine uses the fused kernel, so there the losses agree only to
rounding; and the engine's `full` recipe now cuts each batch into length-sorted chunks
(less padding) under bf16 autocast, so its losses differ from the old loop's at bf16
rounding. The table reports the largest per-step loss difference and both accuracies.

    python benchmarks/engine_vs_loops.py            # 3 sizes x 300 steps, 5 rounds (~10 min)
    python benchmarks/engine_vs_loops.py --quick    # tiny settings (smoke test)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import finetune_loop_v0, pretrain_loop_v0  # noqa: E402

from scalelab.builtins import load_builtins  # noqa: E402
from scalelab.config import validate  # noqa: E402
from scalelab.engine.loop import train  # noqa: E402
from scalelab.io import atomic_write_json  # noqa: E402
from scalelab.methods.base import METHODS, RunContext  # noqa: E402
from scalelab.models.registry import resolve_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("engine", "old")


class Reports:
    """`ctx.report`: (perf_counter, process CPU time, loss) of every optimizer step."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.cpu: list[float] = []
        self.loss: list[float] = []

    def __call__(self, event: dict) -> None:
        if "loss" not in event:  # a warning or data preparation (tokenizing), not a step
            return
        self.t.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.loss.append(event["loss"])

    def cpu_per_s(self, work_per_step: float, threads: int) -> float:
        """Work per CPU-second over steps 2..N, per thread: under load from other processes
        the wall time of a step varies several-fold, the CPU time it consumes much less."""
        return work_per_step * (len(self.cpu) - 1) / ((self.cpu[-1] - self.cpu[0]) / threads)

    def per_s(self, work_per_step: float) -> float:
        """Work per second over steps 2..N (first report to last)."""
        return work_per_step * (len(self.t) - 1) / (self.t[-1] - self.t[0])

    def median_step_per_s(self, work_per_step: float) -> float:
        """Work per second of the median step interval (robust to bursts of host noise)."""
        return work_per_step / statistics.median(
            b - a for a, b in zip(self.t, self.t[1:], strict=False)
        )


def make_ctx(run_dir: Path, model: str, task, method: str, params: dict, seed: int,
             threads: int, report: Reports) -> RunContext:  # fmt: skip
    from scalelab.grid.spec import Runtime

    p = validate(METHODS.get(method).params, params)
    runtime = Runtime(threads=threads, checkpoint_every_s=1e9)
    return RunContext(run_id=f"{method}-{model}", model=resolve_model(model), task=task,
                      params=p, seed=seed, run_dir=run_dir, runtime=runtime, report=report)  # fmt: skip


def run_once(impl: str, kind: str, make) -> dict:
    """One run of `impl` ("engine" or "old"); `make(run_dir, report)` builds its context."""
    report = Reports()
    with tempfile.TemporaryDirectory(prefix=f"evl-{impl}-") as tmp:
        ctx = make(Path(tmp), report)
        t0 = time.perf_counter()
        if impl == "engine":
            recipe = METHODS.get(ctx_method(kind)).load()(ctx)
            result = train(recipe, ctx)
        else:
            result = (pretrain_loop_v0 if kind == "pretrain" else finetune_loop_v0).run(ctx)
        wall = time.perf_counter() - t0
    return {"impl": impl, "wall_s": wall, "metrics": result.metrics, "reports": report}


def ctx_method(kind: str) -> str:
    return "pretrain" if kind == "pretrain" else "full"


# --- (a) pretraining ------------------------------------------------------------------------


def pretrain_maker(args: argparse.Namespace, size: str):
    from scalelab.data.tasks import LMTask

    task = LMTask(dataset=args.dataset, tokenizer={"kind": "byte"}, seq_len=args.seq_len,
                  eval={"max_tokens": args.eval_tokens})  # fmt: skip
    params = {
        "tokens": args.steps * args.batch_size * args.seq_len,
        "batch_size": args.batch_size,
        "eval_every": args.steps,  # one validation pass, at the last step
        "eval_tokens": args.eval_tokens,
        "dtype": args.dtype,
    }
    return lambda run_dir, report: make_ctx(run_dir, size, task, "pretrain", params, 0,
                                            args.threads, report)  # fmt: skip


PRETRAIN_KEYS = ("train_loss", "val_loss", "test_loss")
FINETUNE_KEYS = ("test_accuracy", "val_accuracy", "test_loss", "val_loss")


def compare_runs(a: dict, b: dict, keys: tuple[str, ...]) -> dict:
    la, lb = a["reports"].loss, b["reports"].loss
    diffs = [abs(x - y) for x, y in zip(la, lb, strict=True)]
    return {
        "losses_identical": la == lb,
        "max_step_loss_diff": max(diffs),
        "metrics_identical": all(a["metrics"][k] == b["metrics"][k] for k in keys),
        "metrics": {k: {"engine": a["metrics"][k], "old": b["metrics"][k]} for k in keys},
    }


def measure(settings: dict[str, tuple], rounds: int, work_key: str, threads: int) -> dict:
    """Rounds of engine/old pairs per setting, order alternating per round."""
    out: dict[str, dict] = {}
    for r in range(rounds):
        for name, (kind, make, work, keys) in settings.items():
            row = out.setdefault(name, {"rounds": [], "identity": []})
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            runs = {impl: run_once(impl, kind, make) for impl in order}
            one: dict = {"order": list(order)}
            for impl, run in runs.items():
                rep = run["reports"]
                one[impl] = {
                    "step_per_s": rep.median_step_per_s(work),
                    "loop_per_s": rep.per_s(work),
                    "cpu_per_s": rep.cpu_per_s(work, threads),
                    "metric_per_s": run["metrics"][work_key],
                    "wall_s": run["wall_s"],
                }
            e, o = one["engine"], one["old"]
            one["ratio"] = e["step_per_s"] / o["step_per_s"]
            one["loop_ratio"] = e["loop_per_s"] / o["loop_per_s"]
            one["cpu_ratio"] = e["cpu_per_s"] / o["cpu_per_s"]
            row["rounds"].append(one)
            row["identity"].append(compare_runs(runs["engine"], runs["old"], keys))
            print(f"  round {r + 1}/{rounds} {name}: engine {e['step_per_s']:,.0f} "
                  f"old {o['step_per_s']:,.0f} {work_key.split('_')[0]}/s (median step), "
                  f"ratio {one['ratio']:.3f} (whole loop {one['loop_ratio']:.3f}, CPU time "
                  f"{one['cpu_ratio']:.3f}); "
                  f"losses identical: {row['identity'][-1]['losses_identical']}", flush=True)  # fmt: skip
    return out


def summarise(name: str, row: dict) -> dict:
    rounds = row["rounds"]
    ratios = [r["ratio"] for r in rounds]
    med = {impl: statistics.median(r[impl]["step_per_s"] for r in rounds) for impl in IMPLS}
    ident = row["identity"]
    return {
        "setting": name,
        "engine_per_s": med["engine"],
        "old_per_s": med["old"],
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "loop_ratio_median": statistics.median(r["loop_ratio"] for r in rounds),
        "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in rounds),
        "cpu_ratio_min": min(r["cpu_ratio"] for r in rounds),
        "cpu_ratio_max": max(r["cpu_ratio"] for r in rounds),
        "losses_identical": all(i["losses_identical"] for i in ident),
        "metrics_identical": all(i["metrics_identical"] for i in ident),
        "max_step_loss_diff": max(i["max_step_loss_diff"] for i in ident),
        "metrics": ident[-1]["metrics"],
    }


def print_table(lines: list[dict]) -> None:
    print(f"\n{'setting':<26} {'engine/s':>10} {'old/s':>10} {'ratio':>7} {'min-max':>12} "
          f"{'loop ratio':>10} {'CPU ratio':>10} {'min-max':>12} {'losses':>10} "
          f"{'metrics':>9}")  # fmt: skip
    for s in lines:
        same = "identical" if s["losses_identical"] else f"{s['max_step_loss_diff']:.1e}"
        print(f"{s['setting']:<26} {s['engine_per_s']:>10,.0f} {s['old_per_s']:>10,.0f} "
              f"{s['ratio_median']:>6.3f}x {s['ratio_min']:>5.3f}-{s['ratio_max']:<5.3f} "
              f"{s['loop_ratio_median']:>9.3f}x {s['cpu_ratio_median']:>9.3f}x "
              f"{s['cpu_ratio_min']:>5.3f}-{s['cpu_ratio_max']:<5.3f} {same:>10} "
              f"{'same' if s['metrics_identical'] else 'differ':>9}")  # fmt: skip
    for s in lines:
        print(f"  {s['setting']}: " + ", ".join(
            f"{k} {v['engine']:.6g} vs {v['old']:.6g}" for k, v in s["metrics"].items()))  # fmt: skip


# --- (b) fine-tuning ------------------------------------------------------------------------


def finetune_maker(args: argparse.Namespace):
    from scalelab.data.classification import ClassificationTask

    task = ClassificationTask(dataset=args.ft_dataset, max_length=args.ft_max_length,
                              train_size=args.ft_train_size,
                              val_size=args.ft_val_size or None)  # fmt: skip
    params = {"epochs": args.ft_epochs, "batch_size": args.ft_batch_size, "lr": 1e-4,
              "warmup_frac": 0.06, "weight_decay": 0.01, "dtype": args.ft_dtype}  # fmt: skip
    return lambda run_dir, report: make_ctx(run_dir, args.ft_model, task, "full", params, 0,
                                            args.threads, report)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="gpt-d1,gpt-d2,gpt-d4")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ft-model", default="minilm-l6")
    ap.add_argument("--ft-dataset", default="trec")
    ap.add_argument("--ft-train-size", type=int, default=640)
    ap.add_argument("--ft-val-size", type=int, default=128, help="0: the whole split")
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--ft-batch-size", type=int, default=32)
    ap.add_argument("--ft-max-length", type=int, default=32)
    ap.add_argument("--ft-dtype", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--skip-pretrain", action="store_true")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-warmup", action="store_true", help="no untimed first pair")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS / "engine_vs_loops.json")
    if ap.parse_args(argv).quick:  # tiny defaults; options given explicitly still win
        ap.set_defaults(sizes="gpt-d1", steps=20, rounds=2, eval_tokens=1024, ft_train_size=64,
                        ft_val_size=32, ft_epochs=1)  # fmt: skip
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_builtins()
    torch.set_num_threads(args.threads)
    t0, load_at_start = time.perf_counter(), os.getloadavg()
    settings: dict[str, tuple] = {}
    if not args.skip_pretrain:
        for size in args.sizes.split(","):
            settings[f"pretrain {size}"] = ("pretrain", pretrain_maker(args, size),
                                            args.batch_size * args.seq_len, PRETRAIN_KEYS)  # fmt: skip
    if not args.skip_finetune:
        settings[f"full {args.ft_model} {args.ft_dataset}"] = ("finetune", finetune_maker(args),
                                                  args.ft_batch_size, FINETUNE_KEYS)  # fmt: skip
    # Warm-up (untimed): token caches, model download, first-call costs of both loops.
    for _name, (kind, make, _, _) in settings.items():
        for impl in IMPLS * (not args.skip_warmup):
            run_once(impl, kind, make)
    rows: dict[str, dict] = {}
    pre = {k: v for k, v in settings.items() if v[0] == "pretrain"}
    fine = {k: v for k, v in settings.items() if v[0] == "finetune"}
    if pre:
        rows.update(measure(pre, args.rounds, "tokens_per_s", args.threads))
    if fine:
        rows.update(measure(fine, args.rounds, "examples_per_s", args.threads))
    lines = [summarise(name, row) for name, row in rows.items()]
    print_table(lines)
    for row in rows.values():
        for ident in row["identity"]:
            ident.pop("metrics", None)
    report = {
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": args.threads, "load_average_at_start": load_at_start,
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": lines,
        "rounds": rows,
        "wall_s": time.perf_counter() - t0,
        "load_average_at_end": os.getloadavg(),
    }  # fmt: skip
    atomic_write_json(args.out, report)
    print(f"\nwall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
