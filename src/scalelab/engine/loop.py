"""The one training loop: every method is a Recipe (engine/recipe.py) run by `train`.

Determinism without saving RNG state: a recipe's batch at step s is a function of
(seed, s), and dropout's RNG is reseeded from (seed, s) before every step, so a run resumed
from a checkpoint at step s replays exactly what an uninterrupted run would have done.
Under DDP (torchrun) each rank takes its equal share of the same global batch and the
gradients are averaged, so the update equals the single-process one up to summation order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from scalelab.engine import distributed
from scalelab.engine import monitor as mon
from scalelab.engine.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from scalelab.engine.devices import prepare_device
from scalelab.engine.optim import make_optimizer
from scalelab.engine.precision import grad_scaler
from scalelab.engine.recipe import Phase, Plan, Recipe
from scalelab.engine.schedules import lr_at
from scalelab.errors import ScalelabError


def split_batch(batch: Any, parts: int) -> list[Any]:
    """`batch` cut into `parts` consecutive pieces along the first dimension (tensors,
    numpy arrays and lists; tuples, lists and dicts of them cut element-wise)."""
    if parts == 1:
        return [batch]
    if isinstance(batch, dict):
        cut = {k: split_batch(v, parts) for k, v in batch.items()}
        return [{k: cut[k][i] for k in batch} for i in range(parts)]
    if isinstance(batch, tuple):
        cut = [split_batch(v, parts) for v in batch]
        return [tuple(c[i] for c in cut) for i in range(parts)]
    n = len(batch)
    if n < parts:
        raise ScalelabError(f"a batch of {n} examples cannot be split into {parts} parts")
    bounds = [n * i // parts for i in range(parts + 1)]
    return [batch[bounds[i] : bounds[i + 1]] for i in range(parts)]


def first_nonfinite(
    metrics: Mapping[str, Any], curve: Sequence[Mapping[str, Any]] = ()
) -> str | None:
    """Where the first NaN or infinite number of a result is, as words ("test_loss is nan",
    "val_loss is inf at step 20 of the curve"), or None when every number is finite.
    None (not measured), strings and booleans are fine; dicts and lists are searched."""
    found = _nonfinite(metrics)
    if found is not None:
        return found
    for point in curve:
        found = _nonfinite({k: v for k, v in point.items() if k != "step"})
        if found is not None:
            return f"{found} at step {point.get('step')} of the curve"
    return None


def _nonfinite(value: Any, name: str = "") -> str | None:
    if hasattr(value, "item") and not isinstance(value, (Mapping, str, bytes)):
        try:  # numpy scalars, one-element tensors and arrays
            value = value.item()
        except (ValueError, RuntimeError):  # more than one element
            value = value.tolist()
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        finite = isinstance(value, bool) or not isinstance(value, float) or math.isfinite(value)
        return None if finite else f"{name} is {value}"
    for key, v in items:
        found = _nonfinite(v, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def _size(batch: Any) -> int:
    if isinstance(batch, dict):
        return _size(next(iter(batch.values())))
    if isinstance(batch, tuple):
        return _size(batch[0])
    return len(batch)


def _clip_grad_norm(params: list, max_norm: float, cpu: bool):
    """`torch.nn.utils.clip_grad_norm_`, bit for bit, without its no-op multiply: torch
    always scales every gradient by min(1, max_norm / (norm + 1e-6)) to avoid a host-device
    sync, a full pass over the gradients that changes nothing when the factor is 1
    (x * 1.0 == x). On the CPU the test costs nothing, so that pass is skipped. Returns the
    total norm before clipping (a 0-d tensor; read it after the optimizer step is queued)."""
    if not cpu:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    total = torch.nn.utils.get_total_norm([q.grad for q in params if q.grad is not None])
    if not (max_norm / (total + 1e-6)).item() >= 1.0:  # a nan norm scales, as in torch
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def _peak_mb(device: torch.device, current: float) -> float:
    if device.type == "cuda":
        return max(current, torch.cuda.max_memory_allocated() / 2**20)
    import psutil

    return max(current, psutil.Process().memory_info().rss / 2**20)


class _Run:
    """One run's mutable training state around a recipe."""

    def __init__(self, recipe: Recipe, ctx, device: torch.device, plan: Plan) -> None:
        self.r, self.ctx, self.args, self.device, self.plan = recipe, ctx, recipe.args, device, plan
        self.module = plan.model
        self.rank, self.world = distributed.rank_world()
        self.model = distributed.wrap(self.module, device)
        named = dict(self.module.named_parameters())
        self.tracked = [n for n, q in named.items() if q.requires_grad]
        self.scaler = grad_scaler(self.args.dtype, device)
        self.best: dict[str, torch.Tensor] = {}
        self.state: dict[str, Any] = {
            "step": 0, "losses": [], "since_eval": [], "curve": [], "best_value": None,
            "best_step": 0, "bad_evals": 0, "stopped": False, "train_s": 0.0, "wall_s": 0.0,
            "peak_mb": 0.0, "examples": 0, "tokens": 0, "opt_phase": -1, "monitor": [],
            "events": [],
        }  # fmt: skip
        self.opt, self.phase_idx, self.opt_state = None, -1, None
        self.monitor = None  # a mon.Monitor on rank 0 unless runtime.monitor_every is 0 (fit)
        self.norms: tuple[float | None, dict | None] = (None, None)  # of the last step

    # --- phases and optimizer ---

    def phase_at(self, step: int) -> tuple[int, Phase, int]:
        """(index, phase, the phase's first step) of optimizer step `step`."""
        first = 0
        for i, ph in enumerate(self.plan.phases):
            if step < first + ph.steps:
                return i, ph, first
            first += ph.steps
        return len(self.plan.phases) - 1, self.plan.phases[-1], first - self.plan.phases[-1].steps

    def enter_phase(self, idx: int, phase: Phase) -> None:
        names = set(self.tracked if phase.trainable is None else phase.trainable)
        for n, q in self.module.named_parameters():
            q.requires_grad_(n in names)
        self.opt = make_optimizer(self.module, self.args, self.plan.lr_mults, self.plan.wd_mults)
        if self.opt_state is not None and self.state["opt_phase"] == idx:
            self.opt.load_state_dict(self.opt_state)
        self.opt_state, self.phase_idx, self.state["opt_phase"] = None, idx, idx

    # --- checkpoints ---

    def resume(self) -> None:
        """Load the newest good checkpoint (checkpoint.py verifies it against this run's
        steps and model). Rank 0 sets bad ones aside first; the other ranks then find the
        same good one."""
        names = set(self.tracked)
        shapes = {n: tuple(q.shape) for n, q in self.module.named_parameters() if n in names}
        path, total = self.ctx.run_dir / "checkpoint", self.plan.total_steps
        if self.rank == 0:
            loaded = load_checkpoint(path, total, shapes, warn=self.warn)
            distributed.barrier()
        else:
            distributed.barrier()
            loaded = load_checkpoint(path, total, shapes, set_aside=False)
        if loaded is None and self.plan.start_from is not None:
            loaded = self.start_state(total, shapes)
        if loaded is None:
            return
        tensors, self.best, self.opt_state, state = loaded
        params = dict(self.module.named_parameters())
        with torch.no_grad():
            for n, t in tensors.items():
                params[n].copy_(t)
        self.state.update(state)

    def start_state(self, total: int, shapes: dict) -> tuple:
        """The loaded `plan.start_from` checkpoint, its time and throughput counters reset.
        Raises ScalelabError when it is missing or fails a check: it is another run's
        product, so it is never set aside or replaced by a start from scratch."""
        folder = self.plan.start_from
        problems: list[str] = []
        loaded = None
        if (folder / "manifest.json").exists():
            loaded = load_checkpoint(folder, total, shapes, warn=problems.append,
                                     set_aside=False, fall_back=False)  # fmt: skip
        if loaded is None:
            why = problems[0] if problems else f"checkpoint {folder}: not found"
            raise ScalelabError(f"cannot start from {why.split('; ')[0]}")
        state = dict(loaded[3])
        state.update(train_s=0.0, wall_s=0.0, peak_mb=0.0)  # this run's own time from here
        # Tokens and examples keep counting (the curve's x axis goes on from the start
        # point); throughput counts only what this run trains.
        state.update(start_tokens=state["tokens"], start_examples=state["examples"])
        return (*loaded[:3], state)

    def checkpoint(self, folder=None) -> None:
        """The full training state after this step: the run's own resumable checkpoint, or
        (`folder`) a snapshot kept as a product, written once (no `.prev` beside it)."""
        if self.rank == 0:
            params = dict(self.module.named_parameters())
            tensors = {n: params[n] for n in self.tracked}
            save_checkpoint(folder or self.ctx.run_dir / "checkpoint", tensors, self.best,
                            self.opt.state_dict(), self.state, keep_prev=folder is None)  # fmt: skip
        distributed.barrier()

    def save_revision(self, folder) -> None:
        """The model after this step as a product (`plan.revisions`), by the recipe; one
        saved before a resume is kept as it is."""
        if self.rank == 0 and not Path(folder).exists():
            self.r.save_revision(self.module, Path(folder))
        distributed.barrier()

    def warn(self, line: str) -> None:
        """A warning the user must see, sent as an event: the grid's progress display prints
        it with the run's label, a run started alone prints it to stderr."""
        self.ctx.report({"warning": line})

    # --- one optimizer step ---

    def step(self, step: int, phase: Phase, first: int) -> float:
        """Optimizer step `step` (0-based); its mean loss, which may be non-finite (`fit`
        checks). Sets `self.norms`: the global gradient norm before clipping (when
        clipping ran) and the monitor's per-layer norms (at monitor points)."""
        a = self.args
        watch = self.monitor is not None and self.monitor.due(step + 1)
        batch = self.r.batch(step)
        torch.manual_seed(self.ctx.seed * 7919 + step)  # dropout noise, replayable on resume
        for g in self.opt.param_groups:
            g["lr"] = lr_at(a, step - first, phase.steps, a.lr * g["lr_mult"])
        shard = split_batch(batch, self.world)[self.rank] if self.world > 1 else batch
        micro = split_batch(shard, a.grad_accum_steps)
        n, total = len(micro), _size(shard)
        loss_sum = 0.0
        for i, mb in enumerate(micro):
            sync = i == n - 1 or not hasattr(self.model, "no_sync")
            with nullcontext() if sync else self.model.no_sync():
                loss, logs = self.r.loss_step(self.model, mb)
                weight = _size(mb) / total if n > 1 else 1.0
                self.scaler.scale(loss * weight if n > 1 else loss).backward()
            loss_sum += loss.item() * weight
            self.state["examples"] += int(logs.get("examples", 0)) * self.world
            self.state["tokens"] += int(logs.get("tokens", 0)) * self.world
        norm = layers = None
        if a.grad_clip > 0 or watch:
            self.scaler.unscale_(self.opt)  # scaler.step then does not unscale again
        if watch:
            layers = self.monitor.grad_norms()
        if a.grad_clip > 0:
            params = [q for q in self.module.parameters() if q.requires_grad]
            norm = _clip_grad_norm(params, a.grad_clip, self.device.type == "cpu")
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.norms = (None if norm is None else float(norm), layers)
        return distributed.mean(loss_sum) if self.world > 1 else loss_sum

    # --- validation, best weights, early stopping ---

    def on_eval(self, phase: Phase, logger) -> None:
        st, plan = self.state, self.plan
        was = self.model.training
        self.model.eval()
        val = self.r.evaluate(self.module)
        self.model.train(was)
        bad = _nonfinite(val)
        if bad is not None:  # the weights went bad after the last loss was computed
            raise ScalelabError(f"training diverged: validation {bad} at step {st['step']}")
        recent = st["since_eval"]
        point = {"step": st["step"], "tokens": st["tokens"] or st["examples"],
                 "train_loss": sum(recent) / len(recent) if recent else None, **val}  # fmt: skip
        st["curve"].append(point)
        st["since_eval"] = []
        st["peak_mb"] = _peak_mb(self.device, st["peak_mb"])
        logger.log(st["step"], {k: v for k, v in val.items() if isinstance(v, (int, float))})
        if plan.select is None or st["step"] == 0:  # untrained weights are never "best"
            return
        metric, higher = plan.select
        if metric not in val:
            raise ScalelabError(f"evaluation returned no {metric!r} to select weights on")
        v, best = val[metric], st["best_value"]
        if best is None or (v > best if higher else v < best):  # ties keep earlier weights
            st.update(best_value=v, best_step=st["step"], bad_evals=0)
            params = dict(self.module.named_parameters())
            self.best = {n: params[n].detach().clone() for n in self.tracked}
        elif phase.early_stopping:
            st["bad_evals"] += 1
            st["stopped"] = bool(plan.patience and st["bad_evals"] >= plan.patience)

    def fit(self, logger) -> None:
        plan, st, rt = self.plan, self.state, self.ctx.runtime
        total = plan.total_steps
        every = mon.resolve_every(getattr(rt, "monitor_every", None), total)
        if every and self.rank == 0:
            self.monitor = mon.Monitor(self.module, every, plan, self.ctx.run_dir, st)
        last_ckpt = t_seg = time.perf_counter()
        if plan.eval_at_start and st["step"] == 0 and not st["curve"]:
            self.on_eval(self.phase_at(0)[1], logger)  # where the curve starts from
        self.model.train()
        while st["step"] < total and not st["stopped"]:
            idx, phase, first = self.phase_at(st["step"])
            if idx != self.phase_idx:
                self.enter_phase(idx, phase)
            t0 = time.perf_counter()
            loss = self.step(st["step"], phase, first)
            st["train_s"] += time.perf_counter() - t0
            st["step"] = step = st["step"] + 1
            if self.rank == 0:
                self.watch(step, loss, logger)
            if not math.isfinite(loss):
                raise ScalelabError(
                    f"training diverged: the loss is {loss} at step {step}{self.events_note()}"
                )
            st["losses"].append(loss)
            st["since_eval"].append(loss)
            self.ctx.report({"step": step, "total": total, "loss": loss})
            logger.log(step, {"train_loss": loss, "lr": self.opt.param_groups[0]["lr"]})
            if (
                (plan.eval_every and step % plan.eval_every == 0)
                or (plan.epoch_steps and step % plan.epoch_steps == 0)
                or step == total
            ):
                self.on_eval(phase, logger)
            if step in plan.snapshots:
                self.checkpoint(plan.snapshots[step])
            if step in plan.revisions:
                self.save_revision(plan.revisions[step])
            due = (rt.checkpoint_every_steps and step % rt.checkpoint_every_steps == 0) or (
                time.perf_counter() - last_ckpt > rt.checkpoint_every_s
            )
            if due and step < total and not st["stopped"]:
                st["wall_s"] += time.perf_counter() - t_seg
                t_seg = last_ckpt = time.perf_counter()
                self.checkpoint()
        st["wall_s"] += time.perf_counter() - t_seg

    # --- monitoring and events ---

    def watch(self, step: int, loss: float, logger) -> None:
        """Events of step `step` (1-based; before its loss joins `state["losses"]`) and,
        when due, its monitor point (kept in the state, sent to the live loggers)."""
        st, clip = self.state, self.args.grad_clip
        norm, layers = self.norms
        if norm is None and layers is not None:
            norm = layers["grad_norm"]
        new = []
        med = mon.loss_spike(loss, st["losses"])
        if med is not None:
            new.append(mon.event(step, "loss_spike", loss, median=med))
        if norm is not None and not math.isfinite(norm):
            new.append(mon.event(step, "nonfinite_grad_norm", norm))
        if new:
            kinds = {e["kind"] for e in st["events"]}
            st["events"].extend(new)
            self.write_events()
            for e in new:
                if e["kind"] not in kinds:  # the first of each kind, live
                    self.warn(f"{mon.events_text([e])} (all events: {self.events_path})")
                    kinds.add(e["kind"])
        if layers is None:
            return
        grads = {**layers, "grad_norm": norm}
        grads["clipped"] = int(clip > 0 and not clip / (norm + 1e-6) >= 1.0)  # torch's test
        point = self.monitor.point(step, loss, grads, st, self.opt)
        st["monitor"].append(point)
        logger.log(step, {k: v for k, v in point.items() if k != "step"})

    def write_events(self) -> None:
        from scalelab.io import atomic_write_json

        atomic_write_json(self.ctx.run_dir / mon.EVENTS_FILE, self.state["events"])

    def events_note(self) -> str:
        """ " (events: ...)" for an error line, "" when the run had none."""
        events = self.state["events"]
        return f" (events: {mon.events_text(events)}; {self.events_path})" if events else ""

    @property
    def events_path(self) -> str:
        """The events file as the user finds it: `runs/<id>/events.json`."""
        return mon.events_file(self.ctx.run_dir.name)

    def restore_best(self) -> None:
        """Best weights back in place; requires_grad as in the last phase (trainable count)."""
        params = dict(self.module.named_parameters())
        with torch.no_grad():
            for n, t in self.best.items():
                params[n].copy_(t)
        last = self.plan.phases[-1].trainable
        names = set(self.tracked if last is None else last)
        for n, q in params.items():
            q.requires_grad_(n in names)


class _NoLogger:
    active = False

    def log(self, step: int, scalars: dict) -> None:
        pass


def _logger(log_to: list[str], ctx, resume_step: int):
    """runtime.log_to's loggers (TensorBoard, MLflow); nothing imported when there are none.
    A resumed run appends to its logs instead of starting them again."""
    if not log_to:
        return nullcontext(_NoLogger())
    from scalelab.engine.logging import open_run_logger

    return open_run_logger(log_to, ctx.run_dir, ctx.run_id, ctx.config,
                           resume_step=resume_step or None)  # fmt: skip


def train(recipe: Recipe, ctx):
    """Run `recipe` to completion (resuming from `ctx.run_dir/checkpoint` if present);
    returns the recipe's RunResult with the engine's metrics added: steps, wall_s,
    peak_mem_mb, tokens_per_s / examples_per_s when the recipe counts them, and the event
    counts (loss_spikes, nonfinite_grad_norms); the monitor points (engine/monitor.py) are
    merged into its curve by step."""
    t_start = time.perf_counter()  # wall time counts data preparation and loading too
    device = prepare_device(ctx.runtime)
    distributed.init(device.type)
    plan = recipe.setup(device)
    run = _Run(recipe, ctx, device, plan)
    run.resume()
    run.state["wall_s"] += time.perf_counter() - t_start
    rank0 = run.rank == 0
    log_to = ctx.runtime.log_to if rank0 else []
    try:
        with _logger(log_to, ctx, run.state["step"]) as logger:
            run.fit(logger)
            t_fin = time.perf_counter()
            run.restore_best()
            result = recipe.finish(run.module, run.state) if rank0 else None
            if result is not None and logger.active:  # the table's numbers end the live logs
                last = {k: v for k, v in (result.curve or [{}])[-1].items() if k != "step"}
                numbers = {k: v for k, v in {**last, **result.metrics}.items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}  # fmt: skip
                logger.log(run.state["step"], numbers)
    except Exception as err:
        # A failed run keeps the curve it got so far (the grid stores it with the failed
        # row): where the loss went, and the monitor points up to the fault.
        err.curve = mon.merge_points(list(run.state["curve"]), run.state["monitor"])  # type: ignore[attr-defined]
        raise
    distributed.barrier()
    if not rank0:
        return None
    st = run.state
    m = result.metrics
    m["steps"] = st["step"]
    tokens = st["tokens"] - st.get("start_tokens", 0)  # trained by this run (start_from)
    examples = st["examples"] - st.get("start_examples", 0)
    if tokens:
        m["tokens_per_s"] = tokens / max(st["train_s"], 1e-9)
    if examples:
        m["examples_per_s"] = examples / max(st["train_s"], 1e-9)
    m["peak_mem_mb"] = _peak_mb(device, st["peak_mb"])
    m["wall_s"] = st["wall_s"] + time.perf_counter() - t_fin
    m.update(mon.event_counts(st["events"]))
    result.curve = mon.merge_points(result.curve, st["monitor"])
    bad = first_nonfinite(m, result.curve)
    if bad is not None:  # never stored as done; the checkpoint stays for a post-mortem
        raise ScalelabError(f"non-finite result: {bad}")
    remove_checkpoint(ctx.run_dir / "checkpoint")
    return result
