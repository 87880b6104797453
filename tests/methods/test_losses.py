"""Knowledge-distillation losses against hand computations and their known limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scalelab.methods.losses import kd_divergence, kd_loss


def softmax(z, t):
    e = np.exp((z - z.max(-1, keepdims=True)) / t)
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 7, generator=g, dtype=torch.float64) for _ in range(3)]


def test_kd_term_is_t_squared_times_the_kl_of_softened_distributions(logits):
    student, teacher = logits[0], logits[1]
    t = 2.5
    p, q = softmax(teacher.numpy(), t), softmax(student.numpy(), t)
    by_hand = t**2 * (p * (np.log(p) - np.log(q))).sum(-1).mean()
    assert kd_divergence(student, [teacher], t).item() == pytest.approx(by_hand, rel=1e-5)


def test_full_loss_mixes_cross_entropy_and_kd_by_alpha(logits):
    student, teacher = logits[0], logits[1]
    labels = torch.tensor([[0, 6, 3], [2, 2, 5]])
    q = softmax(student.numpy(), 1.0)
    ce = -np.log(np.take_along_axis(q, labels.numpy()[..., None], -1)).mean()
    kd = kd_divergence(student, [teacher], 3.0).item()
    loss, logs = kd_loss(student, [teacher], labels, alpha=0.3, temperature=3.0)
    assert loss.item() == pytest.approx(0.7 * ce + 0.3 * kd, rel=1e-5)
    assert logs["ce"] == pytest.approx(ce, rel=1e-5) and logs["kd"] == pytest.approx(kd, rel=1e-5)
    plain, _ = kd_loss(student, [teacher], labels, alpha=0.0, temperature=3.0)
    assert plain.item() == pytest.approx(ce, rel=1e-5)  # alpha 0 is plain next-token CE


def test_low_temperature_targets_the_teachers_argmax(logits):
    student, teacher = logits[0], logits[1]
    t = 0.02  # p_teacher^T is one-hot at the teacher's argmax: the KL is -log q[argmax]
    q = torch.log_softmax(student / t, -1)
    want = -q.gather(-1, teacher.argmax(-1, keepdim=True)).mean().item()
    assert kd_divergence(student, [teacher], t).item() / t**2 == pytest.approx(want, rel=1e-3)


def test_high_temperature_kd_matches_logit_matching(logits):
    # Hinton et al. Sec. 2.1: for large T, T^2 KL ~ mean_i (z_s - z_t)^2 / (2V) with
    # zero-mean logits per position.
    student, teacher = (x - x.mean(-1, keepdim=True) for x in logits[:2])
    t = 200.0
    want = ((student - teacher) ** 2).mean(-1).mean().item() / 2
    assert kd_divergence(student, [teacher], t).item() == pytest.approx(want, rel=1e-2)


def test_a_student_equal_to_its_teacher_has_zero_kd(logits):
    assert kd_divergence(logits[0], [logits[0]], 2.0).item() == pytest.approx(0.0, abs=1e-12)


def test_mean_and_sum_kl_give_the_same_gradient_and_differ_by_a_constant(logits):
    teachers, w = logits[1:], [3.0, 1.0]
    grads, values = {}, {}
    for combine in ("mean", "sum_kl"):
        student = logits[0].clone().requires_grad_(True)
        value = kd_divergence(student, teachers, 2.0, w, combine)
        value.backward()
        grads[combine], values[combine] = student.grad, value.item()
    assert torch.allclose(grads["mean"], grads["sum_kl"], atol=1e-7)  # fp32 arithmetic
    # the gap is the teachers' generalised Jensen-Shannon divergence, independent of the student
    p = [softmax(x.numpy(), 2.0) for x in teachers]
    m = 0.75 * p[0] + 0.25 * p[1]
    js = sum(
        wi * (pi * (np.log(pi) - np.log(m))).sum(-1) for wi, pi in zip((0.75, 0.25), p, strict=True)
    )
    assert values["sum_kl"] - values["mean"] == pytest.approx(4.0 * js.mean(), rel=1e-5)


def test_mean_of_teachers_is_the_mixture_of_their_distributions(logits):
    student, a, b = logits
    t = 1.5
    pa, pb, q = softmax(a.numpy(), t), softmax(b.numpy(), t), softmax(student.numpy(), t)
    m = (pa + pb) / 2
    by_hand = t**2 * (m * (np.log(m) - np.log(q))).sum(-1).mean()
    assert kd_divergence(student, [a, b], t).item() == pytest.approx(by_hand, rel=1e-5)
    assert math.isclose(
        kd_divergence(student, [a, b], t, [5.0, 5.0]).item(), by_hand, rel_tol=1e-5
    )  # weights are normalised


def test_top_k_targets_with_every_token_are_the_dense_kl(logits):
    from scalelab.methods.losses import teacher_target

    student, teacher = logits[0], logits[1]
    grads = {}
    for k in (None, 7):  # 7 = the whole vocabulary, as top-k with an empty rest
        s = student.clone().requires_grad_(True)
        target = teacher_target(teacher, 2.0, top_k=k)
        value = kd_divergence(s, [target], 2.0)
        value.backward()
        grads[k] = (value.item(), s.grad)
    assert grads[7][0] == pytest.approx(grads[None][0], rel=1e-6)
    assert torch.allclose(grads[7][1], grads[None][1], atol=1e-7)


def test_top_k_kl_puts_the_rest_of_the_mass_in_one_category(logits):
    from scalelab.methods.losses import teacher_target

    student, teacher = logits[0], logits[1]
    t, k = 1.5, 3
    p, q = softmax(teacher.numpy(), t), softmax(student.numpy(), t)
    top = np.argsort(-p, axis=-1)[..., :k]
    p_top, q_top = np.take_along_axis(p, top, -1), np.take_along_axis(q, top, -1)
    p_rest, q_rest = 1 - p_top.sum(-1), 1 - q_top.sum(-1)
    kl = (p_top * np.log(p_top / q_top)).sum(-1) + p_rest * np.log(p_rest / q_rest)
    got = kd_divergence(student, [teacher_target(teacher, t, top_k=k)], t).item()
    assert got == pytest.approx(t**2 * kl.mean(), rel=1e-5)
    assert 0 < got < kd_divergence(student, [teacher], t).item()  # coarser: less divergence
