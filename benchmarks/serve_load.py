"""Load test of `scalelab serve`: many clients, valid and malformed requests mixed.

Builds a tiny ladder model (gpt-d1, random weights, the byte tokenizer) saved with
`save_pretrained`, starts a real `scalelab serve` on 127.0.0.1 with its default limits, and
runs `--clients` threads (32) for `--seconds` (60), each on its own keep-alive connection,
sending a seeded mix: about two thirds valid requests (completions greedy, batched, sampled
with n = 2, echo + logprobs scoring as the HTTP backend sends it, chat, odd-but-valid
unicode, `/v1/models`) and one third malformed ones (bad JSON, wrong types, missing fields,
negative and huge numbers, NaN, lone surrogates, invalid UTF-8, empty prompt lists, every
cap crossed, a 4 MiB+ body, unknown model and path).

Reports requests/s, latency p50/p90/p99 of valid requests, counts by status and by kind,
and the checks: every valid request got 200, every malformed one its 4xx, no 5xx, no
transport errors. The server's RSS (psutil) is sampled every 0.5 s; start (after a warm-up),
middle and end show whether memory stays flat.

    python benchmarks/serve_load.py            # 60 s, 32 clients (+ ~1-3 min start-up)
    python benchmarks/serve_load.py --quick    # 5 s (smoke test)

Output: a table, and JSON in results/serve_load.json (or --out). Exit status 1 when a check
fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scalelab.io import atomic_write_json
from scalelab.serve import Limits
from scalelab.testing import ServeProcess

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "tiny"
SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran to the big house.",
    "it was one red tree.",
    "two small birds sang in the rain.",
    "she read the long book twice.",
]
ODD = "\x00 \U0001f600 \u202e\u0301 \U0010ffff \ufeff 漢字 ñ"  # odd but valid unicode


@dataclass(frozen=True)
class Kind:
    """One kind of request: what to send and which status a correct server answers."""

    name: str
    valid: bool
    method: str
    path: str
    body: bytes | None
    want: int
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass
class Result:
    kind: str
    valid: bool
    status: int  # 0: no HTTP answer (connection error)
    want: int
    seconds: float


@dataclass
class Load:
    """What one load run measured."""

    results: list[Result]
    seconds: float
    rss: dict
    server_cpu: float
    client_cpu: float


def _json(**fields) -> bytes:
    return json.dumps({"model": MODEL, **fields}).encode()


def valid_kinds(rng: random.Random) -> list[Kind]:
    """One valid request of each kind, with random prompts and lengths (picked uniformly)."""
    one = rng.choice(SENTENCES)
    some = rng.sample(SENTENCES, rng.randint(2, 4))
    done, chat = "/v1/completions", "/v1/chat/completions"
    user = [{"role": "user", "content": one}]
    return [
        Kind("completion", True, "POST", done,
             _json(prompt=one, max_tokens=rng.randint(1, 16), temperature=0), 200),
        Kind("completion_batch", True, "POST", done,
             _json(prompt=some, max_tokens=8, temperature=0), 200),
        Kind("completion_sampled_n2", True, "POST", done,
             _json(prompt=one, max_tokens=8, temperature=0.8, seed=rng.randint(0, 99), n=2), 200),
        Kind("score_echo", True, "POST", done,
             _json(prompt=some, max_tokens=0, echo=True, logprobs=1, temperature=0), 200),
        Kind("chat", True, "POST", chat, _json(messages=user, max_tokens=8, temperature=0), 200),
        Kind("unicode_valid", True, "POST", done, _json(prompt=ODD + one, max_tokens=4), 200),
        Kind("models", True, "GET", "/v1/models", None, 200),
    ]  # fmt: skip


def malformed_kinds() -> list[Kind]:
    """Requests a correct server refuses with a 4xx; the server's default limits apply."""
    done, chat = "/v1/completions", "/v1/chat/completions"
    raw = [
        ("bad_json", done, b'{"model": "tiny", "prompt": ', 400),
        ("not_an_object", done, b"[1, 2, 3]", 400),
        ("empty_body", done, b"", 400),
        ("wrong_type", done, _json(prompt=5), 400),
        ("token_ids", done, _json(prompt=[1, 2, 3]), 400),
        ("missing_prompt", done, _json(), 400),
        ("missing_messages", chat, _json(), 400),
        ("negative_max_tokens", done, _json(prompt="x", max_tokens=-1), 400),
        ("zero_n", chat, _json(messages=[{"role": "user", "content": "x"}], n=0), 400),
        ("huge_max_tokens", done, _json(prompt="x", max_tokens=10**40), 400),
        ("huge_seed", done, _json(prompt="x", seed=10**30), 400),
        ("nan_temperature", done, b'{"model": "tiny", "prompt": "x", "temperature": NaN}', 400),
        ("huge_int_literal", done, b'{"model": "tiny", "prompt": "x", "n": 9' + b"9" * 5000 + b"}", 400),
        ("deep_nesting", done, b'{"model": "tiny", "prompt": ' + b"[" * 50_000, 400),
        ("lone_surrogate", done, b'{"model": "tiny", "prompt": ["ok", "\\ud800"]}', 400),
        ("invalid_utf8", done, b'{"model": "tiny", "prompt": "\xff\xfe\xc3"}', 400),
        ("empty_prompt_list", done, _json(prompt=[]), 400),
        ("stream", done, _json(prompt="x", stream=True), 400),
        ("too_many_prompts", done, _json(prompt=["a"] * 65), 413),
        ("n_over_cap", done, _json(prompt="x", n=9), 400),
        ("max_tokens_over_cap", chat,
         _json(messages=[{"role": "user", "content": "x"}], max_tokens=5000), 400),
        ("prompt_over_cap", done, _json(prompt="ab" * 2100, max_tokens=1), 413),
        ("body_over_cap", done, _json(prompt="a" * (4 * 2**20 + 10)), 413),
        ("unknown_model", done, b'{"model": "other", "prompt": "x"}', 404),
        ("unknown_path", "/v1/embeddings", _json(input="x"), 404),
    ]  # fmt: skip
    return [Kind(name, False, "POST", path, body, want) for name, path, body, want in raw]


class Connection:
    """One client's keep-alive connection; reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.conn = host, port, None
        self.reopened = 0

    def send(self, kind: Kind) -> int:
        """The HTTP status (0 when no answer came); a connection the server closed while
        idle is reopened once, as any HTTP client does."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                self.conn.request(
                    kind.method, kind.path, body=kind.body, headers=dict(kind.headers)
                )
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    return 0
                self.reopened += 1
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def build_model(folder: Path) -> None:
    """The smallest ladder model with the byte tokenizer; random weights are enough here."""
    import torch

    from scalelab.data.tokenizer import byte_tokenizer
    from scalelab.models.build import build_causal_lm

    tok = byte_tokenizer()
    torch.manual_seed(0)
    model = build_causal_lm("gpt-d1", vocab_size=len(tok), n_positions=256)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


class Monitor(threading.Thread):
    """Samples the server's resident memory every `every` seconds until stopped; also
    reads its CPU time (the busy host's share of CPU varies; CPU per request does not)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        import psutil

        super().__init__(daemon=True)
        self.process, self.every = psutil.Process(pid), every
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def sample(self) -> int:
        rss = self.process.memory_info().rss
        self.samples.append((time.monotonic(), rss))
        return rss

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()


def client(
    seed: int, conn: Connection, deadline: float, out: list[Result], bad: list[Kind]
) -> None:
    """Send requests until the deadline: two valid for every malformed one, at random."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        kind = rng.choice(bad) if rng.random() < 1 / 3 else rng.choice(valid_kinds(rng))
        started = time.perf_counter()
        status = conn.send(kind)
        out.append(Result(kind.name, kind.valid, status, kind.want, time.perf_counter() - started))
    conn.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(load: Load, metrics: dict) -> dict:
    """Throughput, latency of valid requests, statuses, memory, CPU and the checks."""
    results, seconds = load.results, load.seconds
    valid = [r for r in results if r.valid]
    latency_ms = [1000 * r.seconds for r in valid if r.status == 200]
    statuses: dict[str, int] = {}
    kinds: dict[str, dict[str, int]] = {}
    kind_ms: dict[str, list[float]] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        per = kinds.setdefault(r.kind, {})
        per[str(r.status)] = per.get(str(r.status), 0) + 1
        kind_ms.setdefault(r.kind, []).append(1000 * r.seconds)
    checks = {
        "every_valid_request_got_200": all(r.status == 200 for r in valid),
        "every_malformed_request_got_its_4xx": all(
            r.status == r.want for r in results if not r.valid
        ),
        "no_5xx": not any(r.status >= 500 for r in results),
        "no_transport_errors": not any(r.status == 0 for r in results),
        "batches_within_max_batch": metrics.get("largest_batch", 0) <= Limits().max_batch,
    }
    return {
        "requests": len(results),
        "valid_requests": len(valid),
        "malformed_requests": len(results) - len(valid),
        "requests_per_s": len(results) / seconds,
        "valid_requests_per_s": len(valid) / seconds,
        "latency_ms_valid": {f"p{q}": percentile(latency_ms, q) for q in (50, 90, 99)}
        | {"max": max(latency_ms, default=float("nan"))},
        "latency_ms_p50_by_kind": {k: percentile(v, 50) for k, v in sorted(kind_ms.items())},
        "statuses": dict(sorted(statuses.items())),
        "by_kind": dict(sorted(kinds.items())),
        "rss_mb": load.rss,
        "cpu_s": {
            "server": load.server_cpu,
            "clients": load.client_cpu,
            "server_ms_per_request": 1000 * load.server_cpu / max(1, len(results)),
        },  # fmt: skip
        "server_metrics": metrics,
        "checks": checks,
        "ok": all(checks.values()),
    }


def rss_summary(samples: list[tuple[float, int]], start: float, end: float) -> dict:
    """RSS in MB at the start of the load, nearest its middle, at its end, and the peak."""
    mid = (start + end) / 2
    middle = min(samples, key=lambda s: abs(s[0] - mid))[1]
    mb = 1 / 2**20
    first, last = samples[0][1], samples[-1][1]
    return {
        "start": first * mb, "middle": middle * mb, "end": last * mb,
        "peak": max(s[1] for s in samples) * mb, "end_minus_start": (last - first) * mb,
        "samples": len(samples),
    }  # fmt: skip


def print_table(summary: dict, config: dict) -> None:
    lat, rss, cpu = summary["latency_ms_valid"], summary["rss_mb"], summary["cpu_s"]
    rows = [
        ("clients x seconds", f"{config['clients']} x {config['seconds']:.0f}"),
        ("requests (valid / malformed)",
         f"{summary['requests']} ({summary['valid_requests']} / {summary['malformed_requests']})"),
        ("requests/s (valid)",
         f"{summary['requests_per_s']:.1f} ({summary['valid_requests_per_s']:.1f})"),
        ("valid latency p50 / p90 / p99 ms",
         f"{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} (max {lat['max']:.0f})"),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in summary["statuses"].items())),
        ("server RSS MB start / mid / end",
         f"{rss['start']:.0f} / {rss['middle']:.0f} / {rss['end']:.0f} (peak {rss['peak']:.0f})"),
        ("CPU s server / clients",
         f"{cpu['server']:.1f} / {cpu['clients']:.1f} "
         f"({cpu['server_ms_per_request']:.1f} server ms a request)"),
        ("host load average before / after",
         " / ".join(f"{config[k][0]:.1f}" for k in ("load_average_before", "load_average_after"))),
    ]  # fmt: skip
    rows += [(name, "yes" if passed else "NO") for name, passed in summary["checks"].items()]
    width = max(len(r[0]) for r in rows)
    print(f"\nscalelab serve under load ({MODEL}: gpt-d1, byte tokenizer)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("\nby kind: status: count, p50 latency")
    for kind, counts in summary["by_kind"].items():
        shown = ", ".join(f"{k}: {v}" for k, v in counts.items())
        print(f"  {kind:<24} {shown:<12} {summary['latency_ms_p50_by_kind'][kind]:>7.0f} ms")


def warm_up(server: ServeProcess) -> None:
    """One of each valid request, untimed: first calls load what they need."""
    conn = Connection(server.host, server.port)
    for kind in valid_kinds(random.Random(0)):
        assert conn.send(kind) == 200, f"warm-up {kind.name} failed"
    conn.close()


def apply_load(server: ServeProcess, seconds: float, clients: int) -> Load:
    """`clients` threads sending the mix for `seconds`, the server's memory sampled."""
    monitor = Monitor(server.proc.pid)
    monitor.sample()
    cpu_before, client_before = monitor.cpu_seconds(), time.process_time()
    started = time.monotonic()
    results: list[Result] = []
    bad = malformed_kinds()
    workers = [
        threading.Thread(
            target=client,
            args=(i, Connection(server.host, server.port), started + seconds, results, bad),
        )
        for i in range(clients)
    ]
    monitor.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started  # the deadline plus the requests still in flight
    monitor.done.set()
    monitor.join()
    monitor.sample()
    return Load(
        results, elapsed, rss_summary(monitor.samples, started, started + elapsed),
        monitor.cpu_seconds() - cpu_before, time.process_time() - client_before,
    )  # fmt: skip


def run(seconds: float, clients: int, threads: int, start_timeout: float) -> tuple[dict, dict]:
    """(summary, config) of one load test against a fresh server."""
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp) / "model"
        build_model(folder)
        server = ServeProcess(folder, Path(tmp) / "serve.log", name=MODEL, threads=threads)
        try:
            server.wait(start_timeout)
            warm_up(server)
            load_before = os.getloadavg()
            load = apply_load(server, seconds, clients)
            metrics = server.get_json("/metrics")
        finally:
            server.stop()
    config = {
        "seconds": load.seconds, "clients": clients, "server_threads": threads,
        "model": "gpt-d1", "cpus": os.cpu_count(), "nice": os.nice(0),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
    }  # fmt: skip
    return summarize(load, metrics), config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--quick", action="store_true", help="5 s (a smoke test)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="server start, s")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else args.seconds
    summary, config = run(seconds, args.clients, args.threads, args.start_timeout)
    print_table(summary, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"config": config, **summary})
    print(f"\nwrote {args.out}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
