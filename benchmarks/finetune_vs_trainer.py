"""Fine-tuning speed: scalelab's `full` method (through the engine) vs `transformers.Trainer`.

Both sides fine-tune the same model with the same initial weights (MiniLM-L6, the new
classifier head initialised under `torch.manual_seed(seed)`), on the same token ids (the
recipe's `encode`), in the same batches: the Trainer gets a sampler that yields, epoch by
epoch, the recipe's own example order (a permutation seeded by (seed, epoch)), and pads
each batch to its longest example (`DataCollatorWithPadding`), as the recipe does. Same
settings on both: 3 epochs, batch 32, AdamW (fused) lr 1e-4, weight decay 0.01 on matrices,
linear warmup over 6% of the steps then linear decay, gradient clipping at 1.0, bf16
autocast, 2 threads. Dropout masks differ (the Trainer seeds once, scalelab per step).

Evaluation passes are left out of the timing on both sides: the Trainer runs with
evaluation disabled; scalelab validates at every epoch end (to keep the best weights), and
the time spent in those passes is measured (by wrapping the recipe's `evaluate`) and
subtracted. Training time = from the start of training (the Trainer's `on_train_begin`;
the recipe's first `batch()` call) to the end of the last optimizer step. Both models are
then scored on the test split with the same function (`scalelab.eval.classification
.predict`); scalelab's weights are those of its best validation epoch, the Trainer's the
final ones. Also reported: end-to-end seconds (model loading, tokenising, training, all
evaluation, saving) and the median step time.

Rounds alternate the order of the two sides (the host is noisy); the ratio is the median
of per-round scalelab/Trainer examples/s ratios.

    python benchmarks/finetune_vs_trainer.py              # 2 rounds, ~6 min on a quiet host
    python benchmarks/finetune_vs_trainer.py --quick      # 320 examples, 1 epoch
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
from scalelab.engine.loop import train
from scalelab.io import atomic_write_json
from scalelab.methods.base import METHODS, RunContext
from scalelab.models.registry import resolve_model

RESULTS = Path(__file__).resolve().parent / "results"
SIDES = ("scalelab", "trainer")


def make_ctx(args: argparse.Namespace, run_dir: Path, report) -> RunContext:
    from scalelab.data.classification import ClassificationTask
    from scalelab.grid.spec import Runtime

    task = ClassificationTask(dataset=args.dataset, max_length=args.max_length,
                              train_size=args.train_size)  # fmt: skip
    params = validate(METHODS.get("full").params, {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "warmup_frac": args.warmup, "weight_decay": args.weight_decay, "grad_clip": 1.0,
        "dtype": args.dtype, "packing": args.packing,
    })  # fmt: skip
    runtime = Runtime(threads=args.threads, checkpoint_every_s=1e9, compile=args.compile)
    return RunContext(run_id="bench", model=resolve_model(args.model), task=task,
                      params=params, seed=args.seed, run_dir=run_dir, runtime=runtime,
                      report=report)  # fmt: skip


def now() -> tuple[float, float]:
    """(wall, process CPU) seconds. Under load from other processes the wall time of a step
    varies several-fold; the CPU time it consumed varies much less."""
    return time.perf_counter(), time.process_time()


class Clock:
    """now() at training start, at the end of every optimizer step, around evaluations."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.steps: list[tuple[float, float]] = []
        self.evals: list[tuple[tuple[float, float], tuple[float, float]]] = []

    def mark_start(self) -> None:
        if self.start is None:
            self.start = now()

    def mark_step(self, *_a, **_k) -> None:
        self.steps.append(now())

    def train_s(self, i: int = 0) -> float:
        """Start to the end of the last step, less the evaluation passes in between
        (i = 0: wall seconds, 1: CPU seconds)."""
        end = self.steps[-1]
        inside = sum(b[i] - a[i] for a, b in self.evals if a[0] < end[0])
        return end[i] - self.start[i] - inside

    def median_step_s(self) -> float:
        return statistics.median(
            b[0] - a[0] for a, b in zip(self.steps, self.steps[1:], strict=False)
        )


def run_scalelab(args: argparse.Namespace) -> dict:
    from scalelab.methods.finetune import FinetuneRecipe

    clock = Clock()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        ctx = make_ctx(args, Path(tmp), clock.mark_step)
        recipe = FinetuneRecipe(ctx)
        batch, evaluate = recipe.batch, recipe.evaluate

        def timed_batch(step):
            clock.mark_start()
            return batch(step)

        def timed_evaluate(model):
            a = now()
            out = evaluate(model)
            clock.evals.append((a, now()))
            return out

        recipe.batch, recipe.evaluate = timed_batch, timed_evaluate
        result = train(recipe, ctx)
        end_to_end = time.perf_counter() - t0
    m = result.metrics
    return {
        "train_s": clock.train_s(),
        "train_cpu_s": clock.train_s(1),
        "examples": m["train_examples"] * args.epochs,
        "median_step_s": clock.median_step_s(),
        "eval_passes": len(clock.evals),
        "eval_s": sum(b[0] - a[0] for a, b in clock.evals),
        "end_to_end_s": end_to_end,
        "test_accuracy": m["test_accuracy"],
        "val_accuracy": m["val_accuracy"],
        "best_step": m["best_step"],
        "engine_examples_per_s": m["examples_per_s"],
    }


class EpochOrder(torch.utils.data.Sampler):
    """The recipe's example order: epoch e is a permutation seeded by (seed, e)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        self.epoch += 1  # set_epoch, when the Trainer calls it, says the same
        return iter(order)


def run_trainer(args: argparse.Namespace) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from scalelab.data.classification import encode, load_task_data
    from scalelab.eval.classification import predict, score
    from scalelab.models.pretrained import load_classifier

    clock = Clock()

    class Stamps(TrainerCallback):
        def on_train_begin(self, *a, **k) -> None:
            clock.mark_start()

        def on_step_end(self, *a, **k) -> None:
            clock.mark_step()

    class OrderedTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return EpochOrder(len(self.train_dataset), args.seed)

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ft-bench-trainer-") as tmp:
        ctx = make_ctx(args, Path(tmp), lambda e: None)
        data = load_task_data(ctx.task)
        torch.manual_seed(args.seed)  # the head's initialisation, as in the recipe
        model, tok, _ = load_classifier(ctx.model, data.label_names)
        seqs = encode(tok, data.train, args.max_length)
        train_set = [{"input_ids": s, "label": e["label"]}
                     for s, e in zip(seqs, data.train, strict=True)]  # fmt: skip
        targs = TrainingArguments(
            output_dir=tmp, use_cpu=True, bf16=args.dtype == "bf16",
            num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
            lr_scheduler_type="linear", max_grad_norm=1.0, optim="adamw_torch_fused",
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[],
            disable_tqdm=True, dataloader_num_workers=0, seed=args.seed,
        )  # fmt: skip
        trainer = OrderedTrainer(model=model, args=targs, train_dataset=train_set,
                                 data_collator=DataCollatorWithPadding(tok),
                                 callbacks=[Stamps()])  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        t_test = time.perf_counter()
        test = encode(tok, data.test, args.max_length)
        amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.dtype == "bf16" \
            else __import__("contextlib").nullcontext  # fmt: skip
        logits = predict(model, test, tok.pad_token_id, 64, amp, torch.device("cpu"))
        labels = [e["label"] for e in data.test]
        acc = score(logits, labels, data.num_labels)["accuracy"]
        test_s = time.perf_counter() - t_test
    return {
        "train_s": clock.train_s(),
        "train_cpu_s": clock.train_s(1),
        "examples": len(seqs) * args.epochs,
        "median_step_s": clock.median_step_s(),
        "eval_passes": 0,
        "eval_s": test_s,
        "end_to_end_s": time.perf_counter() - t0,
        "test_accuracy": acc,
        "steps": len(clock.steps),
    }


RUNNERS = {"scalelab": run_scalelab, "trainer": run_trainer}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=float, default=0.06)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="scalelab with runtime.compile")
    ap.add_argument("--packing", action="store_true", help="scalelab with params.packing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sides", default="scalelab,trainer")
    ap.add_argument("--quick", action="store_true", help="320 examples, 1 epoch, 1 round")
    ap.add_argument("--out", type=Path, default=RESULTS / "finetune_vs_trainer.json")
    if ap.parse_args(argv).quick:  # tiny defaults; options given explicitly still win
        ap.set_defaults(train_size=320, epochs=1, rounds=1)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_builtins()
    torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    t0, load_at_start = time.perf_counter(), os.getloadavg()
    from scalelab.data.classification import load_task_data
    from scalelab.models.pretrained import load_classifier

    with tempfile.TemporaryDirectory() as tmp:  # untimed: download/cache model and data
        ctx = make_ctx(args, Path(tmp), lambda e: None)
        load_classifier(ctx.model, load_task_data(ctx.task).label_names)
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            out = RUNNERS[side](args)
            out["examples_per_s"] = out["examples"] / out["train_s"]
            out["cpu_examples_per_s"] = out["examples"] / (out["train_cpu_s"] / args.threads)
            runs[side].append(out)
            print(f"  round {r + 1}/{args.rounds} {side}: train {out['train_s']:.1f} s, "
                  f"{out['examples_per_s']:.1f} examples/s ({out['cpu_examples_per_s']:.1f} by CPU "
                  f"time), median step "
                  f"{out['median_step_s'] * 1e3:.0f} ms, end to end {out['end_to_end_s']:.1f} s, "
                  f"test accuracy {out['test_accuracy']:.4f}", flush=True)  # fmt: skip
    summary = {}
    for side, rs in runs.items():
        summary[side] = {k: statistics.median(r[k] for r in rs) for k in (
            "train_s", "examples_per_s", "cpu_examples_per_s", "median_step_s", "end_to_end_s",
            "test_accuracy")}  # fmt: skip
    if len(sides) == 2:
        ratios = [a["examples_per_s"] / b["examples_per_s"]
                  for a, b in zip(runs["scalelab"], runs["trainer"], strict=True)]  # fmt: skip
        step_ratios = [b["median_step_s"] / a["median_step_s"]
                       for a, b in zip(runs["scalelab"], runs["trainer"], strict=True)]  # fmt: skip
        cpu_ratios = [a["cpu_examples_per_s"] / b["cpu_examples_per_s"]
                      for a, b in zip(runs["scalelab"], runs["trainer"], strict=True)]  # fmt: skip
        summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios),
                            "max": max(ratios), "per_round": ratios,
                            "median_step": statistics.median(step_ratios),
                            "cpu_median": statistics.median(cpu_ratios),
                            "cpu_per_round": cpu_ratios}  # fmt: skip
    print(f"\n{'side':<10} {'train s':>8} {'examples/s':>11} {'cpu ex/s':>9} {'step ms':>8} "
          f"{'end-to-end s':>13} {'test acc':>9}")  # fmt: skip
    for side in sides:
        s = summary[side]
        print(f"{side:<10} {s['train_s']:>8.1f} {s['examples_per_s']:>11.1f} "
              f"{s['cpu_examples_per_s']:>9.1f} {s['median_step_s'] * 1e3:>8.0f} {s['end_to_end_s']:>13.1f} "
              f"{s['test_accuracy']:>9.4f}")  # fmt: skip
    if "ratio" in summary:
        q = summary["ratio"]
        print(f"scalelab / Trainer examples/s: {q['median']:.3f}x (rounds {q['min']:.3f}-"
              f"{q['max']:.3f}); median-step ratio {q['median_step']:.3f}x; CPU-time ratio "
              f"{q['cpu_median']:.3f}x")  # fmt: skip
    report = {
        "environment": {"torch": torch.__version__,
                        "transformers": __import__("transformers").__version__,
                        "python": platform.python_version(), "threads": args.threads,
                        "load_average_at_start": load_at_start},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "timing": "training only on both sides (scalelab's per-epoch validation passes "
                  "subtracted; the Trainer evaluates nothing)",
        "summary": summary,
        "runs": runs,
        "wall_s": time.perf_counter() - t0,
        "load_average_at_end": os.getloadavg(),
    }  # fmt: skip
    atomic_write_json(args.out, report)
    print(f"wall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
