"""A run another spec reused is reported under the stage of the spec being read."""

from __future__ import annotations

import yaml
from helpers import tiny_lm_spec, write_spec

from scalelab.grid.api import open_experiment


def test_reused_runs_take_the_stage_of_the_spec_being_read(tmp_path, corpus):
    plain = tiny_lm_spec(tmp_path / "plain.yaml", corpus, tmp_path / "out", models=["gpt-d1"])
    fields = yaml.safe_load(plain.read_text())
    stage = {k: fields.pop(k) for k in ("models", "tasks", "methods", "params")}
    staged = write_spec(tmp_path / "staged.yaml", **{**fields, "name": "staged"},
                        stages={"base": stage})  # fmt: skip
    first = open_experiment(plain)
    (run,) = first.runs
    assert run.stage == "main"
    first.store.record({"run_id": run.run_id, "experiment": "tiny", "stage": "main",
                        "status": "done", "config": run.config, "metrics": {"val_loss": 2.5}})  # fmt: skip
    assert first.tables()[0]["stage"].tolist() == ["main"]
    again = open_experiment(staged)
    assert [r.run_id for r in again.runs] == [run.run_id]  # the same run, reused
    table = again.tables()[0]
    assert table["stage"].tolist() == ["base"] and table["val_loss"].tolist() == [2.5]
    assert again.planned()["stage"].tolist() == ["base"]
