from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.errors import ScalelabError
from scalelab.report import plots
from scalelab.report.build import ReportSpec, build_report


def runs_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method, e in (("full", 2.0), ("lora", 2.2)):
        for i, n in enumerate(np.geomspace(1e6, 1e8, 6)):
            val = laws.power_law(n, {"E": e, "A": 200.0, "alpha": 0.3}) * np.exp(
                0.005 * rng.normal()
            )
            rows.append(
                {
                    "run_id": f"{method}-{i}",
                    "method": method,
                    "task.dataset": "wt2",
                    "non_embedding_params": n,
                    "val_loss": val,
                    "test_loss": val * 1.02,
                }
            )
    return pd.DataFrame(rows)


def curves_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run in runs["run_id"][:3]:
        for step in range(1, 11):
            rows.append(
                {
                    "run_id": run,
                    "step": step,
                    "tokens": step * 1000,
                    "train_loss": 5 / step**0.3,
                    "val_loss": 5.1 / step**0.3 if step % 5 == 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_build_report_writes_self_contained_html(tmp_path):
    runs = runs_table()
    html_path = build_report(runs, curves_table(runs), tmp_path, ReportSpec(bootstrap=50))
    html = html_path.read_text()
    assert (tmp_path / "scaling.png").is_file() and (tmp_path / "curves.png").is_file()
    assert not (tmp_path / "loss_to_loss_0.png").exists()  # only when asked for
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="http' not in html and "scaling.png" not in html
    # default grouping by method (task.dataset does not vary), one fitted law per group
    assert "<td class='l'>full</td>" in html and "<td class='l'>lora</td>" in html
    assert "95% CI" in html or "[" in html
    asked = ReportSpec(bootstrap=0, loss_to_loss=[("val_loss", "test_loss")])
    build_report(runs, None, tmp_path / "l2l", asked)
    assert (tmp_path / "l2l" / "loss_to_loss_0.png").is_file()


def test_report_notes_instead_of_failing_on_tiny_groups(tmp_path):
    runs = runs_table().iloc[:8]  # lora has only 2 runs
    html = build_report(runs, None, tmp_path, ReportSpec(bootstrap=0)).read_text()
    assert "too few points" in html
    assert not (tmp_path / "curves.png").exists()


def test_report_missing_column_is_user_error(tmp_path):
    with pytest.raises(ScalelabError, match="missing column 'tokens'"):
        build_report(runs_table(), None, tmp_path, ReportSpec(x="tokens"))


def test_plots_never_fit_and_draw_given_params(tmp_path):
    runs = runs_table()
    path = plots.plot_scaling(
        runs,
        "non_embedding_params",
        "val_loss",
        tmp_path / "a.png",
        group="method",
        params={"full": {"E": 2.0, "A": 200.0, "alpha": 0.3}},
    )
    assert path.stat().st_size > 1000
    path = plots.plot_loss_to_loss(
        runs, "val_loss", "test_loss", tmp_path / "b.png", group="method"
    )
    assert path.is_file()


def test_a_declared_accuracy_is_fitted_as_an_error_rate(tmp_path):
    runs = runs_table()
    runs["val_accuracy"] = 1 - runs["val_loss"] / 10  # error = loss / 10: a power law in N
    runs = runs.drop(columns=["val_loss", "test_loss"])
    html = build_report(runs, None, tmp_path, ReportSpec(y="val_accuracy", bootstrap=0))
    text = html.read_text()
    assert "plotted and fitted as the error rate 1 - val_accuracy" in text
    assert "1 - val_accuracy vs non_embedding_params" in text and "too few points" not in text


def test_default_y_reads_the_declarations():
    from scalelab.report.build import default_y

    runs = runs_table()
    assert default_y(runs) == "val_loss"  # full/lora declare val_loss before test_loss
    assert default_y(runs.assign(val_loss=np.nan)) == "test_loss"
    pre = runs.assign(method="pretrain", val_loss=np.nan, test_loss=np.nan, val_ppl=9.0)
    assert default_y(pre) == "val_ppl"  # a declared loss with values, not a missing one
    assert default_y(runs.drop(columns="method")) == "val_loss"  # no methods: as before


def test_curve_legends_name_models_and_colours_follow_size():
    from scalelab.report.curves import final_points, run_labels, size_order

    runs = pd.DataFrame({"run_id": ["c3f1", "a9e2", "b7d0"], "model": ["gpt-d4", "gpt-d1", "gpt-d2"],
                         "method": "pretrain", "seed": 0, "val_loss": [2.2, 2.5, 2.4],
                         "non_embedding_params": [793_344, 12_768, 100_096]})  # fmt: skip
    assert run_labels(runs) == {"c3f1": "gpt-d4 pretrain", "a9e2": "gpt-d1 pretrain",
                                "b7d0": "gpt-d2 pretrain"}  # fmt: skip
    assert size_order(runs) == ["a9e2", "b7d0", "c3f1"]  # smallest first: the colour order
    curves = pd.DataFrame({"run_id": ["a9e2"] * 3, "step": [0, 5, 10],
                           "tokens": [0, 500, 1000], "val_loss": [5.5, 3.0, 2.6]})  # fmt: skip
    assert final_points(runs, curves, "val_loss") == {"a9e2": (1000.0, 2.5)}


def test_report_notes_runs_with_training_events(tmp_path):
    runs = runs_table()
    runs["loss_spikes"], runs["nonfinite_grad_norms"] = 0, 0
    runs.loc[2, ["loss_spikes", "nonfinite_grad_norms"]] = [2, 1]
    html = build_report(runs, None, tmp_path, ReportSpec(bootstrap=0)).read_text()
    assert "run full-2: events: 2 loss spikes, 1 non-finite grad norm (events.json in " in html
    assert html.count("events: ") == 1
    named = runs.assign(model="gpt-d2", seed=0, **{"params.lr": [1e-3] * 6 + [3e-3] * 6})
    html = build_report(named, None, tmp_path / "named", ReportSpec(bootstrap=0)).read_text()
    # named by model, method and the setting that differs, never by a hash
    assert "gpt-d2 full lr=0.001 seed=0: events: 2 loss spikes" in html


def test_the_scaling_caption_describes_what_is_drawn(tmp_path):
    runs = runs_table()
    full = build_report(runs, None, tmp_path / "a", ReportSpec(bootstrap=50)).read_text()
    assert "lines the fitted power law" in full and "shaded the 95% bootstrap band" in full
    two = runs[runs["run_id"].isin(["full-0", "full-5"])]  # 2 sizes: no law to fit
    page = build_report(two, None, tmp_path / "b", ReportSpec(bootstrap=50)).read_text()
    assert "lines the fitted power law" not in page and "bootstrap band" not in page
    assert "no fitted line: no power law could be fitted to these points" in page


@pytest.mark.parametrize("n_methods", [1, 4])
def test_method_panels_keep_the_size_label_under_the_axes(tmp_path, n_methods):
    from matplotlib.image import imread

    cells = pd.DataFrame([{"method": f"m{i}", "size": s, "mean": 3 - 0.1 * np.log(s)}
                          for i in range(n_methods) for s in (1e4, 3e4, 1e5, 3e5)])  # fmt: skip
    png = plots.plot_methods_panels(cells, tmp_path / "p.png", metric="val_loss",
                                    reference=("ref", 8e5, 1.7))  # fmt: skip
    img = imread(png)[..., :3]
    inked = np.flatnonzero((img < 0.6).any(axis=2).any(axis=1))
    low = inked[inked > 0.6 * img.shape[0]]
    # no blank band between the tick labels and the axis label (a figure-level label left
    # one of 30+ pixels)
    assert np.diff(low).max() < 20
