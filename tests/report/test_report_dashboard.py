"""The data-centric dashboard, the box plots over seeds and the radar of methods, on
synthetic runs tables (accuracies from a known power law of the labelled examples)."""

from __future__ import annotations

import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from browser import chromium, probe

from scalelab.analysis import laws
from scalelab.analysis.method_profile import method_profile, normalise
from scalelab.report import dashboard
from scalelab.report import plots_dashboard as plots
from scalelab.report.build import build_report

MODELS = {"tiny": (2e5, 2.2e6, {"A": 1.5, "alpha": 0.55, "E": 0.08}),
          "base": (2e7, 2.4e7, {"A": 0.9, "alpha": 0.45, "E": 0.04})}  # fmt: skip
TRAINABLE = {"full": None, "lora": 5e4}  # None: every parameter
SPEED = {"full": 100.0, "lora": 160.0}


def _row(model, method, seed, n, task, rng, i):
    size, total, law = MODELS[model]
    acc = float(np.clip(1 - laws.power_law(n, law) + rng.normal(0, 0.01), 0, 1))
    return {"run_id": f"{model[0]}{method[0]}{i:05d}{seed}".ljust(16, "0"), "status": "done",
            "model": model, "method": method, "seed": seed, "task.kind": "classification",
            "task.dataset": "trec", **task, "train_examples": n, "non_embedding_params": size,
            "total_params": total, "test_accuracy": acc, "test_macro_f1": acc - 0.05,
            "val_accuracy": acc - 0.01,
            "trainable_params": TRAINABLE[method] or total,
            "examples_per_s": SPEED[method] * (1 + 0.01 * seed), "wall_s": 60.0,
            **({"params.r": 8} if method == "lora" else {})}  # fmt: skip


def _runs(*, sizes=(50, 200, 1000), shots=(1, 5), methods=("full",), augment=False,
          zero=False, active=False, seeds=(0, 1)) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(0)
    rows, i = [], 0
    cells = [({"task.train_size": n}, n) for n in sizes]
    cells += [({"task.k_per_class": k, "task.draw": d}, 6 * k) for k in shots for d in (0, 1)]
    if augment:
        cells = [({"task.train_size": 500, "task.augment.method": "eda",
                   "task.augment.ratio": r}, int(500 * (1 + 4 * r))) for r in (0.0, 0.5, 1.0)]  # fmt: skip
    for model in MODELS:
        for method in methods:
            for task, n in cells:
                i += 1
                for seed in seeds:
                    row = _row(model, method, seed, 500 if augment else n, task, rng, i)
                    if augment:  # copies lift accuracy a little, and count as examples
                        row.update(train_examples=n, test_accuracy=row["test_accuracy"]
                                   + 0.02 * task["task.augment.ratio"])  # fmt: skip
                    rows.append(row)
        if zero:
            rows.append({"run_id": f"{model[0]}zero".ljust(16, "0"), "status": "done",
                         "model": model, "method": "evaluate", "seed": 0,
                         "task.kind": "classification", "task.dataset": "trec",
                         "params.shots": 0, "non_embedding_params": MODELS[model][0],
                         "test_accuracy": 0.35, "test_macro_f1": 0.3, "val_accuracy": 0.33,
                         "wall_s": 20.0})  # fmt: skip
        if active:  # one run per strategy and seed; its rounds are in `_rounds`
            for strategy in ("random", "entropy"):
                for seed in seeds:
                    i += 1
                    row = _row(model, "full", seed, 200, {"params.strategy": strategy}, rng, i)
                    rows.append({**row, "method": "active", "run_id": f"a{i:015d}"})
    return pd.DataFrame(rows)


def _rounds(runs: pd.DataFrame) -> pd.DataFrame:
    """The active runs' curves: one point per round (50, 100, 200 labels); entropy 0.03
    above random sampling."""
    rows = []
    for _, r in runs[runs["method"] == "active"].iterrows():
        lift = 0.03 if r["params.strategy"] == "entropy" else 0.0
        for step, n in enumerate((50, 100, 200)):
            acc = 1 - laws.power_law(n, MODELS[r["model"]][2]) + lift
            rows.append({"run_id": r["run_id"], "step": step, "labels": n, "test_accuracy": acc})
    return pd.DataFrame(rows)


def _heads(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def _panels(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> list[str]:
    from scalelab.analysis.table import model_names

    models = model_names(runs)
    return [k for k, build in dashboard.PANELS.items() if build(runs, models, curves) is not None]


def test_a_data_centric_report_leads_with_the_dashboard(tmp_path):
    runs = _runs(methods=("full", "lora"), zero=True)
    out = tmp_path / "rep"
    page = build_report(runs, None, out, planned=None).read_text()
    heads = _heads(page)
    assert heads[0] == "Data-centric dashboard" and heads[1].startswith("Data scaling"), heads
    body = page[page.index(heads[0]) : page.index(f"<h2>{heads[1]}</h2>")]
    assert 'alt="dashboard"' in body and (out / "dashboard.png").is_file()
    # speed: wall-clock seconds, which the zero-shot runs report too (not examples/s)
    for text in ("(a) test_accuracy vs labelled", "dotted lines: models that saw no labelled",
                 "(b) methods over 4 metrics", "(c) test accuracy over seeds",
                 "raw values", "trainable_params (lower is better)",
                 "wall_s (lower is better)"):  # fmt: skip
        assert text in body, text
    img = matplotlib.image.imread(out / "dashboard.png")
    assert img.shape[1] == 880  # the report's column
    # The classification section keeps its box plots; its radar is the dashboard's.
    seeds = page[page.index("<h2>Seeds and methods</h2>") :]
    assert 'alt="seed_boxes"' in seeds and 'alt="radar"' not in seeds
    assert (out / "seed_boxes.png").is_file() and not (out / "radar.png").exists()


def test_no_dashboard_for_a_plain_comparison_but_boxes_and_radar(tmp_path):
    runs = _runs(sizes=(1000,), shots=(), methods=("full", "lora"))  # one data size
    out = tmp_path / "rep"
    page = build_report(runs, None, out).read_text()
    assert "Data-centric dashboard" not in page and not (out / "dashboard.png").exists()
    seeds = page[page.index("<h2>Seeds and methods</h2>") :]
    assert 'alt="seed_boxes"' in seeds and 'alt="radar"' in seeds
    assert "(4 of 4 cells)" in seeds  # two seeds in every cell: a box each
    assert "<th>full</th><th>lora</th>" in seeds and "50,000" in seeds  # lora's raw count


def test_panels_come_and_go_with_their_data():
    assert _panels(_runs()) == ["scaling", "boxes"]  # one method: no radar
    assert _panels(_runs(methods=("full", "lora"))) == ["scaling", "radar", "boxes"]
    assert _panels(_runs(augment=True)) == ["augment", "boxes"]  # one data size: no curve
    # augmented copies are no labelled examples: the curve panel leaves those runs out
    both = pd.concat([_runs(), _runs(augment=True).assign(run_id=lambda t: "x" + t["run_id"])])
    result, _ = dashboard._scaling_panel(both, {}).data
    assert max(n for c in result.curves for n in c.points["n"]) == 1000
    act = _runs(active=True)
    assert _panels(act, _rounds(act)) == ["scaling", "active", "radar", "boxes"]
    assert _panels(act) == ["scaling", "radar", "boxes"]  # no round curves: no panel
    assert not dashboard.is_data_centric(_runs(sizes=(1000,), shots=()))
    for kind in ({"augment": True}, {"zero": True, "sizes": (1000,), "shots": ()},
                 {"active": True, "sizes": (1000,), "shots": ()}):  # fmt: skip
        assert dashboard.is_data_centric(_runs(**kind)), kind
    # zero-shot runs beside one data size: the curve panel shows them as lines
    assert _panels(_runs(sizes=(1000,), shots=(), zero=True))[0] == "scaling"


def test_a_registered_panel_replaces_the_active_one(monkeypatch, tmp_path):
    """The hook an `active` method's report module uses: its panel, drawn in the grid,
    only where its build returns one."""
    drawn = []

    def build(runs, models, curves):
        rows = runs[runs["method"] == "active"]
        if rows.empty:
            return None
        return plots.Panel("active", "my active panel", len(rows),
                           lambda ax, n: drawn.append(n) or ax.plot([0, 1], [0, n]), "mine")  # fmt: skip

    monkeypatch.setitem(dashboard.PANELS, "active", build)
    assert "active" not in _panels(_runs())
    body = dashboard.dashboard_section(_runs(active=True), tmp_path, {})
    assert drawn == [8] and "(b) mine" in body  # 2 models x 2 strategies x 2 seeds


def test_zero_shot_lines_and_augment_points_hold_the_means():
    runs = _runs(zero=True, sizes=(50, 1000), shots=())
    panel = dashboard._scaling_panel(runs, {})
    _, zero = panel.data
    assert list(zero["label"]) == ["tiny zero-shot", "base zero-shot"]
    assert zero["mean"].tolist() == [0.35, 0.35]
    runs = _runs(augment=True)
    points = dashboard.augment_points(runs, "test_accuracy", {})
    assert sorted(points["curve"].unique()) == ["base full", "tiny full"]
    one = runs[(runs["model"] == "tiny") & (runs["task.augment.ratio"] == 0.5)]
    got = points[(points["curve"] == "tiny full") & (points["ratio"] == 0.5)].iloc[0]
    assert got["mean"] == pytest.approx(one["test_accuracy"].mean()) and got["n"] == 2
    assert got["ci_low"] < got["mean"] < got["ci_high"]
    # a run without augmentation trains on the original set: ratio 0
    plain = runs[runs["task.augment.ratio"] == 0.0].drop(columns=["task.augment.method",
                                                                  "task.augment.ratio"])  # fmt: skip
    mixed = pd.concat([plain, runs[runs["task.augment.ratio"] > 0]], ignore_index=True)
    again = dashboard.augment_points(mixed, "test_accuracy", {})
    assert sorted(again["ratio"].unique()) == [0.0, 0.5, 1.0]
    assert sorted(again["curve"].unique()) == ["base full", "tiny full"]


def test_radar_puts_the_better_end_outward():
    raw = pd.Series([1e8, 1e6, 1e7])  # trainable parameters: fewer is better, log scale
    assert normalise(raw, False, True).tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert normalise(pd.Series([0.8, 0.9, np.nan]), True, False).tolist()[:2] == [0.0, 1.0]
    assert normalise(pd.Series([3.0, 3.0]), True, False).tolist() == [1.0, 1.0]  # no spread
    profile = method_profile(_runs(sizes=(1000,), shots=(), methods=("full", "lora")))
    assert profile.drawable
    assert [a.metric for a in profile.axes] == ["test_accuracy", "test_macro_f1",
                                                "trainable_params", "examples_per_s"]  # fmt: skip
    s = profile.scores.set_index("method")
    assert s.loc["lora", "trainable_params"] == 1.0 and s.loc["full", "trainable_params"] == 0.0
    assert s.loc["lora", "examples_per_s"] == 1.0  # faster: outward
    raw = profile.raw.set_index("method")
    assert raw.loc["lora", "trainable_params"] == 5e4


def test_radar_picks_each_methods_cell_on_validation():
    runs = _runs(sizes=(50, 1000), shots=(), methods=("full", "lora"))
    # make the small-data cell of full the best on test but the worst on validation
    small = (runs["method"] == "full") & (runs["train_examples"] == 50) & (runs["model"] == "base")
    runs.loc[small, ["test_accuracy", "val_accuracy"]] = [0.999, 0.1]
    profile = method_profile(runs)
    cells = dict(zip(profile.raw["method"], profile.raw["cell"], strict=True))
    assert cells["full"] == "base full train_size=1000"
    full = runs[(runs["method"] == "full") & (runs["model"] == "base")
                & (runs["train_examples"] == 1000)]  # fmt: skip
    got = profile.raw.set_index("method").loc["full", "test_accuracy"]
    assert got == pytest.approx(full["test_accuracy"].mean())  # the mean over seeds
    one = method_profile(_runs(sizes=(1000,), shots=()))
    assert not one.drawable  # one method


def test_box_values_are_ordered_by_size_and_count_single_runs():
    runs = _runs(sizes=(50, 1000), shots=(), methods=("full", "lora"), zero=True)
    values = dashboard.seed_values(runs, ["test_accuracy"], {})
    cells = list(dict.fromkeys(values["cell"]))
    # settings of one method only (lora's r, the zero-shot's shots) name no cell
    assert cells[:3] == ["tiny evaluate", "tiny full train_size=50", "tiny full train_size=1000"]
    assert all(c.startswith("tiny") for c in cells[:5]) and cells[5].startswith("base")
    assert dashboard._replicated(values) == (8, 10)  # the zero-shot cells: one run each


def test_a_stage_without_the_metrics_gives_no_box_values_and_no_error(tmp_path):
    runs = _runs(sizes=(50, 1000), shots=(), methods=("full",), zero=False)
    values = dashboard.seed_values(runs.drop(columns=["test_accuracy"]), ["test_accuracy"], {})
    assert values.empty and {"cell", "metric", "value"} <= set(values.columns)
    no_metrics = runs.drop(columns=["test_accuracy", "test_macro_f1"], errors="ignore")
    assert dashboard.methods_section(no_metrics, tmp_path, "", {}) == ""


def test_cells_are_named_by_what_tells_them_apart():
    from scalelab.analysis.method_profile import cell_names

    runs = _runs(sizes=(50, 1000), shots=(1,), methods=("full", "lora"))
    runs["params.epochs"] = np.where(runs["task.k_per_class"].notna(), 30, 10)  # a recipe
    runs["params.keep_layers"] = np.where(runs["seed"] >= 0, "[0, 2]", None)
    names = set(cell_names(runs))
    assert "tiny blocks [0, 2] full train_size=50" in names  # no epochs, no r, no draw
    assert "base blocks [0, 2] lora k_per_class=1" in names and len(names) == 12


def test_each_figure_builds_from_a_small_table(tmp_path):
    values = pd.DataFrame({"metric": ["test_accuracy"] * 5 + ["test_macro_f1"] * 5,
                           "cell": ["a", "a", "a", "b", "c"] * 2,
                           "value": [0.8, 0.82, 0.85, 0.7, 0.6] * 2})  # fmt: skip
    png = plots.plot_seed_boxes(values, tmp_path / "boxes.png")
    assert matplotlib.image.imread(png).shape[1] == 880
    profile = method_profile(_runs(sizes=(1000,), shots=(), methods=("full", "lora")))
    png = plots.plot_radar(profile.axes, profile.scores, profile.raw, tmp_path / "radar.png")
    assert matplotlib.image.imread(png).shape[1] == 880
    panel = dashboard._box_panel(_runs(), {})
    png = plots.plot_dashboard([panel], tmp_path / "one.png")
    assert png.is_file()


def test_many_cells_keep_each_curves_largest_n_in_the_dashboard():
    runs = _runs(sizes=(50, 100, 200, 500, 1000), shots=(1, 5), methods=("full", "lora"))
    panel = dashboard._box_panel(runs, {})
    cells = list(dict.fromkeys(panel.data["cell"]))
    assert len(cells) == 4 and all("train_size=1000" in c for c in cells)
    assert "Of 28 cells, the 4 with the most labelled examples" in panel.caption


def test_zero_shot_classification_alone_is_reported(tmp_path):
    runs = _runs(zero=True, sizes=(), shots=())
    page = build_report(runs, None, tmp_path / "rep").read_text()
    heads = _heads(page)
    assert heads[0] == "Data-centric dashboard" and "Classification" in heads
    assert "dots only otherwise" in page


def test_the_dashboard_page_opens_in_a_browser(tmp_path):
    if chromium() is None:
        pytest.skip("no Chromium to open the page: apt-get install chromium")
    runs = _runs(methods=("full", "lora"), zero=True, active=True)
    page = build_report(runs, _rounds(runs), tmp_path / "rep")
    assert "(b) active learning: test accuracy vs labelled examples per query" in page.read_text()
    seen = probe(page)
    pngs = list(page.parent.glob("*.png"))
    assert seen["images"] == seen["loaded"] == len(pngs), seen
    assert seen["scroll_width"] <= seen["page_width"] and seen["images_past_edge"] == 0, seen


def test_real_runs_with_a_zero_shot_stage(tmp_path):
    """Through the CLI: tiny fine-tuning runs at two data sizes and a zero-shot stage;
    the zero-shot stage gets a classification section (not the Evaluations table)."""
    from helpers import LABEL_WORD, cli, save_tiny, write_dataset, write_spec

    bert, data = save_tiny(tmp_path / "bert", "bert"), write_dataset(tmp_path / "d.jsonl", 60)
    task = {"dataset": str(data), "kind": "classification", "max_length": 16}
    verbal = {str(k): v for k, v in LABEL_WORD.items()}
    spec = write_spec(tmp_path / "dc.yaml", name="dc", output_dir=str(tmp_path / "out"),
                      seeds=[0, 1], runtime={"workers": 1, "threads": 1},
                      stages={"tuned": {"models": [str(bert)], "methods": "full",
                                        "tasks": {**task, "train_size": [12, 24]},
                                        "params": {"epochs": 1, "batch_size": 8}},
                              "zero": {"models": [str(bert)], "methods": "evaluate",
                                       "tasks": task, "params": {"verbalizers": verbal},
                                       "seeds": [0]}})  # fmt: skip
    assert cli("run", spec, "--quiet")[0] == 0
    code, _, err = cli("report", spec, "--bootstrap", "20")
    assert code == 0, err
    page = (tmp_path / "out" / "dc-report" / "report.html").read_text()
    heads = _heads(page)
    assert heads[0] == "Data-centric dashboard" and "Classification (stage zero)" in heads, heads
    assert "zero-shot" in page and (tmp_path / "out" / "dc-report" / "dashboard.png").is_file()
