"""One order and one colour per run across a report's figures: size first, then each
varying value numerically; colours by model size (viridis), seeds sharing theirs."""

from __future__ import annotations

import pandas as pd

from scalelab.analysis.table import field_text
from scalelab.report import style
from scalelab.report.curves import run_colors, size_order


def sweep() -> pd.DataFrame:
    rows = [{"run_id": f"r{lr}-{seed}", "model": "minilm-l6", "method": "full",
             "total_params": 22.7e6, "params.lr": lr, "seed": seed}
            for lr in (1e-4, 3e-4, 3e-5) for seed in (1, 0)]  # fmt: skip
    return pd.DataFrame(rows)


def test_learning_rates_sort_as_numbers_and_read_alike():
    order = size_order(sweep())
    assert order == ["r3e-05-0", "r3e-05-1", "r0.0001-0", "r0.0001-1", "r0.0003-0", "r0.0003-1"]
    assert [field_text("params.lr", v, {}) for v in (3e-5, 1e-4, 3e-4, 1e-3)] == [
        "lr=3e-5", "lr=1e-4", "lr=3e-4", "lr=0.001"]  # fmt: skip


def test_colours_follow_model_size_in_every_figure_and_seeds_share_them():
    runs = pd.DataFrame({"run_id": ["b0", "a0", "a1"], "model": ["gpt-d3", "gpt-d2", "gpt-d2"],
                         "method": "full", "non_embedding_params": [3e5, 1e5, 1e5],
                         "seed": [0, 0, 1]})  # fmt: skip
    by_size = style.size_colors(["gpt-d2", "gpt-d3"])
    assert run_colors(runs) == {"a0": by_size["gpt-d2"], "a1": by_size["gpt-d2"],
                                "b0": by_size["gpt-d3"]}  # fmt: skip
    colors = run_colors(sweep())  # one model, three learning rates: one colour per lr
    assert colors["r3e-05-0"] == colors["r3e-05-1"]
    assert len({colors[r] for r in colors}) == 3
    assert colors["r3e-05-0"] == style.size_colors([0, 1, 2])[0]  # smallest lr darkest


def test_monitor_columns_have_human_axis_labels():
    assert style.axis_label("mem/rss_mb") == "process memory, resident set (MiB)"
    assert style.axis_label("mem/foo_mb") == "memory: foo (MiB)"
    assert style.axis_label("tokens_per_s") == "tokens per second"
