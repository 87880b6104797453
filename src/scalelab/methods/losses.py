"""Losses as swappable functions of logits (torchtune keeps its losses as modules apart from
its recipes; so do we): next-token cross-entropy and knowledge distillation.

Shapes: logits [..., V] (any leading dims, e.g. [batch, seq, V]), labels [...] int64. All
losses are means over the positions (nats per token), computed in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Combine = Literal["mean", "sum_kl"]


def kd_divergence(
    student: torch.Tensor,
    teachers: Sequence[torch.Tensor],
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

    student: [..., V]; each teacher: [..., V] (the same vocabulary); returns a 0-d tensor.
    """
    if not teachers:
        raise ValueError("kd_divergence needs at least one teacher")
    k = len(teachers)
    w = torch.tensor(weights if weights is not None else [1.0] * k, dtype=torch.float32)
    w = (w / w.sum()).tolist()
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    log_ps = [F.log_softmax(t.detach().float() / temperature, dim=-1) for t in teachers]
    if combine == "mean":
        if k == 1:
            log_m = log_ps[0]
        else:
            stacked = torch.stack(
                [lp + torch.log(torch.tensor(wi)) for lp, wi in zip(log_ps, w, strict=True)]
            )
            log_m = torch.logsumexp(stacked, dim=0)
        kl = (log_m.exp() * (log_m - log_q)).sum(-1)
    elif combine == "sum_kl":
        kl = sum(wi * (lp.exp() * (lp - log_q)).sum(-1) for lp, wi in zip(log_ps, w, strict=True))
    else:
        raise ValueError(f"unknown combine {combine!r} (mean or sum_kl)")
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
