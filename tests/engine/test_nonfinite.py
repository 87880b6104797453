"""Never a wrong `done`: a NaN or infinite loss, metric or curve value fails the run, naming
where; a NaN or infinite hyper-parameter is a spec error before anything is written."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers import cli, tiny_lm_spec

from scalelab.engine.loop import first_nonfinite
from scalelab.grid.store import ResultsStore
from scalelab.methods.finetune import FullParams, LoraParams


def _run(tmp_path, corpus, capsys, **params):
    base = {"tokens": 8 * 32 * 10, "batch_size": 8, "lr": 3e-3, "grad_clip": 0}
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d1"],
                        params={**base, **params})  # fmt: skip
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    return code, out, err, ResultsStore(tmp_path / "out" / "results.sqlite").table().iloc[0]


def test_weights_that_go_bad_after_the_last_loss_fail_the_run(tmp_path, corpus, capsys):
    """One step at lr 1e30: its loss is finite (computed before the update), the weights
    after it are not. The code before this check stored it as done with NaN metrics."""
    code, out, err, row = _run(tmp_path, corpus, capsys, tokens=8 * 32, lr=1e30)
    assert code == 1 and row["status"] == "failed", out
    assert re.match(r"training diverged: validation val_loss is (nan|inf) at step 1 ", row["error"])
    error_file = f"runs/{row['run_id']}/error.txt"
    assert row["error"].endswith(f"(see {error_file})")
    assert f"see {error_file}" in " ".join(err.split())  # the progress line (stderr), unwrapped
    assert "ScalelabError" in (tmp_path / "out" / error_file).read_text()  # the traceback
    assert "val_loss" not in row.index  # a failed row stores no metrics


def test_a_diverging_loss_names_its_step(tmp_path, corpus, capsys):
    code, _, _, row = _run(tmp_path, corpus, capsys, lr=1e30, eval_every=50)
    assert code == 1 and row["status"] == "failed"
    assert re.match(r"training diverged: the loss is (nan|inf) at step 2 ", row["error"]), row[
        "error"
    ]


def test_first_nonfinite_names_the_metric_or_the_curve_step():
    assert first_nonfinite({"a": 1.0, "b": None, "c": True, "d": "x", "e": 3}) is None
    assert first_nonfinite({"test_loss": float("nan")}) == "test_loss is nan"
    assert first_nonfinite({"ppl": np.float32("inf")}) == "ppl is inf"
    assert first_nonfinite({"t": torch.tensor(float("-inf"))}) == "t is -inf"
    assert first_nonfinite({"per_class": {"cat": [0.5, math.nan]}}) == "per_class.cat.1 is nan"
    curve = [{"step": 10, "val_loss": 2.0, "train_loss": None}, {"step": 20, "val_loss": math.inf}]
    assert first_nonfinite({"val_loss": 1.0}, curve) == "val_loss is inf at step 20 of the curve"


SPEC_ERRORS = {
    "lr": (math.inf, "params.lr: Input should be a finite number (got inf)"),
    "weight_decay": (math.inf, "params.weight_decay: Input should be a finite number"),
    "grad_clip": (math.nan, "params.grad_clip: Input should be a finite number (got nan)"),
    "beta2": (math.nan, "params.beta2: Input should be a finite number"),
    "min_lr_ratio": (-math.inf, "params.min_lr_ratio: Input should be a finite number"),
    "dropout": (math.nan, "params.dropout: Input should be a finite number"),
}


@pytest.mark.parametrize("field", sorted(SPEC_ERRORS))
def test_a_non_finite_hyper_parameter_is_a_spec_error(tmp_path, corpus, capsys, field):
    value, message = SPEC_ERRORS[field]
    params = {"tokens": 8 * 32 * 10, "batch_size": 8, field: value}
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", params=params)
    assert (".nan" if math.isnan(value) else ".inf") in spec.read_text()  # YAML's spelling
    for args in (["--dry-run"], ["--quiet"]):
        code, out, err = cli("run", spec, *args, capsys=capsys)
        assert code == 2 and not out
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "cls, field, value",
    [(FullParams, "lr", math.inf), (FullParams, "label_smoothing", math.nan),
     (LoraParams, "lora_alpha", math.inf), (LoraParams, "lora_dropout", math.nan),
     (FullParams, "lr", -1e-3), (FullParams, "weight_decay", -0.1)],
)  # fmt: skip
def test_fine_tuning_params_refuse_non_finite_and_meaningless_values(cls, field, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        cls(**{field: value})
