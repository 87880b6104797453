"""The shared figure style: tick labels a reader can read."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.report import style


def _labels(ax, which: str):
    """(text, window extent) of every visible, non-empty tick label on one axis."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    out = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        text = tick.label1
        if text.get_visible() and text.get_text() and lo <= tick.get_loc() <= hi:
            out.append((text.get_text(), text.get_window_extent()))
    return out


@pytest.mark.parametrize("lo,hi", [(12_768, 793_344), (2e4, 9e4), (1e6, 1e9)])
def test_log_ticks_are_plain_and_never_overlap(lo, hi):
    fig, ax = style.figure()
    xs = np.geomspace(lo, hi, 5)
    ax.plot(xs, 2 + 30 * xs**-0.3, "o")
    style.log_axis(ax, "x", list(xs))
    style.plain_axis(ax, "y")
    fig.canvas.draw()
    xl, yl = _labels(ax, "x"), _labels(ax, "y")
    assert len(xl) >= 2, xl  # at least two labels to read the scale from
    for (ta, a), (tb, b) in zip(xl, xl[1:], strict=False):
        assert a.x1 < b.x0, f"x labels {ta!r} and {tb!r} overlap"
    assert not any("10^" in t or "×" in t or "$" in t for t, _ in xl + yl), xl + yl
    assert all(t[-1] in "0123456789kMG" for t, _ in xl), xl


def test_units_in_axis_labels():
    assert style.axis_label("val_loss") == "validation loss (nats per token)"
    assert style.axis_label("val_loss", "example") == "validation loss (nats per example)"
    assert style.axis_label("non_embedding_params") == "non-embedding parameters N"
    assert style.axis_label("1 - val_accuracy") == "validation error rate (1 - val_accuracy)"
    assert style.axis_label("my_column") == "my_column"


def test_human_counts():
    assert [style.human(v) for v in (950, 12_768, 1.5e6, 2e9)] == ["950", "12.8k", "1.5M", "2G"]


def test_fitted_laws_read_in_three_digits_without_an_e_on_its_bound():
    # the quickstart's fit: E on its bound 0 (5.4e-14) is no part of the law a reader sees
    assert style.power_law_text({"E": 5.415e-14, "A": 3.404, "alpha": 0.03011}) == (
        "3.40·N^-0.0301"
    )
    assert style.power_law_text({"E": 2.42736, "A": 10411.9, "alpha": 0.508242}) == (
        "2.43 + 1.04e4·N^-0.508"
    )
    assert [style.number(v) for v in (1.5, 0.000123, -2.5, 0.0)] == ["1.50", "1.23e-4", "-2.50",
                                                                      "0"]  # fmt: skip
