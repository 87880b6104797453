"""Training throughput: scalelab's pretraining step vs `transformers.Trainer`, same model.

scalelab's step is the training engine's own (`_Run.step` of `scalelab.engine.loop.train`)
driving PretrainRecipe's `batch`/`loss_step` (`get_batch`, `make_loss_fn`): the cosine
schedule, clipping and fused AdamW of a real run, without the run's data preparation,
evaluation and checkpoints. Every variant trains the same ladder model (`build_causal_lm`, same seed) on the same
batches (`get_batch` windows of random token ids, a trained-BPE-sized vocabulary) with the
same optimizer settings, side by side in one process. Each round runs every variant for
`--steps` timed steps after a warm-up step, in an order rotated by one each round (the
host is noisy); the report is the median over rounds, and the ratio to the Trainer is the
median of the per-round paired ratios.

MFU = 6 * N * tokens/s over a square-matmul peak measured here, in the variant's compute
dtype (bf16 peak for bf16 variants). N is the non-embedding parameter count (the usual
6N convention); `mfu_head` adds the tied LM head's V*d weights, which do a matmul per token
and dominate FLOPs for tiny models. Attention-score FLOPs are not counted in either.

Run with the malloc settings exported before Python starts (`make bench` does):

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/train_throughput.py
"""

from __future__ import annotations

import os

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/scalelab-inductor-cache")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from scalelab.engine.loop import _Run  # noqa: E402
from scalelab.engine.recipe import Phase, Plan, Recipe  # noqa: E402
from scalelab.methods.base import RunContext  # noqa: E402
from scalelab.methods.pretrain import PretrainParams, get_batch, make_loss_fn  # noqa: E402
from scalelab.models.build import build_causal_lm, count_params  # noqa: E402

MALLOC_VARS = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = (
    "trainer",
    "scalelab-fp32",
    "scalelab-compile",
    "scalelab-bf16",
    "scalelab-compile-bf16",
)
SEED = 0


@dataclass(frozen=True)
class Setup:
    """What every variant shares: batch shape, vocabulary, data and optimizer settings."""

    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int  # timed steps per round
    warmup: int  # untimed steps at the start of every round
    ids: torch.Tensor  # the token stream get_batch draws windows from
    params: PretrainParams

    @property
    def steps_per_round(self) -> int:
        return self.warmup + self.steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


class Times(tuple):
    """(wall, cpu) seconds; `b - a` subtracts element-wise."""

    def __sub__(self, other: Times) -> Times:
        return Times((self[0] - other[0], self[1] - other[1]))


def clock() -> Times:
    """Wall time and this process's CPU time (all threads).

    Under load from other processes the wall time per step varies several-fold; the CPU
    time the step actually consumed varies much less, so it is reported alongside.
    """
    return Times((time.perf_counter(), time.process_time()))


# --- matmul peak -------------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """Best-of-`reps` GFLOP/s of an n x n @ n x n matmul (best, since noise only slows)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def measure_peaks(n: int = 2048) -> dict[str, float]:
    return {
        "fp32": matmul_gflops(torch.float32, n),
        "bf16": matmul_gflops(torch.bfloat16, n),
    }


# --- variants ----------------------------------------------------------------------------


def fresh_model(name: str, setup: Setup) -> torch.nn.Module:
    """The ladder model every variant starts from (same seed, so same weights)."""
    torch.manual_seed(SEED)
    model = build_causal_lm(name, setup.vocab_size, setup.seq_len)
    model.train()
    return model


class BenchRecipe(Recipe):
    """PretrainRecipe's `batch` and `loss_step` over the benchmark's token stream."""

    def __init__(self, ctx: RunContext, setup: Setup, loss_fn) -> None:
        super().__init__(ctx)
        self.setup_, self.loss_fn = setup, loss_fn

    def batch(self, step: int):
        s = self.setup_
        return get_batch(s.ids, s.batch_size, s.seq_len, SEED, step)

    def loss_step(self, model, batch):
        x, y = batch
        return self.loss_fn(model, x, y), {"tokens": x.numel()}


@dataclass
class ScalelabVariant:
    """The engine's optimizer step (`_Run.step` of `scalelab.engine.loop.train`): the
    recipe's batch, the cosine schedule, model+loss (optionally compiled), clip, AdamW."""

    name: str
    model: torch.nn.Module
    run: _Run
    phase: Phase

    def train_step(self, setup: Setup, step: int) -> float:
        """One optimizer step of the engine; returns the batch loss."""
        return self.run.step(step, self.phase, 0)

    def timed_round(self, setup: Setup) -> list[Times]:
        """(wall, cpu) seconds of each of `setup.steps` steps after `setup.warmup` untimed ones."""
        for step in range(setup.warmup):
            self.train_step(setup, step)
        times = []
        for step in range(setup.warmup, setup.steps_per_round):
            t0 = clock()
            self.train_step(setup, step)
            times.append(clock() - t0)
        return times


def scalelab_variant(variant: str, size: str, setup: Setup) -> ScalelabVariant:
    from scalelab.grid.spec import Runtime

    model = fresh_model(size, setup)
    dtype = "bf16" if variant.endswith("bf16") else "fp32"
    params = setup.params.model_copy(update={"dtype": dtype})
    ctx = RunContext(run_id=variant, model=None, task=None, params=params, seed=SEED,
                     run_dir=Path("/tmp/scalelab-bench-engine"), runtime=Runtime())  # fmt: skip
    recipe = BenchRecipe(ctx, setup, make_loss_fn(model, dtype, compile="compile" in variant))
    phase = Phase("train", setup.steps_per_round)
    run = _Run(recipe, ctx, torch.device("cpu"), Plan(model=model, phases=[phase]))
    run.enter_phase(0, phase)
    return ScalelabVariant(variant, model, run, phase)


class _StepClock(TrainerCallback):
    """Trainer callback: clock() at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[Times] = []

    def on_train_begin(self, *args, **kwargs) -> None:
        self.ends.clear()

    def on_step_end(self, *args, **kwargs) -> None:
        self.ends.append(clock())


class WindowDataset(torch.utils.data.Dataset):
    """The rows of get_batch(step) for steps 0..n-1, in order: the Trainer's batches are ours.

    GPT-2 shifts labels itself, so a row is {input_ids: x, labels: x}: the same T tokens
    per row go through the model as in the scalelab step.
    """

    def __init__(self, setup: Setup) -> None:
        rows = [
            get_batch(setup.ids, setup.batch_size, setup.seq_len, SEED, step)[0]
            for step in range(setup.steps_per_round)
        ]
        self.x = torch.cat(rows)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.x[i]}


@dataclass
class TrainerVariant:
    """`transformers.Trainer`, fp32, fused AdamW (its default), our optimizer settings."""

    trainer: object
    clock: _StepClock = field(default_factory=_StepClock)
    name: str = "trainer"

    def timed_round(self, setup: Setup) -> list[Times]:
        """(wall, cpu) seconds of each step after the warm-up: end of one step to the next.

        Each span covers a whole iteration (fetching the batch included); the setup
        `trainer.train()` does before its first step is excluded.
        """
        self.trainer.train()
        ends = self.clock.ends
        assert len(ends) == setup.steps_per_round, f"expected {setup.steps_per_round} steps"
        return [
            b - a for a, b in zip(ends[setup.warmup - 1 : -1], ends[setup.warmup :], strict=True)
        ]


def trainer_variant(size: str, setup: Setup, out_dir: Path) -> TrainerVariant:
    from transformers import Trainer, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    p = setup.params
    args = TrainingArguments(
        output_dir=str(out_dir),
        use_cpu=True,
        max_steps=setup.steps_per_round,
        per_device_train_batch_size=setup.batch_size,
        learning_rate=p.lr,
        weight_decay=p.weight_decay,
        adam_beta1=p.beta1,
        adam_beta2=p.beta2,
        max_grad_norm=p.grad_clip,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        train_sampling_strategy="sequential",
        logging_steps=10**9,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=SEED,
    )
    clock = _StepClock()
    trainer = Trainer(
        model=fresh_model(size, setup),
        args=args,
        train_dataset=WindowDataset(setup),
        data_collator=default_data_collator,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-train metrics
    return TrainerVariant(trainer, clock)


# --- measurement -------------------------------------------------------------------------


def prepare(variants: list, setup: Setup, compile_warmup: int) -> dict[str, float]:
    """Untimed first steps per variant (compiles the compiled one); seconds each took."""
    took = {}
    for v in variants:
        t0 = time.perf_counter()
        if isinstance(v, ScalelabVariant):
            for step in range(compile_warmup if "compile" in v.name else 1):
                v.train_step(setup, step)
        took[v.name] = time.perf_counter() - t0
    return took


def paired_ratios(tps: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-round tokens/s of each variant over the Trainer's in the same round."""
    base = tps["trainer"]
    return {n: [a / b for a, b in zip(t, base, strict=True)] for n, t in tps.items()}


def measure_size(
    size: str, setup: Setup, rounds: int, compile_warmup: int, names: tuple[str, ...] = VARIANTS
) -> dict:
    """Tokens/s per variant and round (wall and CPU-time based), `rounds` rotated rounds.

    A round's value is from its median step (robust to bursts of noise). CPU-time tokens/s
    divides by cpu_s / threads: what the step would take with both threads to itself.
    """
    torch._dynamo.reset()
    variants: list = [trainer_variant(size, setup, Path("/tmp/scalelab-bench-trainer"))]
    variants += [scalelab_variant(name, size, setup) for name in names if name != "trainer"]
    prep_s = prepare(variants, setup, compile_warmup)
    threads = torch.get_num_threads()
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            times = v.timed_round(setup)
            wall[v.name].append(setup.tokens_per_step / statistics.median(t[0] for t in times))
            cpu_s = statistics.median(t[1] for t in times) / threads
            cpu[v.name].append(setup.tokens_per_step / cpu_s)
        print(f"  {size} round {r + 1}/{rounds} tokens/s: " + ", ".join(
            f"{n} {t[-1]:,.0f}" for n, t in wall.items()
        ), flush=True)  # fmt: skip
    non_emb, _ = count_params(variants[1].model)
    return {
        "size": size,
        "non_embedding_params": non_emb,
        "head_params": setup.vocab_size * variants[1].model.config.n_embd,
        "first_steps_s": prep_s,
        "tokens_per_s": wall,
        "ratio_vs_trainer": paired_ratios(wall),
        "cpu_tokens_per_s": cpu,
        "cpu_ratio_vs_trainer": paired_ratios(cpu),
    }


def summarise(row: dict, peaks: dict[str, float]) -> list[dict]:
    """One line per variant: medians, ratios, MFU with N and with N + V*d (wall time)."""
    out = []
    n, head = row["non_embedding_params"], row["head_params"]
    for name, values in row["tokens_per_s"].items():
        tps = statistics.median(values)
        peak = peaks["bf16" if name.endswith("bf16") else "fp32"] * 1e9
        out.append({
            "size": row["size"], "N": n, "variant": name, "tokens_per_s": tps,
            "ratio_vs_trainer": statistics.median(row["ratio_vs_trainer"][name]),
            "cpu_tokens_per_s": statistics.median(row["cpu_tokens_per_s"][name]),
            "cpu_ratio_vs_trainer": statistics.median(row["cpu_ratio_vs_trainer"][name]),
            "mfu": 6 * n * tps / peak, "mfu_head": 6 * (n + head) * tps / peak,
        })  # fmt: skip
    return out


def print_table(lines: list[dict]) -> None:
    print(f"\n{'size':<7} {'N':>9} {'variant':<22} {'tokens/s':>9} {'vs Trainer':>10} "
          f"{'MFU(6N)':>8} {'MFU(6(N+Vd))':>13} {'cpu tok/s':>10} {'cpu ratio':>9}")  # fmt: skip
    for s in lines:
        print(f"{s['size']:<7} {s['N']:>9,} {s['variant']:<22} {s['tokens_per_s']:>9,.0f} "
              f"{s['ratio_vs_trainer']:>9.2f}x {s['mfu']:>8.1%} {s['mfu_head']:>13.1%} "
              f"{s['cpu_tokens_per_s']:>10,.0f} {s['cpu_ratio_vs_trainer']:>8.2f}x")  # fmt: skip


def environment(threads: int) -> dict:
    return {
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "malloc_env_set": all(os.environ.get(k) == v for k, v in MALLOC_VARS.items()),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_VARS},
        "inductor_cache_dir": os.environ["TORCHINDUCTOR_CACHE_DIR"],
        "load_average_at_start": os.getloadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="gpt-d2,gpt-d4,gpt-d6", help="comma-separated rungs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per round")
    ap.add_argument("--compile-warmup", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated; the Trainer always runs (ratios are to it)")  # fmt: skip
    ap.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak")
    ap.add_argument("--quick", action="store_true", help="tiny settings, no compile: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_throughput.json")
    if ap.parse_args(argv).quick:  # tiny defaults; options given explicitly still win
        ap.set_defaults(sizes="gpt-d1", rounds=1, steps=1, batch_size=2, seq_len=16,
                        vocab_size=64, peak_size=256,
                        variants="trainer,scalelab-fp32,scalelab-bf16")  # fmt: skip
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    if not env["malloc_env_set"]:
        print("note: MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ not set before Python started")
    peaks = measure_peaks(args.peak_size)
    print(f"matmul peak ({args.peak_size}^2, {args.threads} threads): "
          f"fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")  # fmt: skip
    g = torch.Generator().manual_seed(SEED)
    setup = Setup(
        vocab_size=args.vocab_size, seq_len=args.seq_len, batch_size=args.batch_size,
        steps=args.steps, warmup=args.warmup,
        ids=torch.randint(0, args.vocab_size, (1_000_000,), generator=g, dtype=torch.int32),
        params=PretrainParams(tokens=args.steps * args.batch_size * args.seq_len),
    )  # fmt: skip
    t0 = time.perf_counter()
    names = tuple(args.variants.split(","))
    rows = [measure_size(s, setup, args.rounds, args.compile_warmup, names)
            for s in args.sizes.split(",")]  # fmt: skip
    peaks_after = measure_peaks(args.peak_size)
    best = {k: max(peaks[k], peaks_after[k]) for k in peaks}
    lines = [line for row in rows for line in summarise(row, best)]
    print_table(lines)
    report = {
        "environment": env,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "matmul_gflops": {"before": peaks, "after": peaks_after, "used_for_mfu": best},
        "mfu_convention": "6*N*tokens/s / peak(dtype), peak = max(before, after); "
        "mfu_head uses N + vocab*d",
        "summary": lines,
        "rounds": rows,
        "wall_s": time.perf_counter() - t0,
        "load_average_at_end": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nmatmul peak after: fp32 {peaks_after['fp32']:.0f}, bf16 {peaks_after['bf16']:.0f} "
          f"GFLOP/s; wall {report['wall_s']:.0f} s; wrote {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
