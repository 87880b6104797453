"""Losses as swappable functions of logits (torchtune keeps its losses as modules apart from
its recipes; so do we): next-token cross-entropy and knowledge distillation.

Shapes: logits [..., V] (any leading dims, e.g. [batch, seq, V]), labels [...] int64. All
losses are means over the positions (nats per token), computed in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Combine = Literal["mean", "sum_kl"]


@dataclass(frozen=True)
class TeacherTarget:
    """One teacher's softened distribution over the vocabulary at every position.

    logp: log-probabilities at temperature T, [..., V] (dense) or [..., k] (top-k);
    index: None (dense) or the top-k token ids, [..., k] int64; log_rest: None (dense) or
    the log of the probability mass outside the top k, [...] (-inf when there is none)."""

    logp: torch.Tensor
    index: torch.Tensor | None = None
    log_rest: torch.Tensor | None = None


def teacher_target(logits: torch.Tensor, temperature: float, top_k: int | None = None):
    """A TeacherTarget from a teacher's logits [..., V]: log_softmax(logits / T), all of it
    or its top `top_k` entries plus the leftover mass (computed in fp32, no gradient)."""
    with torch.no_grad():
        logp = F.log_softmax(logits.float() / temperature, dim=-1)
        if top_k is None or top_k >= logp.size(-1):
            return TeacherTarget(logp)
        top, index = logp.topk(top_k, dim=-1)
        rest = (1.0 - top.exp().sum(-1)).clamp_min(0.0)
        return TeacherTarget(top, index, torch.log(rest))


def _kl(target: TeacherTarget, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position, [...]: over V tokens (dense), or over the k tokens plus one
    "rest" category holding the mass outside them (top-k; exact when that mass is 0)."""
    if target.index is None:
        return (target.logp.exp() * (target.logp - log_q)).sum(-1)
    q_top = log_q.gather(-1, target.index)
    q_rest = torch.log((1.0 - q_top.exp().sum(-1)).clamp_min(1e-12))
    p_rest = target.log_rest.exp()
    rest = torch.where(p_rest > 0, p_rest * (target.log_rest.clamp_min(-1e4) - q_rest), 0.0)
    return (target.logp.exp() * (target.logp - q_top)).sum(-1) + rest


def kd_divergence(
    student: torch.Tensor,
    teachers: Sequence[torch.Tensor | TeacherTarget],
    temperature: float,
    weights: Sequence[float] | None = None,
    combine: Combine = "mean",
) -> torch.Tensor:
    """T^2 * KL(p_teacher^T || p_student^T), mean over positions (Hinton et al. 2015,
    "Distilling the Knowledge in a Neural Network", Sec. 2: p^T = softmax(z / T); the T^2
    factor keeps the soft targets' gradient scale independent of T).

    Several teachers, weights w (normalised to sum 1; equal by default):
    - combine="mean": one KL to the mixture m = sum_k w_k p_k^T (distilling an ensemble's
      averaged predictions, as in Hinton et al. Sec. 2);
    - combine="sum_kl": sum_k w_k KL(p_k^T || p_S^T).
    The two differ by sum_k w_k KL(p_k || m), the teachers' generalised Jensen-Shannon
    divergence, which does not depend on the student: their gradients are the same, only
    the reported value differs ("mean" reads 0 when the student matches the ensemble).
    Top-k targets (cached teacher outputs, `teacher_target(..., top_k)`) are always summed:
    a mixture of distributions over different token sets is not formed.

    student: [..., V] logits; each teacher: logits [..., V] (the same vocabulary) or a
    TeacherTarget at this temperature; returns a 0-d tensor.
    """
    if not teachers:
        raise ValueError("kd_divergence needs at least one teacher")
    if combine not in ("mean", "sum_kl"):
        raise ValueError(f"unknown combine {combine!r} (mean or sum_kl)")
    k = len(teachers)
    w = torch.tensor(weights if weights is not None else [1.0] * k, dtype=torch.float32)
    w = (w / w.sum()).tolist()
    targets = [t if isinstance(t, TeacherTarget) else teacher_target(t, temperature)
               for t in teachers]  # fmt: skip
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    dense = all(t.index is None for t in targets)
    if combine == "mean" and dense and k > 1:
        stacked = torch.stack([t.logp + math.log(wi) for t, wi in zip(targets, w, strict=True)])
        kl = _kl(TeacherTarget(torch.logsumexp(stacked, dim=0)), log_q)
    else:
        kl = sum(wi * _kl(t, log_q) for t, wi in zip(targets, w, strict=True))
    return kl.mean() * temperature**2


def kd_loss(
    student: torch.Tensor,
    teachers: Sequence[torch.Tensor],
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    weights: Sequence[float] | None = None,
    combine: Combine = "mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - alpha) * CE(labels, p_S) + alpha * T^2 * KL(p_T^T || p_S^T) (Hinton et al. 2015;
    see `kd_divergence`), and logs {"ce", "kd"} (nats per token, floats).

    student: [..., V]; teachers: each [..., V]; labels: [...] int64; alpha in [0, 1]."""
    v = student.size(-1)
    ce = F.cross_entropy(student.float().reshape(-1, v), labels.reshape(-1))
    if alpha == 0:  # plain training; the KD term is still measured, for comparison
        with torch.no_grad():
            kd = kd_divergence(student, teachers, temperature, weights, combine)
        return ce, {"ce": ce.item(), "kd": kd.item()}
    kd = kd_divergence(student, teachers, temperature, weights, combine)
    loss = (1 - alpha) * ce + alpha * kd
    return loss, {"ce": ce.item(), "kd": kd.item()}
