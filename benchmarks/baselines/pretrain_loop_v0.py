"""The pretraining loop: lean, deterministic, resumable (nanoGPT-style).

Determinism without saving RNG state: the batch at step s is drawn from a generator
seeded by (seed, s), and dropout's RNG is reseeded the same way, so a run resumed from a
checkpoint at step s replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from scalelab.data.lm_tokens import prepare_lm_data
from scalelab.engine.devices import prepare_device
from scalelab.engine.optim import decay_groups
from scalelab.errors import ScalelabError
from scalelab.eval.lm import sliding_window_score
from scalelab.methods.base import RunContext, RunResult
from scalelab.models.build import build_causal_lm, count_params, load_tokenizer_for

from .checkpoint_v0 import load_checkpoint, save_checkpoint, save_pretrained_atomic


def lr_at(step: int, total: int, p) -> float:
    """Linear warmup over warmup_frac of the steps, then cosine decay to min_lr_ratio * lr."""
    warmup = max(1, int(p.warmup_frac * total))
    if step < warmup:
        return p.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return p.lr * (p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def get_batch(ids: torch.Tensor, batch: int, seq_len: int, seed: int, step: int):
    """(x, y) int64 [batch, seq_len]: random windows, y shifted by one, fixed by (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=g)
    x = torch.stack([ids[s : s + seq_len] for s in starts.tolist()]).long()
    y = torch.stack([ids[s + 1 : s + seq_len + 1] for s in starts.tolist()]).long()
    return x, y


def make_optimizer(model: torch.nn.Module, p) -> torch.optim.Optimizer:
    """Fused AdamW (multi-tensor where a build lacks the fused kernel), matrices decayed."""
    groups = decay_groups(model, p.weight_decay)
    kwargs = {"lr": p.lr, "betas": (p.beta1, p.beta2)}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def _peak_mb(device: torch.device, current: float) -> float:
    if device.type == "cuda":
        return max(current, torch.cuda.max_memory_allocated() / 2**20)
    return max(current, psutil.Process().memory_info().rss / 2**20)


def make_loss_fn(model: torch.nn.Module, dtype: str = "fp32", compile: bool = False):
    """`loss(x, y)`: mean next-token cross-entropy (nats) of int64 [batch, seq] tensors.

    Compiling the model and the loss together is what pays on CPU (1.4-1.7x); compiling the
    model alone helps little at small sizes. `use_cache=False`: training needs no KV cache.
    """
    device_type = next(model.parameters()).device.type
    amp = torch.autocast(device_type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with amp:
            logits = model(input_ids=x, use_cache=False).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

    return torch.compile(loss_fn) if compile else loss_fn


def train_step(model, optimizer, loss_fn, x, y, lr: float, grad_clip: float) -> float:
    """One AdamW step at learning rate `lr`; returns the batch loss (nats/token)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_fn(x, y)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _setup(ctx: RunContext):
    """Data, model, optimizer and loop state (restored from a checkpoint when one exists)."""
    task, p, rt = ctx.task, ctx.params, ctx.runtime
    device = prepare_device(rt)
    ladder = ctx.model.kind == "ladder"
    data = prepare_lm_data(task, tokenizer=None if ladder else load_tokenizer_for(ctx.model))
    # v0 held every split in memory as int64 tensors (token files are memory maps now)
    data.ids = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in data.ids.items()}
    T, B = task.seq_len, p.batch_size
    if p.tokens < B * T:
        raise ScalelabError(f"params.tokens ({p.tokens}) is smaller than one batch ({B}x{T})")
    if len(data.ids["train"]) <= T + 1:
        raise ScalelabError(f"task.dataset {task.dataset!r}: training split shorter than seq_len")
    torch.manual_seed(ctx.seed)
    model = build_causal_lm(ctx.model, data.vocab_size, T, dropout=p.dropout).to(device)
    model.train()
    optimizer = make_optimizer(model, p)
    fresh = {"step": 0, "losses": [], "curve": [], "train_s": 0.0, "wall_s": 0.0, "peak_mb": 0.0}
    state = load_checkpoint(ctx.run_dir / "checkpoint", model, optimizer) or fresh
    return data, model, optimizer, state, device


def run(ctx: RunContext) -> RunResult:
    """Train ctx.model on ctx.task for ctx.params.tokens tokens; returns metrics and curve."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own display shows progress; keep logs clean
    task, p, rt = ctx.task, ctx.params, ctx.runtime
    seg_start = time.perf_counter()  # wall time counts data preparation too
    data, model, optimizer, state, device = _setup(ctx)
    T, B = task.seq_len, p.batch_size
    total_steps = p.tokens // (B * T)
    eval_every = p.eval_every or max(1, total_steps // 10)
    loss_fn = make_loss_fn(model, p.dtype, rt.compile)
    last_ckpt = time.perf_counter()
    while state["step"] < total_steps:
        step, t0 = state["step"], time.perf_counter()
        x, y = get_batch(data.ids["train"], B, T, ctx.seed, step)
        torch.manual_seed(ctx.seed * 7919 + step)  # dropout noise, replayable after resume
        lr = lr_at(step, total_steps, p)
        state["losses"].append(
            train_step(model, optimizer, loss_fn, x.to(device), y.to(device), lr, p.grad_clip)
        )
        state["train_s"] += time.perf_counter() - t0
        state["step"] = step = step + 1
        ctx.report({"step": step, "total": total_steps, "loss": state["losses"][-1]})
        if step % eval_every == 0 or step == total_steps:
            recent = state["losses"][-eval_every:]
            val = sliding_window_score(
                model, data.ids["validation"], T, stride=T, max_tokens=p.eval_tokens
            )
            state["curve"].append(
                {
                    "step": step,
                    "tokens": step * B * T,
                    "train_loss": sum(recent) / len(recent),
                    "val_loss": val.loss,
                }
            )
            state["peak_mb"] = _peak_mb(device, state["peak_mb"])
        due = (rt.checkpoint_every_steps and step % rt.checkpoint_every_steps == 0) or (
            time.perf_counter() - last_ckpt > rt.checkpoint_every_s
        )
        if due and step < total_steps:
            state["wall_s"] += time.perf_counter() - seg_start
            seg_start = last_ckpt = time.perf_counter()
            save_checkpoint(ctx.run_dir / "checkpoint", model, optimizer, state)
    state["wall_s"] += time.perf_counter() - seg_start
    return _finish(ctx, model, data, state, device, total_steps)


def _finish(ctx, model, data, state, device, total_steps: int) -> RunResult:
    """Final sliding-window evaluation, the saved model folder, and the metrics."""
    task, p = ctx.task, ctx.params
    t0 = time.perf_counter()
    window = task.eval.window or task.seq_len
    amp = torch.bfloat16 if p.dtype == "bf16" else None
    score = {
        split: sliding_window_score(
            model,
            data.ids[split],
            window,
            task.eval.stride,
            task.eval.max_tokens,
            autocast_dtype=amp,
        )
        for split in ("validation", "test")
    }
    save_pretrained_atomic(ctx.run_dir / "model", model, data.tokenizer)
    non_emb, total = count_params(model)
    losses = state["losses"]
    tail = losses[-max(1, len(losses) // 10) :]
    test_tokens = score["test"].n_tokens
    # bits/byte over the bytes actually scored (all of them unless eval.max_tokens caps it).
    test_bytes = data.n_bytes["test"] * test_tokens / max(len(data.ids["test"]) - 1, 1)
    metrics = {
        "non_embedding_params": non_emb,
        "total_params": total,
        "tokens": total_steps * p.batch_size * task.seq_len,
        "train_loss": sum(tail) / len(tail),
        "val_loss": score["validation"].loss,
        "val_ppl": score["validation"].ppl,
        "test_loss": score["test"].loss,
        "test_ppl": score["test"].ppl,
        "bits_per_byte": score["test"].bits_per_byte(round(test_bytes)),
        "tokens_per_s": total_steps * p.batch_size * task.seq_len / max(state["train_s"], 1e-9),
        "peak_mem_mb": _peak_mb(device, state["peak_mb"]),
        "wall_s": state["wall_s"] + time.perf_counter() - t0,
        "vocab_size": data.vocab_size,
        "steps": total_steps,
    }
    return RunResult(metrics=metrics, curve=state["curve"])
