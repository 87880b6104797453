"""Do the Makefile's glibc malloc settings still pay? Training speed and peak memory of
`scalelab run` with and without them, side by side.

The Makefile exports `MALLOC_MMAP_MAX_=0` (no mmap for large blocks: freed activations
stay in the heap for the next step instead of being unmapped and page-faulted back in) and
`MALLOC_TRIM_THRESHOLD_=64G` (the heap is never trimmed). glibc reads both when the
process starts, so each side is a fresh `scalelab run` process with its own environment,
on a one-run spec: a ladder model pretrained on WikiText-2 bytes (warm token cache), one
thread, batch 16x128, `--steps` optimizer steps. Read from the run: the engine's
`tokens_per_s` (training steps only) and the process's peak RSS (`ru_maxrss` of the child).
Rounds alternate the order of the sides; the ratio is the median of the per-round ratios.

    python benchmarks/malloc_settings.py                   # gpt-d4 and gpt-d7, 3 rounds
    python benchmarks/malloc_settings.py --quick           # gpt-d1, 20 steps, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scalelab.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
SIDES = ("malloc settings", "glibc defaults")


def write_spec(folder: Path, model: str, steps: int, dataset: str) -> Path:
    spec = {
        "name": "malloc",
        "models": [model],
        "tasks": {
            "dataset": "wikitext2",
            "seq_len": 128,
            "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 8192},
        },  # fmt: skip
        "methods": "pretrain",
        "params": {"tokens": steps * 16 * 128, "batch_size": 16, "lr": 0.003},
        "runtime": {"workers": 1, "threads": 1},
    }
    path = folder / f"{model}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_side(spec: Path, side: str) -> dict:
    """One fresh `scalelab run` of `spec`; tokens/s from its store row, peak RSS of the child."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    if side == SIDES[0]:
        env.update(SETTINGS)
    out = Path(tempfile.mkdtemp(prefix="malloc-"))
    t0 = time.perf_counter()
    cli = [sys.executable, "-m", "scalelab.cli"]
    with open(out / "run.log", "wb") as log:
        proc = subprocess.Popen([*cli, "run", str(spec), "--output-dir", str(out), "--quiet"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError((out / "run.log").read_text()[-3000:])
    rows = json.loads(subprocess.run(
        [*cli, "results", str(spec), "--output-dir", str(out), "--format", "json"],
        check=True, capture_output=True, text=True).stdout)  # fmt: skip
    (row,) = rows
    return {"tokens_per_s": row["tokens_per_s"], "val_loss": row["val_loss"], "wall_s": wall,
            "peak_rss_mb": usage.ru_maxrss / 1024}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="gpt-d4,gpt-d7")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dataset", default="wikitext2", help="a registered name or a folder")
    ap.add_argument("--quick", action="store_true", help="gpt-d1, 20 steps, 1 round")
    ap.add_argument("--out", type=Path, default=RESULTS / "malloc_settings.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.steps, args.rounds = "gpt-d1", 20, 1
    t0, load = time.perf_counter(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="malloc-specs-"))
    runs: dict[str, dict[str, list[dict]]] = {}
    for model in args.models.split(","):
        spec = write_spec(work, model, args.steps, args.dataset)
        runs[model] = {s: [] for s in SIDES}
        for r in range(args.rounds):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                out = run_side(spec, side)
                runs[model][side].append(out)
                print(f"  {model} round {r + 1}: {side}: {out['tokens_per_s']:,.0f} tokens/s, "
                      f"val_loss {out['val_loss']:.5f}", flush=True)  # fmt: skip
    summary = {}
    print(f"\n{'model':<8} {'settings tok/s':>15} {'defaults tok/s':>15} {'ratio':>7} "
          f"{'rounds':>13} {'same val_loss':>14} {'RSS MB':>9} {'RSS MB':>9}")  # fmt: skip
    for model, sides in runs.items():
        a, b = sides[SIDES[0]], sides[SIDES[1]]
        ratios = [x["tokens_per_s"] / y["tokens_per_s"] for x, y in zip(a, b, strict=True)]
        same = all(x["val_loss"] == y["val_loss"] for x, y in zip(a, b, strict=True))
        med = {s: statistics.median(x["tokens_per_s"] for x in sides[s]) for s in SIDES}
        rss = {s: statistics.median(x["peak_rss_mb"] for x in sides[s]) for s in SIDES}
        summary[model] = {"tokens_per_s": med, "peak_rss_mb": rss, "same_val_loss": same,
                          "ratio": statistics.median(ratios), "ratio_rounds": ratios}  # fmt: skip
        print(f"{model:<8} {med[SIDES[0]]:>15,.0f} {med[SIDES[1]]:>15,.0f} "
              f"{summary[model]['ratio']:>6.3f}x {min(ratios):>6.3f}-{max(ratios):<6.3f} "
              f"{str(same):>14} {rss[SIDES[0]]:>9,.0f} {rss[SIDES[1]]:>9,.0f}")  # fmt: skip
    report = {"environment": {"python": platform.python_version(), "load_average_at_start": load},
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "summary": summary, "runs": runs, "wall_s": time.perf_counter() - t0,
              "load_average_at_end": os.getloadavg()}  # fmt: skip
    atomic_write_json(args.out, report)
    print(f"wall {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
