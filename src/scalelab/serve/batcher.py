"""Request batching for `scalelab serve`.

Handlers queue jobs; one worker thread, the only one to touch the model and its tokenizer
(neither is thread-safe), takes a job, waits up to `max_wait` seconds for more (up to
`max_batch` prompts) and runs all scoring, then all generation, in backend calls of at most
`max_batch` prompts each, so no request, however many prompts it carries, makes a larger
forward pass. A job whose batch fails is retried alone, so one bad request fails only itself.
A job whose client gave up (its future cancelled) is dropped before it costs anything.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Job:
    kind: str  # "score" (texts) or "generate" (GenRequests)
    items: list
    top_k: int = 0
    future: Future = field(default_factory=Future)


class Batcher:
    """Gathers jobs arriving within `max_wait` seconds into one backend call per kind."""

    def __init__(self, backend: Any, max_batch: int = 32, max_wait: float = 0.005) -> None:
        self.backend, self.max_batch, self.max_wait = backend, max(1, max_batch), max_wait
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.stats: Counter[str] = Counter()
        threading.Thread(target=self._loop, name="scalelab-batcher", daemon=True).start()

    def submit(self, kind: str, items: list, top_k: int = 0) -> Future:
        job = _Job(kind, items, top_k)
        self.queue.put(job)
        return job.future

    def _gather(self) -> list[_Job]:
        jobs = [self.queue.get()]
        size, deadline = len(jobs[0].items), time.monotonic() + self.max_wait
        while size < self.max_batch and (left := deadline - time.monotonic()) > 0:
            try:
                jobs.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
            size += len(jobs[-1].items)
        # Marking a future running makes it uncancellable, so set_result below cannot fail
        # (which would end this thread and hang the server); a cancelled one is skipped.
        return [j for j in jobs if j.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while True:
            jobs = self._gather()
            for kind in ("score", "generate"):
                group = [j for j in jobs if j.kind == kind]
                if group:
                    self._run(kind, group)

    def _call(self, kind: str, items: list, top_k: int) -> list:
        """The backend's answers for `items`, asked `max_batch` items at a time."""
        out: list = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            if kind == "score":
                out += self.backend.token_scores(chunk, top_k=top_k, token_text=True)
            else:
                out += self.backend.generate_full(chunk)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(chunk))
        return out

    def _run(self, kind: str, group: list[_Job]) -> None:
        flat = [x for j in group for x in j.items]
        try:
            results = self._call(kind, flat, max(j.top_k for j in group))
        except Exception as exc:
            if len(group) > 1:  # find the bad job: the others still get their answers
                for job in group:
                    self._run(kind, [job])
                return
            group[0].future.set_exception(exc)
            return
        self.stats["prompts"] += len(flat)
        pos = 0
        for job in group:
            job.future.set_result(results[pos : pos + len(job.items)])
            pos += len(job.items)
