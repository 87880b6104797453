"""Small fixtures shared by the test suite and the benchmarks (benchmarks cannot import
`tests/`): a learnable toy corpus, and `scalelab serve` and llama.cpp's server (for GGUF
files) run as real subprocesses.

Nothing here is used by scalelab itself; it is public so that a user's own tests of a
method or a backend can use the same fixtures.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

WORDS = (
    "the cat dog sat on a mat and ran to big small red blue house tree "
    "it was very quick slow happy one two three"
).split()


def make_corpus(folder: Path, n_lines: int = 1500, seed: int = 0) -> Path:
    """train/valid/test .txt files of random short sentences over a 25-word vocabulary
    (4-10 words each: structure a tiny model learns in a few dozen steps). valid and test
    get n_lines // 10 lines each. Returns `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_lines, "valid": n_lines // 10, "test": n_lines // 10}
    for split, n in sizes.items():
        lines = []
        for _ in range(n):
            k = rng.randint(4, 10)
            lines.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s (a server that ignores the first)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServeProcess:
    """`scalelab serve FOLDER --name NAME` in a subprocess, stderr to `log`.

    `port` 0 lets the server pick one; `wait` reads the address the server prints and sets
    `url` (".../v1", reached through loopback when bound to all interfaces), `host` and
    `port`. `args` are extra `serve` options (limits, `--host`, `--api-key`); `env` extra
    environment variables. SCALELAB_API_KEY is never inherited: only `env` can set it.
    """

    def __init__(self, folder: Path, log: Path, *, name: str = "tiny", port: int = 0,
                 args: Sequence[str] = (), env: dict[str, str] | None = None,
                 threads: int = 1, home: Path | None = None) -> None:  # fmt: skip
        cmd = [sys.executable, "-m", "scalelab.cli", "serve", str(folder), "--name", name,
               "--port", str(port), *args]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if k != "SCALELAB_API_KEY"}
        base.update(OMP_NUM_THREADS=str(threads),
                    SCALELAB_HOME=str(home or Path(folder).parent / "home"))  # fmt: skip
        self.log, self.url, self.host, self.port = log, "", "127.0.0.1", port
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"),
                                     text=True, env={**base, **(env or {})})  # fmt: skip

    def wait(self, timeout: float = 600) -> str:
        """The server's base URL, once it prints it (importing torch takes minutes on a busy
        host). Raises RuntimeError (with the log's tail) if the server exits first,
        TimeoutError after `timeout` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                found = re.search(r" at http://([\d.]+):(\d+)/v1", self.proc.stdout.readline())
                if found:  # a server on all interfaces is reached through loopback
                    self.host = "127.0.0.1" if found.group(1) == "0.0.0.0" else found.group(1)
                    self.port = int(found.group(2))
                    self.url = f"http://{self.host}:{self.port}/v1"
                    return self.url
            if self.proc.poll() is not None:
                raise RuntimeError(f"scalelab serve exited: {self.log.read_text()[-2000:]}")
        raise TimeoutError(f"scalelab serve printed no URL in {timeout:.0f} s")

    def get_json(self, path: str, timeout: float = 120) -> dict:
        """GET `path` from the server's root (e.g. "/metrics"), parsed as JSON."""
        with urllib.request.urlopen(self.url.removesuffix("/v1") + path, timeout=timeout) as r:
            return json.load(r)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        stop_process(self.proc)


class LlamaCppServer:
    """llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`, the optional
    `scalelab[llama]` extra) on one GGUF file, in a subprocess, stderr to `log`.

    It serves the file as model `name` at `url` (http://127.0.0.1:PORT/v1), so scalelab
    reaches it as `{url}#{name}`. `threads` sets both its generation and its prompt threads
    (its defaults differ: half the cores, all cores). `logits_all` keeps every prompt
    position's logits: needed for echo + logprobs, a cost when only generating. `args` are
    extra server options (e.g. `--n_batch 512`).
    """

    def __init__(self, gguf: Path, log: Path, *, name: str = "gguf", n_ctx: int = 2048,
                 threads: int = 1, logits_all: bool = True, args: Sequence[str] = ()) -> None:  # fmt: skip
        import socket

        with socket.socket() as s:  # a free port (the server cannot report one it picked)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.name, self.log = name, log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
               "--model_alias", name, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(n_ctx), "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--logits_all", str(logits_all), *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))

    @property
    def model(self) -> str:
        """The scalelab model name of the served file: `http://127.0.0.1:PORT/v1#name`."""
        return f"{self.url}#{self.name}"

    def wait(self, timeout: float = 300) -> str:
        """The base URL, once `/v1/models` answers. Raises RuntimeError (with the log's tail)
        if the server exits first, TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=5) as r:
                    if r.status == 200:
                        return self.url
            except OSError:  # not listening yet
                time.sleep(0.5)
        raise TimeoutError(f"llama_cpp.server did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        stop_process(self.proc)
