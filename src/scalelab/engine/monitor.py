"""What the engine records inside a run: monitor points and events.

A *monitor point* is taken after optimizer step s (1-based: s steps done) when s is a
multiple of `every` (runtime.monitor_every; unset: `resolve_every`, at most about
MONITOR_POINTS points per run), at every epoch end and at the last step. It holds (keys of the curve row at step s):

- `lr/<i>`: the learning rate parameter group i used for step s (groups as
  `engine/optim.py` makes them, sorted by lr multiplier, then weight-decay multiplier, then
  decayed; so `lr/0` is the base rate unless a group has a multiplier below 1);
- `grad_norm`: the global L2 norm of the gradients before clipping (the one clipping used,
  not computed twice), `clipped`: 1 when it exceeded `grad_clip` (so clipping scaled), else
  0; `grad_norm/<layer>` and `weight_norm/<layer>` per layer (`layer_of`): the L2 norm over
  that layer's parameters (a frozen layer's gradient norm is 0), weights after the update;
- `step_loss`: the training loss of step s (the curve's `train_loss` is the mean since the
  last evaluation), `tokens_per_s` / `examples_per_s` over the steps since the last point;
- memory in MiB: `mem/rss_mb` and `mem/peak_rss_mb` (this process, psutil / getrusage) on a
  CPU; `mem/allocated_mb`, `mem/reserved_mb`, `mem/peak_allocated_mb` (torch.cuda) on a GPU;
- system: `sys/cpu_percent` (this process since the last point, psutil; 100 = one core),
  `sys/gpu_util` (NVML through torch, when nvidia-ml-py is installed), `sys/disk_used_pct`
  (the file system of the run folder); `epoch_s`: seconds of training of the epoch that
  ended at s, at epoch ends.

*Events* are checked at every step: `loss_spike` when the step's loss exceeds
SPIKE_FACTOR x the median of the previous SPIKE_WINDOW steps' losses and that median by at
least SPIKE_MIN_NATS (early in a run the window is what there is, from SPIKE_MIN_HISTORY
steps on); `nonfinite_grad_norm` when the global gradient norm (computed at every step
when clipping is on, else at monitor points) is NaN or infinite (an fp16 run's scaler
then skips the step; in fp32 the weights go bad and the run fails).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MONITOR_POINTS = 100  # auto cadence: at most about this many points per run,
MIN_EVERY = 10  # and at least this many steps apart (benchmarks/monitor_overhead.py)
SPIKE_WINDOW = 20
SPIKE_MIN_HISTORY = 3
SPIKE_FACTOR = 2.0
SPIKE_MIN_NATS = 0.5
EVENT_KINDS = ("loss_spike", "nonfinite_grad_norm")
EVENTS_FILE = "events.json"  # in the run folder: every event of the run, also when it failed
# Point keys that measure the machine rather than the training (they differ between two
# runs of one config; everything else replays exactly on resume).
MACHINE_KEYS = ("mem/", "sys/", "tokens_per_s", "examples_per_s", "epoch_s")

_BLOCK = re.compile(r"(?:^|\.)(?:h|layer|layers|block|blocks)\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(?:wte|wpe|embed\w*)(?:\.|$)")
_HEAD = re.compile(
    r"(?:^|\.)(?:lm_head|ln_f|classifier|pre_classifier|pooler|score|head|final_layer_norm"
    r"|norm)(?:\.|$)"
)


def layer_of(name: str) -> str:
    """The layer a parameter belongs to, from its name: `block.<i>` for transformer block i
    (GPT-2 `transformer.h.<i>.`, BERT/MPNet `encoder.layer.<i>.`, DistilBERT
    `transformer.layer.<i>.`, and the same inside peft/LoRA's `base_model.model.` names),
    `embed` (wte, wpe, `embeddings.*`, `embed_tokens`), `head` (lm_head, the final norm
    ln_f, classifier, pooler, score) or `other` (e.g. MPNet's shared relative-attention
    bias)."""
    m = _BLOCK.search(name)
    if m:
        return f"block.{int(m.group(1))}"
    if _EMBED.search(name):
        return "embed"
    return "head" if _HEAD.search(name) else "other"


def layer_groups(names: Iterable[str]) -> dict[str, list[int]]:
    """layer -> indices into `names` of its parameters, layers ordered embed, block.0,
    block.1, ..., head, other (those present)."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(layer_of(n), []).append(i)
    return {k: groups[k] for k in sorted(groups, key=layer_rank)}


def layer_rank(layer: str) -> tuple[int, int, str]:
    """Sort key of a layer in model order: embed, block.0, block.1, ... (numerically, so
    block.10 follows block.9), head, then anything else by name."""
    if layer.startswith("block."):
        idx = layer[6:]
        return 1, int(idx) if idx.isdigit() else 0, layer
    return {"embed": 0, "head": 2}.get(layer, 3), 0, layer


def resolve_every(every: int | None, total_steps: int) -> int:
    """Steps between monitor points: `every` when given (0: monitoring off), else
    max(MIN_EVERY, total_steps // MONITOR_POINTS)."""
    if every is not None:
        return every
    return max(MIN_EVERY, total_steps // MONITOR_POINTS)


def loss_spike(loss: float, previous: Sequence[float]) -> float | None:
    """The median of the last SPIKE_WINDOW of `previous` losses when `loss` is a spike over
    it (see the module docstring), else None (also with fewer than SPIKE_MIN_HISTORY
    losses: early in a run the window is what there is, so a blow-up in the first steps,
    the usual sign of too high a learning rate, is caught too)."""
    if len(previous) < SPIKE_MIN_HISTORY or not math.isfinite(loss):
        return None
    med = statistics.median(previous[-SPIKE_WINDOW:])
    return med if loss > SPIKE_FACTOR * med and loss - med >= SPIKE_MIN_NATS else None


def events_file(run_id: str) -> str:
    """A run's events file as the user finds it from the output folder."""
    return f"runs/{run_id}/{EVENTS_FILE}"


def event(step: int, kind: str, value: float, **more: Any) -> dict[str, Any]:
    """An event as stored (JSON): step, kind, value (a string for NaN/inf), extra fields."""
    shown = value if math.isfinite(value) else str(value)
    return {"step": int(step), "kind": kind, "value": shown, **more}


def event_counts(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Run metrics from an event list: `loss_spikes` and `nonfinite_grad_norms` counts."""
    return {
        "loss_spikes": sum(e["kind"] == "loss_spike" for e in events),
        "nonfinite_grad_norms": sum(e["kind"] == "nonfinite_grad_norm" for e in events),
    }


def events_note(metrics: Mapping[str, Any], where: str = "") -> str:
    """The events part of a run's summary line from its metrics, e.g. "events: 2 loss
    spikes, 1 non-finite grad norm (runs/<id>/events.json)" with `where` the path; "" when
    there were none."""
    parts = []
    for key, word in (("loss_spikes", "loss spike"), ("nonfinite_grad_norms",
                                                      "non-finite grad norm")):  # fmt: skip
        n = metrics.get(key) or 0
        if isinstance(n, (int, float)) and n > 0:
            parts.append(f"{int(n)} {word}{'s' if n != 1 else ''}")
    if not parts:
        return ""
    return f"events: {', '.join(parts)}" + (f" ({where})" if where else "")


def events_text(events: Sequence[Mapping[str, Any]], n: int = 3) -> str:
    """The first `n` events as words: "loss spike at step 40 (5.1 vs median 2.3), non-finite
    grad norm at step 41 (nan)"; with "+k more" when there are more."""
    words = []
    for e in events[:n]:
        if e["kind"] == "loss_spike":
            words.append(f"loss spike at step {e['step']} ({e['value']:.4g} vs median "
                         f"{e['median']:.4g})")  # fmt: skip
        else:
            words.append(f"non-finite grad norm at step {e['step']} ({e['value']})")
    more = f", +{len(events) - n} more" if len(events) > n else ""
    return ", ".join(words) + more


def merge_points(curve: Sequence[Mapping[str, Any]], points: Sequence[Mapping[str, Any]]):
    """`curve` with the monitor `points` merged in by step (a point's keys join the curve
    row at its step, or make a row of their own), sorted by step; the curve's own values
    win where both have a key (e.g. `tokens`)."""
    rows: dict[int, dict[str, Any]] = {}
    for p in points:
        rows.setdefault(int(p["step"]), {}).update(p)
    for c in curve:
        rows.setdefault(int(c["step"]), {}).update(c)
    return [rows[s] for s in sorted(rows)]


class Monitor:
    """Takes the monitor points of one run (rank 0 only; see the module docstring).

    module: the trained torch module (every parameter is watched, frozen ones too);
    every: steps between points (>= 1); plan: the run's Plan (total steps, steps per
    epoch); run_dir: the run folder (its file system's disk use is recorded); state: the
    loop state (the first throughput window starts at its tokens, examples and train_s)."""

    def __init__(self, module, every: int, plan, run_dir, state: Mapping[str, Any]) -> None:
        import psutil
        import torch

        named = list(module.named_parameters())
        self.params = [q for _, q in named]
        self.layers = layer_groups(n for n, _ in named)
        where = {i: k for k, (_, idx) in enumerate(self.layers.items()) for i in idx}
        device = self.params[0].device if self.params else torch.device("cpu")
        self.index = torch.tensor([where[i] for i in range(len(named))], device=device)
        self.every, self.total, self.epoch_steps = every, plan.total_steps, plan.epoch_steps
        self.run_dir = run_dir
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)  # the first call starts the window
        # tokens, examples, train_s at the last point
        self.mark = (state["tokens"], state["examples"], state["train_s"])

    def due(self, step: int) -> bool:
        """Whether a point is taken after step `step` (1-based)."""
        epoch_end = bool(self.epoch_steps) and step % self.epoch_steps == 0
        return step % self.every == 0 or step == self.total or epoch_end

    def _norms(self, tensors: Sequence[Any]) -> list[float]:
        """L2 norm per layer (in `self.layers` order) of `tensors` (one per parameter; None
        counts as zeros), summed in float64; one host-device transfer."""
        import torch

        have = [i for i, t in enumerate(tensors) if t is not None]
        sq = torch.zeros(len(self.layers), dtype=torch.float64, device=self.index.device)
        if have:
            norms = torch._foreach_norm([tensors[i].detach() for i in have])
            stacked = torch.stack([n.to(torch.float64) for n in norms]) ** 2
            sq.index_add_(0, self.index[have], stacked)
        return sq.sqrt().tolist()

    def grad_norms(self) -> dict[str, float]:
        """`grad_norm/<layer>` of the current gradients, and `grad_norm` (their global norm,
        the root of the layers' sum of squares). Call after backward, before clipping."""
        per = self._norms([q.grad for q in self.params])
        out = {f"grad_norm/{k}": v for k, v in zip(self.layers, per, strict=True)}
        return {"grad_norm": math.sqrt(sum(v * v for v in per)), **out}

    def point(self, step: int, loss: float, grads: Mapping[str, float], state, opt) -> dict:
        """The monitor point after step `step` (1-based), weights after its update.

        grads: `grad_norms()` of this step with `grad_norm` replaced by the norm clipping
        used (when it ran) and `clipped` added; non-finite values are stored as None (the
        event list has them). state: the loop state (tokens, examples, train_s)."""
        p: dict[str, Any] = {"step": step, "tokens": state["tokens"] or state["examples"]}
        p.update({f"lr/{i}": g["lr"] for i, g in enumerate(opt.param_groups)})
        p.update({k: (v if math.isfinite(v) else None) for k, v in grads.items()})
        weights = self._norms(self.params)
        p.update({f"weight_norm/{k}": v for k, v in zip(self.layers, weights, strict=True)})
        p["step_loss"] = loss if math.isfinite(loss) else None
        now = (state["tokens"], state["examples"], state["train_s"])
        if now[2] > self.mark[2]:
            dt = now[2] - self.mark[2]
            if now[0] > self.mark[0]:
                p["tokens_per_s"] = (now[0] - self.mark[0]) / dt
            if now[1] > self.mark[1]:
                p["examples_per_s"] = (now[1] - self.mark[1]) / dt
        self.mark = now
        if self.epoch_steps and step % self.epoch_steps == 0:
            p["epoch_s"] = state["train_s"] - state.get("epoch_mark_s", 0.0)
            state["epoch_mark_s"] = state["train_s"]
        p.update(self.system())
        return p

    def system(self) -> dict[str, float]:
        """Memory (MiB), process CPU percent since the last call, GPU utilisation (NVML,
        when available) and the run folder's disk use (percent)."""
        import psutil
        import torch

        out: dict[str, float] = {}
        if self.index.device.type == "cuda":
            mib = 2**20
            out["mem/allocated_mb"] = torch.cuda.memory_allocated() / mib
            out["mem/reserved_mb"] = torch.cuda.memory_reserved() / mib
            out["mem/peak_allocated_mb"] = torch.cuda.max_memory_allocated() / mib
            try:
                out["sys/gpu_util"] = float(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 - no NVML (nvidia-ml-py) here
                pass
        else:
            out["mem/rss_mb"] = self.proc.memory_info().rss / 2**20
            # two sources (getrusage, psutil) sampled apart: the peak is never below now
            out["mem/peak_rss_mb"] = max(_peak_rss_mb(), out["mem/rss_mb"])
        out["sys/cpu_percent"] = self.proc.cpu_percent(None)
        out["sys/disk_used_pct"] = psutil.disk_usage(str(self.run_dir)).percent
        return out


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (getrusage; KiB on Linux, bytes on
    macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
