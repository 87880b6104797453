"""`scalelab compare` and `scalelab sweep` on a store filled with known metrics."""

from __future__ import annotations

import json

import pytest
from helpers import cli, write_spec

from scalelab.grid.api import open_experiment


def _spec(tmp_path, **over):
    (tmp_path / "model").mkdir(exist_ok=True)  # any existing folder resolves as a model
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            f'{{"text": "{s}", "label": 0, "split": "{s}"}}\n'
            for s in ("train", "validation", "test")
        )
    )  # one row a split
    fields = {
        "name": "cmp",
        "output_dir": str(tmp_path / "out"),
        "models": [str(tmp_path / "model")],
        "tasks": {"dataset": str(data), "kind": "classification"},
        "methods": ["full", {"name": "lora", "lr": 2e-3}],
        "params": {"lr": 1e-4},
        "seeds": [0, 1, 2],
    }
    fields.update(over)
    return write_spec(tmp_path / "exp.yaml", **fields)


def _fill(spec, metric_of) -> None:
    """Record a finished row for every run of the spec, with metrics from metric_of(run)."""
    exp = open_experiment(spec)
    for r in exp.runs:
        exp.store.record(
            {
                "run_id": r.run_id,
                "experiment": r.experiment,
                "status": "done",
                "config": r.config,
                "metrics": metric_of(r),
                "seed": r.seed,
            }
        )


ACC = {"full": [0.95, 0.96, 0.97], "lora": [0.90, 0.905, 0.93]}


def test_compare_prints_mean_std_ci_and_paired_test(tmp_path, capsys):
    spec = _spec(tmp_path)
    _fill(spec, lambda r: {"test_accuracy": ACC[r.method][r.seed], "val_accuracy": 0.5})
    code, out, err = cli("compare", spec, "--by", "method", capsys=capsys)
    assert code == 0, err
    assert "0.9600 +- 0.0100" in out and "[0.9352, 0.9848]" in out  # t(.975,2)*0.01/sqrt 3
    assert "full - lora: diff 0.0483" in out and "significant" in out

    code, out, _ = cli("compare", spec, "--by", "method", "--format", "json", capsys=capsys)
    data = json.loads(out)
    assert data["paired"][0]["n"] == 3 and data["summary"][1]["method"] == "lora"
    assert data["paired"][0]["p_value"] == pytest.approx(0.00822, abs=1e-4)  # t = 10.96, df 2


@pytest.mark.parametrize(
    "args,message",
    [
        (("--metric", "nope"), "no column 'nope'"),
        (("--by", "params.nope"), "no column 'params.nope'"),
    ],
)
def test_compare_bad_options_exit_2(tmp_path, capsys, args, message):
    spec = _spec(tmp_path)
    _fill(spec, lambda r: {"test_accuracy": 0.9})
    code, _, err = cli("compare", spec, *args, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_compare_without_results_is_a_clear_error(tmp_path, capsys):
    code, _, err = cli("compare", _spec(tmp_path), capsys=capsys)
    assert code == 2 and "no results yet" in err


def test_sweep_picks_on_validation_and_reports_test(tmp_path, capsys):
    spec = _spec(
        tmp_path,
        methods="full",
        params={"lr": [1e-4, 3e-4], "weight_decay": [0.0, 0.1]},
        seeds=[0, 1],
    )

    def metrics(r):
        lr, wd = r.params.lr, r.params.weight_decay
        val = 0.9 if (lr, wd) == (3e-4, 0.0) else 0.8  # best on validation
        test = 0.85 if (lr, wd) == (3e-4, 0.0) else 0.99  # ... but not on test: never peek
        return {"val_accuracy": val + 0.01 * r.seed, "test_accuracy": test}

    _fill(spec, metrics)
    out_dir = tmp_path / "sweep"
    code, out, err = cli(
        "sweep",
        spec,
        "--x",
        "params.lr",
        "--y",
        "params.weight_decay",
        "--out",
        out_dir,
        capsys=capsys,
    )
    assert code == 0, err
    assert "best on val_accuracy: params.lr=0.0003, params.weight_decay=0" in out
    assert "test_accuracy 0.8500" in out and "val_accuracy 0.9050" in out
    png = out_dir / "sweep_val_accuracy.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert len((out_dir / "sweep.csv").read_text().splitlines()) == 5


def test_sweep_refuses_extra_axes(tmp_path, capsys):
    spec = _spec(tmp_path, params={"lr": [1e-4, 3e-4], "weight_decay": [0.0, 0.1]})
    _fill(spec, lambda r: {"val_accuracy": 0.5, "test_accuracy": 0.5})
    code, _, err = cli("sweep", spec, "--out", tmp_path / "s", capsys=capsys)
    assert code == 2 and "also vary in method" in err, err
    assert not (tmp_path / "s").exists()


def test_compare_says_which_direction_is_better(tmp_path, capsys):
    spec = _spec(tmp_path)
    _fill(spec, lambda r: {"test_accuracy": ACC[r.method][r.seed], "test_loss": 1 - r.seed})
    code, out, _ = cli("compare", spec, capsys=capsys)  # default: the first declared test_ metric
    assert code == 0 and out.startswith("test_accuracy (higher is better):")
    assert "-> significant: full is better" in out
    code, out, _ = cli("compare", spec, "--metric", "test_loss", "--format", "json", capsys=capsys)
    assert json.loads(out)["higher_is_better"] is False


def test_sweep_on_a_loss_picks_the_lowest_cell_and_its_test_twin(tmp_path, capsys):
    spec = _spec(tmp_path, methods="full", params={"lr": [1e-4, 3e-4], "weight_decay": [0.0, 0.1]})

    def metrics(r):
        best = (r.params.lr, r.params.weight_decay) == (1e-4, 0.1)
        return {"val_loss": 0.2 if best else 0.5, "test_loss": 0.3 if best else 0.6,
                "val_accuracy": 0.5, "test_accuracy": 0.5}  # fmt: skip

    _fill(spec, metrics)
    args = ("sweep", spec, "--metric", "val_loss", "--out", tmp_path / "s")
    code, out, err = cli(*args, capsys=capsys)
    assert code == 0, err
    assert "val_loss (lower is better)" in out
    assert "best on val_loss: params.lr=0.0001, params.weight_decay=0.1" in out
    assert "test_loss 0.3000" in out  # the test_ twin of the selection metric
    # An explicit direction overrides the declaration (here: the worst cell, on purpose).
    code, out, _ = cli(*args, "--higher-is-better", capsys=capsys)
    assert code == 0 and "best on val_loss: params.lr=0.0001, params.weight_decay=0 " in out


def test_sweep_on_an_undeclared_metric_needs_a_direction(tmp_path, capsys):
    spec = _spec(tmp_path, methods="full", params={"lr": [1e-4, 3e-4], "weight_decay": [0.0, 0.1]})
    _fill(spec, lambda r: {"val_score": r.params.lr, "test_accuracy": 0.5})
    args = ("sweep", spec, "--metric", "val_score", "--out", tmp_path / "s")
    code, _, err = cli(*args, capsys=capsys)
    assert code == 2 and "no direction declared for val_score" in err, err
    code, out, err = cli(*args, "--lower-is-better", capsys=capsys)
    assert code == 0 and "params.lr=0.0001" in out and "test_accuracy 0.5000" in out, err


def test_a_cell_with_a_failed_seed_says_so_and_stays_inside_0_1(tmp_path, capsys):
    spec = _spec(tmp_path)
    acc = {"full": [0.93, None, 0.999], "lora": [0.90, 0.905, 0.93]}
    _fill(spec, lambda r: {"test_accuracy": acc[r.method][r.seed], "test_macro_f1": 0.8})
    exp = open_experiment(spec)  # seed 1 of full failed: its row has no metric
    failed = next(r for r in exp.runs if r.method == "full" and r.seed == 1)
    exp.store.record({"run_id": failed.run_id, "experiment": "cmp", "status": "failed",
                      "config": failed.config, "metrics": {}})  # fmt: skip
    code, out, err = cli("compare", spec, capsys=capsys)
    assert code == 0, err
    full_row = next(line for line in out.splitlines() if line.strip().startswith("full"))
    # t interval of (0.93, 0.999): 0.9645 +- 12.706 * 0.0488 / sqrt 2 -> upper end 1.403
    assert "2 of 3" in full_row and "0.9645 +- 0.0488" in full_row and "1.0000]" in full_row
    assert "full: 2 of 3 seeds have a value" in out
    assert "upper end 1.403 cut to 1" in out and "cut to [0, 1]" in out
    data = json.loads(cli("compare", spec, "--format", "json", capsys=capsys)[1])
    for block in data["metrics"]:
        for row in block["summary"]:
            assert row["ci_low"] is None or 0 <= row["ci_low"] <= row["ci_high"] <= 1


def test_classification_compare_shows_accuracy_and_macro_f1(tmp_path, capsys):
    spec = _spec(tmp_path)
    f1 = {"full": [0.9, 0.7, 0.72], "lora": [0.92, 0.93, 0.925]}
    _fill(spec, lambda r: {"test_accuracy": ACC[r.method][r.seed],
                           "test_macro_f1": f1[r.method][r.seed], "test_loss": 0.3})  # fmt: skip
    code, out, err = cli("compare", spec, capsys=capsys)
    assert code == 0, err
    assert out.startswith("test_accuracy (higher is better)")
    assert "\ntest_macro_f1 (higher is better)" in out and "test_loss" not in out
    assert "paired t-tests by method (test_macro_f1" in out
    data = json.loads(cli("compare", spec, "--format", "json", capsys=capsys)[1])
    assert data["metric"] == "test_accuracy"
    assert [b["metric"] for b in data["metrics"]] == ["test_accuracy", "test_macro_f1"]
    # --metric still compares one metric alone
    out = cli("compare", spec, "--metric", "test_loss", capsys=capsys)[1]
    assert out.startswith("test_loss (lower is better)") and "test_macro_f1" not in out


def test_a_staged_spec_is_compared_stage_by_stage(tmp_path, capsys):
    """One table per stage, with only the settings that stage sets (no NaN columns of the
    others), and a paired test where a stage has two methods."""
    _spec(tmp_path)  # the model folder and data
    spec = write_spec(tmp_path / "staged.yaml", name="staged", output_dir=str(tmp_path / "out"),
                      seeds=[0, 1, 2], stages={
        "sizes": {"models": str(tmp_path / "model"), "methods": "full",
                  "tasks": {"dataset": str(tmp_path / "data.jsonl"), "kind": "classification",
                            "max_length": [16, 32]}},
        "both": {"models": str(tmp_path / "model"), "methods": ["full", "lora"],
                 "tasks": {"dataset": str(tmp_path / "data.jsonl"), "kind": "classification"},
                 "params": {"lr": 3e-4}}})  # fmt: skip
    _fill(spec, lambda r: {"test_accuracy": ACC[r.method][r.seed] - 0.01 * (r.stage == "sizes")})
    code, out, err = cli("compare", spec, capsys=capsys)
    assert code == 0, err
    sizes, both = out.split("== stage both")
    assert "== stage sizes (6 runs) ==" in sizes and "task.max_length" in sizes
    assert "only one value of method" in sizes and "params.lr" not in sizes
    assert "task.max_length" not in both and "full - lora: diff 0.0483" in both
