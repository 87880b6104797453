"""Pretraining batches: windows fixed by (seed, step), inside the split, even at one window."""

from __future__ import annotations

import torch

from scalelab.methods.pretrain import get_batch


def test_batches_are_a_function_of_seed_and_step_and_y_is_x_shifted():
    ids = torch.arange(1000)
    x, y = get_batch(ids, 8, 16, seed=3, step=5)
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert torch.equal(x, get_batch(ids, 8, 16, seed=3, step=5)[0])
    assert not torch.equal(x, get_batch(ids, 8, 16, seed=3, step=6)[0])
    assert not torch.equal(x, get_batch(ids, 8, 16, seed=4, step=5)[0])


def test_a_split_of_exactly_one_window_gives_that_window():
    ids = torch.arange(17)  # seq_len + 1 tokens: the least `require_full_windows` allows
    x, y = get_batch(ids, 4, 16, seed=0, step=0)
    assert torch.equal(x, ids[:16].expand(4, 16)) and torch.equal(y, ids[1:].expand(4, 16))
