from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.table import read_csv, with_compute
from scalelab.errors import ScalelabError


def table(n=6):
    x = np.geomspace(1e6, 1e9, n)
    return pd.DataFrame({"N": x, "tokens": 20 * x, "loss": 2 + 300 * x**-0.3, "g": ["a"] * n})


def test_missing_column_named():
    with pytest.raises(ScalelabError, match="missing column 'val_loss'"):
        fit_table(table(), FitSpec("power", "N", "val_loss"))


def test_non_positive_values_named():
    df = table()
    df.loc[2, "loss"] = -1.0
    with pytest.raises(ScalelabError, match="column 'loss' has 1 non-positive"):
        fit_table(df, FitSpec("power", "N", "loss"))


def test_too_few_points_names_law():
    with pytest.raises(ScalelabError, match="too few points for the power law: 3"):
        fit_table(table(3), FitSpec("power", "N", "loss"))
    with pytest.raises(ScalelabError, match="chinchilla"):
        fit_table(table(5), FitSpec("chinchilla", "N", "loss", x2="tokens"))


def test_nan_rows_dropped_and_counted():
    df = table(8)
    df.loc[[1, 4], "loss"] = np.nan
    g = fit_table(df, FitSpec("power", "N", "loss")).groups[0]
    assert g.dropped_nan == 2 and g.fit.n_points == 6
    assert any("dropped 2" in n for n in g.notes)


def test_groups_with_too_few_points_are_skipped_not_fatal():
    df = pd.concat([table(6), table(2).assign(g="b")])
    report = fit_table(df, FitSpec("power", "N", "loss", group="g"))
    assert [g.group for g in report.groups] == ["a"]
    assert "group 'b'" in report.skipped[0]


def test_compute_derived_from_n_and_d():
    df = with_compute(table(), "N", "tokens")
    np.testing.assert_allclose(df["compute"], 6 * df["N"] * df["tokens"])
    g = fit_table(table(), FitSpec("power", "compute", "loss", n_col="N", d_col="tokens")).groups[0]
    assert g.fit.n_points == 6


def test_unreadable_csv(tmp_path):
    with pytest.raises(ScalelabError, match="no such file"):
        read_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    with pytest.raises(ScalelabError, match="cannot read CSV"):
        read_csv(bad)
