"""Does bf16 autocast train as well as fp32? Same runs, both dtypes, several seeds.

Runs scalelab's pretraining method through the training engine
(`scalelab.engine.loop.train(PretrainRecipe(ctx), ctx)`, what `scalelab run` does) on
WikiText-2 with a trained 512-token BPE, once per (dtype, seed). A seed fixes the initial weights and the
batches, so seed s in fp32 and in bf16 differ only by the dtype. The report compares the
final validation loss: the mean bf16 - fp32 difference against the seed-to-seed standard
deviation, and the per-seed paired differences.

    python benchmarks/bf16_loss_check.py            # gpt-d2, 300 steps, seeds 0-2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from scalelab.data.tasks import LMTask
from scalelab.engine.loop import train
from scalelab.grid.spec import Runtime
from scalelab.methods.base import RunContext
from scalelab.methods.pretrain import PretrainParams, PretrainRecipe
from scalelab.models.registry import resolve_model

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = ("fp32", "bf16")


def train_once(args: argparse.Namespace, dtype: str, seed: int) -> dict:
    """One pretraining run; its final metrics and validation curve."""
    task = LMTask(
        dataset=args.dataset,
        tokenizer={"kind": "bpe", "vocab_size": args.vocab_size},
        seq_len=args.seq_len,
        eval={"max_tokens": args.eval_tokens},
    )
    params = PretrainParams(
        tokens=args.steps * args.batch_size * args.seq_len,
        batch_size=args.batch_size,
        dtype=dtype,
        eval_every=max(1, args.steps // 6),
        eval_tokens=args.eval_tokens,
    )
    runtime = Runtime(threads=args.threads, checkpoint_every_s=1e9)
    with tempfile.TemporaryDirectory(prefix="bf16-check-") as tmp:
        ctx = RunContext(
            run_id=f"{dtype}-{seed}", model=resolve_model(args.model), task=task, params=params,
            seed=seed, run_dir=Path(tmp), runtime=runtime,
        )  # fmt: skip
        result = train(PretrainRecipe(ctx), ctx)
    m = result.metrics
    keep = ("val_loss", "test_loss", "train_loss", "tokens_per_s", "non_embedding_params")
    return {"dtype": dtype, "seed": seed, **{k: m[k] for k in keep}, "curve": result.curve}


def compare(runs: list[dict], seeds: list[int]) -> dict:
    """Mean bf16 - fp32 final val loss vs the seed std (sample std, pooled over dtypes)."""
    val = {d: [r["val_loss"] for r in runs if r["dtype"] == d] for d in DTYPES}
    by_seed = {(r["dtype"], r["seed"]): r["val_loss"] for r in runs}
    paired = [by_seed["bf16", s] - by_seed["fp32", s] for s in seeds]
    std = {d: statistics.stdev(v) if len(v) > 1 else float("nan") for d, v in val.items()}
    pooled = (sum(s**2 for s in std.values()) / len(std)) ** 0.5
    diff = statistics.mean(val["bf16"]) - statistics.mean(val["fp32"])
    return {
        "mean_val_loss": {d: statistics.mean(v) for d, v in val.items()},
        "seed_std": std,
        "pooled_seed_std": pooled,
        "mean_diff_bf16_minus_fp32": diff,
        "diff_over_seed_std": diff / pooled if pooled else float("nan"),
        "paired_diffs": paired,
        "within_seed_noise": abs(diff) <= pooled,
    }


def print_report(runs: list[dict], summary: dict) -> None:
    print(f"\n{'dtype':<6} {'seed':>4} {'val loss':>9} {'test loss':>10} {'tokens/s':>10}")
    for r in runs:
        print(f"{r['dtype']:<6} {r['seed']:>4} {r['val_loss']:>9.4f} {r['test_loss']:>10.4f} "
              f"{r['tokens_per_s']:>10,.0f}")  # fmt: skip
    mean, std = summary["mean_val_loss"], summary["seed_std"]
    for d in DTYPES:
        print(f"{d}: val loss {mean[d]:.4f} +- {std[d]:.4f} (mean +- seed std)")
    print(f"bf16 - fp32: {summary['mean_diff_bf16_minus_fp32']:+.4f} "
          f"= {summary['diff_over_seed_std']:+.2f} pooled seed std "
          f"({summary['pooled_seed_std']:.4f}); paired per seed: "
          + ", ".join(f"{d:+.4f}" for d in summary["paired_diffs"]))  # fmt: skip
    print("within seed noise" if summary["within_seed_noise"] else "OUTSIDE seed noise")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt-d2")
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-tokens", type=int, default=32768)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20 steps, seeds 0-1: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS / "bf16_loss_check.json")
    if ap.parse_args(argv).quick:  # tiny defaults; options given explicitly still win
        ap.set_defaults(steps=20, seeds="0,1", eval_tokens=2048)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        for dtype in DTYPES:
            runs.append(train_once(args, dtype, seed))
            r = runs[-1]
            print(f"{args.model} {dtype} seed {seed}: val loss {r['val_loss']:.4f}", flush=True)
    summary = compare(runs, seeds)
    print_report(runs, summary)
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summary,
        "runs": runs,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
