"""The report's data-scaling section on synthetic runs tables (a known law per model)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from scalelab.analysis import laws
from scalelab.analysis.data_scaling import diminishing_point
from scalelab.report.build import build_report

LAW = {"tiny": (2e5, {"A": 1.5, "alpha": 0.55, "E": 0.08}),
       "base": (2e7, {"A": 0.9, "alpha": 0.45, "E": 0.04})}  # fmt: skip


def _runs(sizes=(50, 100, 200, 500, 1000, 2000), shots=(1, 5, 10)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model, (size, law) in LAW.items():
        cells = [({"task.train_size": n}, n) for n in sizes]
        cells += [({"task.k_per_class": k, "task.draw": d}, 6 * k) for k in shots for d in (0, 1)]
        for i, (task, n) in enumerate(cells):
            for seed in (0, 1):
                rows.append({"run_id": f"{model[0]}{i:02d}{seed}".ljust(16, "0"),
                             "status": "done", "model": model, "method": "full", "seed": seed,
                             "task.kind": "classification", "task.dataset": "trec", **task,
                             "train_examples": n, "non_embedding_params": size,
                             "test_accuracy": 1 - laws.power_law(n, law) + rng.normal(0, 0.003),
                             "val_accuracy": 0.5})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_section_shows_the_figure_the_fits_and_n_star(tmp_path):
    page = build_report(_runs(), None, tmp_path / "rep").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads[0] == "Data-centric dashboard"  # the dashboard leads (test_report_dashboard)
    heads = heads[1:]
    assert heads[0] == "Data scaling: accuracy vs labelled examples"
    section = page[page.index(heads[0]) : page.index(f"<h2>{heads[1]}</h2>")]
    assert 'alt="data_scaling"' in section and (tmp_path / "rep" / "data_scaling.png").is_file()
    rows = re.findall(r"<tr><td class='l'>(\w+)</td><td class='l'>full</td>(.*?)</tr>", section)
    assert [m for m, _ in rows] == ["tiny", "base"]  # smallest model first
    for model, cells in rows:
        n_star = diminishing_point(LAW[model][1], 0.01)
        shown = re.findall(r"<td>([\d,]+) \[([\d,]+), ([\d,]+)\]</td><td>within", cells)
        assert shown, cells
        point, lo, hi = (float(v.replace(",", "")) for v in shown[0])
        assert lo <= point <= hi and abs(point - n_star) / n_star < 0.25
    assert "Labels vs parameters" in section and "<th>2,000</th>" in section
    assert "doubling gains &lt; 0.01 from n* = " in section


def test_a_curve_without_enough_points_is_drawn_and_said(tmp_path):
    runs = _runs(sizes=(50,), shots=(1,))  # two distinct n: no law
    page = build_report(runs, None, tmp_path / "rep").read_text()
    assert "Data scaling: accuracy vs labelled examples" in page
    assert "no fit: too few" in page and (tmp_path / "rep" / "data_scaling.png").is_file()


def test_runs_at_one_data_size_have_no_section(tmp_path):
    runs = _runs(sizes=(2000,), shots=())
    page = build_report(runs, None, tmp_path / "rep").read_text()
    assert "Data scaling" not in page


def test_curves_of_one_model_get_distinct_colours_and_models_colour_by_size():
    from scalelab.analysis.data_scaling import Curve
    from scalelab.report.data_scaling import curve_colors

    def curve(model, setting):
        return Curve(model, "full", setting, 1e6, pd.DataFrame({"n": [10.0], "mean": [0.5]}))

    one = [curve("m", "(sizes)"), curve("m", "(fewshot)"), curve("m", "(augment) ratio=0")]
    assert len(set(curve_colors(one).values())) == 3
    two = [curve("small", "(sizes)"), curve("small", "(fewshot)"), curve("big", "(sizes)")]
    colors = curve_colors(two)
    assert (
        colors["small full (sizes)"] == colors["small full (fewshot)"] != colors["big full (sizes)"]
    )
