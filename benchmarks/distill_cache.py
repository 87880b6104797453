"""Distillation with cached vs live teacher outputs, and what top-k costs in quality.

A teacher (a ladder model, `--teacher`) is pretrained once on WikiText-2 bytes; then a
student (`--student`) trains with `distill` on it through the training engine, as
`scalelab run` would:

* speed: the same student run with the teacher live (`cache_teacher_outputs: false`) and
  with its outputs read from the cache (filled by an untimed first run), in alternating
  rounds; the engine's `tokens_per_s` (training steps only). Both sides compute the same
  thing (the cache is exact), so the ratio is what caching saves per student.
* quality: one student per `--top-k` value (and the full distribution), same seed and
  batches; final validation loss, beside plain pretraining (alpha 0).

    python benchmarks/distill_cache.py                 # gpt-d4 -> gpt-d2, 3 rounds
    python benchmarks/distill_cache.py --quick         # tiny smoke settings
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from scalelab.config import validate
from scalelab.data.tasks import LMTask
from scalelab.engine.loop import train
from scalelab.grid.spec import Runtime
from scalelab.io import atomic_write_json
from scalelab.methods.base import METHODS, RunContext
from scalelab.models.registry import ModelRef, resolve_model

RESULTS = Path(__file__).resolve().parent / "results"


def context(args, root: Path, name: str, model: str, method: str, params: dict, inputs=None):
    from scalelab.builtins import load_builtins

    load_builtins()
    task = LMTask(dataset=args.dataset, seq_len=args.seq_len, tokenizer={"kind": "byte"},
                  eval={"max_tokens": args.eval_tokens})  # fmt: skip
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    ref = model if isinstance(model, ModelRef) else resolve_model(model)
    return RunContext(run_id=name, model=ref, task=task, params=validate(
        METHODS.get(method).params, params), seed=0, run_dir=run_dir,
        runtime=Runtime(threads=args.threads), inputs=inputs or {})  # fmt: skip


def student(args, root: Path, name: str, teacher: ModelRef, **kd) -> dict:
    from scalelab.methods.distill import DistillRecipe

    params = {"tokens": args.student_tokens, "batch_size": args.batch_size, "lr": 3e-3,
              "teachers": [f"run:{teacher.run_id}"], **kd}  # fmt: skip
    ctx = context(args, root, name, args.student, "distill", params, {"teachers": (teacher,)})
    return train(DistillRecipe(ctx), ctx).metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="gpt-d4")
    ap.add_argument("--student", default="gpt-d2")
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--teacher-tokens", type=int, default=1_000_000)
    ap.add_argument("--student-tokens", type=int, default=300_000)
    ap.add_argument("--eval-tokens", type=int, default=65536)
    ap.add_argument("--top-k", default="16,64", help="comma-separated k values")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS / "distill_cache.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.teacher, args.student, args.seq_len, args.batch_size = "gpt-d2", "gpt-d1", 32, 8
        args.teacher_tokens, args.student_tokens, args.eval_tokens = 8 * 32 * 20, 8 * 32 * 6, 512
        args.top_k, args.rounds = "4", 1
    t0, load = time.perf_counter(), os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="distill-cache-"))
    os.environ.setdefault("SCALELAB_HOME", str(root / "home"))
    from scalelab.methods.pretrain import PretrainRecipe

    tctx = context(args, root, "teacher", args.teacher, "pretrain",
                   {"tokens": args.teacher_tokens, "batch_size": args.batch_size, "lr": 3e-3})  # fmt: skip
    teacher_metrics = train(PretrainRecipe(tctx), tctx).metrics
    teacher = ModelRef.for_run("teacher", root / "runs", f"{args.teacher} (teacher)")
    student(args, root, "warm", teacher, alpha=0.5)  # fills the cache (untimed)
    speed: dict[str, list[float]] = {"live": [], "cached": []}
    for r in range(args.rounds):
        for side in ("live", "cached") if r % 2 == 0 else ("cached", "live"):
            m = student(args, root, f"{side}-{r}", teacher, alpha=0.5,
                        cache_teacher_outputs=side == "cached")  # fmt: skip
            assert m["teacher_batches_cached" if side == "cached" else "teacher_batches_computed"]
            speed[side].append(m["tokens_per_s"])
            print(f"  round {r + 1}: {side}: {m['tokens_per_s']:,.0f} tokens/s", flush=True)
    ratios = [c / v for c, v in zip(speed["cached"], speed["live"], strict=True)]
    quality = {"plain (alpha 0)": student(args, root, "plain", teacher, alpha=0.0)["val_loss"],
               "full distribution": student(args, root, "full", teacher, alpha=0.5)["val_loss"]}  # fmt: skip
    for k in (int(v) for v in args.top_k.split(",") if v):
        quality[f"top-{k}"] = student(args, root, f"top{k}", teacher, alpha=0.5, top_k=k)[
            "val_loss"]  # fmt: skip
    print(f"\nteacher {args.teacher}: val_loss {teacher_metrics['val_loss']:.4f}")
    print(f"{'side':<10} {'tokens/s':>10}\n{'live':<10} {statistics.median(speed['live']):>10,.0f}"
          f"\n{'cached':<10} {statistics.median(speed['cached']):>10,.0f}")  # fmt: skip
    print(f"cached / live: {statistics.median(ratios):.2f}x (rounds "
          f"{', '.join(f'{x:.2f}' for x in ratios)})\n")  # fmt: skip
    print(f"{'student target':<20} {'val_loss':>9}")
    for name, v in quality.items():
        print(f"{name:<20} {v:>9.4f}")
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "load_average_at_start": load, "teacher_val_loss": teacher_metrics["val_loss"],
              "tokens_per_s": speed, "ratio_cached_over_live": statistics.median(ratios),
              "ratio_rounds": ratios, "val_loss_by_target": quality,
              "wall_s": time.perf_counter() - t0}  # fmt: skip
    atomic_write_json(args.out, report)
    print(f"wall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
