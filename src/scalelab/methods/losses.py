"""Losses as swappable functions of logits (torchtune keeps its losses as modules apart from
its recipes; so do we): next-token cross-entropy, knowledge distillation, and the
weak-to-strong losses (cross-entropy against soft labels; the auxiliary confidence loss).

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


# --- weak-to-strong (Burns et al. 2023, "Weak-to-Strong Generalization", Sec. 4.3.2) -------


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-sum_k target_k log softmax(logits)_k, mean over examples (nats, fp32).

    logits: [b, K]; target: [b, K] probabilities (rows sum to 1; one-hot rows give the
    usual cross-entropy). The `xent` (naive) weak-to-strong loss with target = weak labels."""
    logq = F.log_softmax(logits.float(), dim=-1)
    return -(target.float() * logq).sum(-1).mean()


def balanced_hard_labels(probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """One-hot labels [b, K] from probabilities [b, K] whose class counts follow `prior` [K]
    (the weak labels' mean over the batch): class k gets round(b * prior_k) examples
    (largest remainder, so the counts sum to b), and (example, class) pairs are taken in
    order of decreasing probability while the example is free and the class has room.

    For two classes this is the reference code's threshold: the round(b * prior_1) examples
    with the lowest p_0 are class 1, as thresholding p_0 at its prior_1 quantile does
    (ties and rounding aside); unlike the threshold it works for any number of classes.
    No gradient flows through it."""
    b, k = probs.shape
    exact = prior.double().clamp_min(0) / prior.double().clamp_min(0).sum() * b
    quota = exact.floor().long()
    extra = int(b - quota.sum())
    if extra > 0:  # largest remainders first (lower class index on ties)
        order = sorted(range(k), key=lambda c: (-(exact[c] - quota[c]).item(), c))
        for c in order[:extra]:
            quota[c] += 1
    flat = probs.detach().float().reshape(-1).cpu().tolist()
    ranked = sorted(range(b * k), key=lambda i: (-flat[i], i))
    out = torch.zeros(b, k, dtype=probs.dtype, device=probs.device)
    free, room = [True] * b, quota.tolist()
    for i in ranked:
        ex, c = divmod(i, k)
        if free[ex] and room[c] > 0:
            out[ex, c], free[ex] = 1, False
            room[c] -= 1
    return out


def aux_coef_at(step_frac: float, aux_coef: float, warmup_frac: float) -> float:
    """The confidence weight c at `step_frac` (done fraction of training, in [0, 1]): a
    linear ramp from 0 to `aux_coef` over the first `warmup_frac` of training, then flat
    (warmup_frac 0: `aux_coef` from the start). The reference code's logconf_loss_fn uses
    step_frac itself during the warm-up and jumps to aux_coef after it; this is the ramp
    its fix intends, step_frac / warmup_frac."""
    if warmup_frac <= 0:
        return aux_coef
    return aux_coef * min(1.0, max(0.0, step_frac) / warmup_frac)


def logconf_loss(
    logits: torch.Tensor, weak: torch.Tensor, coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The auxiliary confidence loss (Burns et al. 2023, Sec. 4.3.2, Eq. 1 in the form of
    the reference code): CE(logits, (1 - c) * weak + c * hard(strong)), where hard(strong)
    = `balanced_hard_labels` of the student's own (detached) probabilities with the weak
    labels' batch mean as the prior: the student is pushed towards its own confident
    predictions while keeping the weak labels' class balance.

    logits: [b, K]; weak: [b, K] soft weak labels; coef: c in [0, 1].
    Returns (mean loss, the target [b, K])."""
    probs = F.softmax(logits.detach().float(), dim=-1)
    hard = balanced_hard_labels(probs, weak.float().mean(0))
    target = (1 - coef) * weak.float() + coef * hard.float()
    return soft_cross_entropy(logits, target), target
