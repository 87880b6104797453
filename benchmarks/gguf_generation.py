"""Greedy generation from a GGUF teacher on CPU: transformers (scalelab's LocalBackend, the
GGUF dequantised to fp32) against llama.cpp's OpenAI-compatible server (the quantised
kernels, reached through scalelab's HttpBackend).

For each model (`smollm2-135m`, `gemma-3-270m`: registered GGUF files from PyPI), the same
`--prompts` GSM8K few-shot prompts (`--shots` worked test problems, then a new question;
~300-500 tokens) are completed greedily with `--max-tokens` new tokens and no stop string:

* `transformers`: `open_backend(name).generate(...)` as scalelab runs it today (greedy
  prompts are batched only when their token lengths are equal, so these run one by one;
  left-padded batching is being added separately and is not measured here);
* `llama.cpp`: `python -m llama_cpp.server --model FILE` started as a subprocess (not timed;
  its start-up is reported), one warm-up request, then `open_backend("http://...#name",
  cache=False, batch_size=1, concurrency=C)` (the server takes one prompt per request and
  answers them one at a time).

Both sides use `--threads` threads (torch; the server's generation and prompt threads).
Reported: generated tokens (the completions re-tokenized with the model's own tokenizer, so
both sides count alike), seconds, tokens/s and the llama.cpp / transformers ratio, and how
far the greedy texts agree (Q4 weights dequantised to fp32 vs llama.cpp's quantised dot
products: they drift apart somewhere): the fraction of identical completions and the mean
common-prefix length in characters. Needs the optional extra: `pip install
'scalelab[llama]'`.

    python benchmarks/gguf_generation.py               # both models (~10-15 min on 2 busy cores)
    python benchmarks/gguf_generation.py --quick       # smoke: 2 prompts, 8 tokens, smollm2

Output: a table, and JSON in results/gguf_generation.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from scalelab.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def few_shot_prompts(n: int, shots: int) -> list[str]:
    """`n` prompts: the first `shots` GSM8K test problems worked in full, then problem
    shots + i's question (the shots are never asked)."""
    from scalelab.data.math_data import load_math

    problems = load_math("gsm8k")["test"]
    demo = "".join(
        f"Question: {p['question']}\nAnswer: {p['rationale']}\n#### {p['answer']}\n\n"
        for p in problems[:shots]
    )
    return [f"{demo}Question: {p['question']}\nAnswer:" for p in problems[shots : shots + n]]


def common_prefix(a: str, b: str) -> int:
    """Characters the two texts share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def gguf_file(name: str) -> Path:
    """The local GGUF file of a registered model (fetched once)."""
    from scalelab.models.registry import PRETRAINED

    entry = PRETRAINED.get(name)
    if not entry.gguf_file:
        raise SystemExit(f"{name} is not a GGUF model")
    return entry.locate() / entry.gguf_file


def run_transformers(name: str, prompts: list[str], max_tokens: int, batch_size: int) -> dict:
    """Load (untimed, with a one-token warm-up) and time `generate` over all prompts."""
    from scalelab.models.backends import GenRequest, open_backend

    t0 = time.perf_counter()
    backend = open_backend(name, batch_size=batch_size)
    backend.generate([GenRequest(prompts[0][-200:], max_tokens=1)])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    texts = backend.generate([GenRequest(p, max_tokens=max_tokens) for p in prompts])
    seconds = time.perf_counter() - t0
    return {"backend": backend, "texts": texts, "seconds": seconds, "load_s": load_s}


def run_llama_cpp(
    name: str, prompts: list[str], max_tokens: int, threads: int, concurrency: int, log: Path
) -> dict:
    """Start the server (untimed), warm it up, and time HttpBackend's `generate`."""
    from scalelab.models.backends import GenRequest, open_backend
    from scalelab.testing import LlamaCppServer

    t0 = time.perf_counter()
    server = LlamaCppServer(gguf_file(name), log, name=name, threads=threads, logits_all=False)
    try:
        server.wait()
        start_s = time.perf_counter() - t0
        backend = open_backend(server.model, cache=False, batch_size=1, concurrency=concurrency)
        backend.generate([GenRequest(prompts[0][-200:], max_tokens=1)])
        t0 = time.perf_counter()
        texts = backend.generate([GenRequest(p, max_tokens=max_tokens) for p in prompts])
        seconds = time.perf_counter() - t0
        backend.close()
    finally:
        server.stop()
    return {"texts": texts, "seconds": seconds, "start_s": start_s}


def measure(name: str, prompts: list[str], args: argparse.Namespace, log: Path) -> dict:
    """One model on both paths: timings, token counts and agreement."""
    local = run_transformers(name, prompts, args.max_tokens, args.batch_size)
    tok = local.pop("backend").tokenizer
    remote = run_llama_cpp(name, prompts, args.max_tokens, args.threads, args.concurrency, log)
    prompt_tokens = [len(tok(p)["input_ids"]) for p in prompts]
    row: dict = {"model": name, "prompts": len(prompts), "max_tokens": args.max_tokens,
                 "prompt_tokens_mean": sum(prompt_tokens) / len(prompts),
                 "prompt_tokens_range": [min(prompt_tokens), max(prompt_tokens)],
                 "load_s": {"transformers": local["load_s"], "llama.cpp": remote["start_s"]}}  # fmt: skip
    for side, got in (("transformers", local), ("llama.cpp", remote)):
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in got["texts"])
        row[side] = {"seconds": got["seconds"], "tokens": tokens,
                     "tokens_per_s": tokens / got["seconds"], "texts": got["texts"]}  # fmt: skip
    row["ratio"] = row["llama.cpp"]["tokens_per_s"] / row["transformers"]["tokens_per_s"]
    pairs = list(zip(local["texts"], remote["texts"], strict=True))
    row["identical"] = sum(a == b for a, b in pairs) / len(pairs)
    row["common_prefix_chars_mean"] = sum(common_prefix(a, b) for a, b in pairs) / len(pairs)
    row["text_chars_mean"] = sum(len(a) for a, _ in pairs) / len(pairs)
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads")
    p.add_argument("--batch-size", type=int, default=16, help="LocalBackend batch_size")
    p.add_argument("--concurrency", type=int, default=4, help="HttpBackend concurrency")
    p.add_argument("--quick", action="store_true", help="smoke: 2 prompts, 8 tokens, smollm2")
    p.add_argument("--out", type=Path, default=RESULTS / "gguf_generation.json")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.prompts, args.max_tokens = "smollm2-135m", 2, 8
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    from scalelab.builtins import load_builtins

    args = parse_args(argv)
    load_builtins()
    torch.set_num_threads(args.threads)
    t0, load_at_start = time.perf_counter(), os.getloadavg()
    prompts = few_shot_prompts(args.prompts, args.shots)
    rows: list[dict] = []
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="gguf-gen-") as tmp:
        for name in args.models.split(","):
            rows.append(measure(name, prompts, args, Path(tmp) / f"{name}.log"))
            print(f"{name}: done at load {os.getloadavg()[0]:.1f}", flush=True)
            report = _report(args, rows, t0, load_at_start)
            atomic_write_json(args.out, report)  # after each model: a slow host keeps what it has
    head = (f"{'model':<14}{'prompt tok':>11}{'path':>14}{'tokens':>8}{'seconds':>9}"
            f"{'tok/s':>8}{'ratio':>7}{'identical':>10}{'prefix':>14}")  # fmt: skip
    print(head)
    for r in rows:
        for side in ("transformers", "llama.cpp"):
            s = r[side]
            extra = (f"{r['ratio']:>6.1f}x{r['identical']:>10.2f}"
                     f"{r['common_prefix_chars_mean']:>7.0f}/{r['text_chars_mean']:<6.0f}"
                     if side == "llama.cpp" else "")  # fmt: skip
            print(f"{r['model']:<14}{r['prompt_tokens_mean']:>11.0f}{side:>14}{s['tokens']:>8}"
                  f"{s['seconds']:>9.1f}{s['tokens_per_s']:>8.1f}{extra}")  # fmt: skip
    la = report["load_average_at_end"]
    print(f"wall {report['wall_s']:.0f} s; load {load_at_start[0]:.1f} -> {la[0]:.1f}; "
          f"wrote {args.out}")  # fmt: skip
    return 0


def _report(args: argparse.Namespace, rows: list[dict], t0: float, load_at_start: tuple) -> dict:
    import torch

    return {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "llama_cpp": _version("llama_cpp_python"), "cpus": os.cpu_count()},
        "wall_s": time.perf_counter() - t0,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }  # fmt: skip


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
