"""The report's classification section on a runs table, eval.json files and curves written
by the test (the metrics are made up; what is checked is what the page says about them)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from scalelab.errors import ScalelabError
from scalelab.eval.classification import classification_report
from scalelab.report.build import build_report

CLASSES = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
SUPPORT = [9, 138, 94, 65, 81, 113]


def _eval_json(rng: np.random.Generator, drop_abbr: bool) -> dict:
    """A test-split report whose predictions are right 93% of the time; ABBR never
    predicted when `drop_abbr`."""
    y = np.repeat(np.arange(6), SUPPORT)
    pred = np.where(rng.random(len(y)) < 0.93, y, rng.integers(0, 6, len(y)))
    if drop_abbr:
        pred = np.where(pred == 0, 1, pred)
    return {"test": classification_report(y, pred, CLASSES)}


@pytest.fixture
def experiment(tmp_path):
    rng = np.random.default_rng(0)
    rows, curves = [], []
    acc = {"full": [0.93, 0.999, None], "lora": [0.94, 0.95, 0.945]}  # full seed 2 failed
    for method in ("full", "lora"):
        for seed in range(3):
            run_id = f"{method[0]}{seed:015x}"
            ok = acc[method][seed] is not None
            rows.append({"run_id": run_id, "experiment": "t", "stage": "main",
                         "status": "done" if ok else "failed", "model": "minilm-l6",
                         "method": method, "seed": seed, "task.dataset": "trec",
                         "task.max_length": 32, "params.epochs": 3, "params.batch_size": 32,
                         "test_accuracy": acc[method][seed], "val_accuracy": 0.9 + seed / 100,
                         "test_macro_f1": (acc[method][seed] or 0) - 0.1 * (method == "full"),
                         "best_step": 126, "train_examples": 2000, "total_params": 22.7e6,
                         "error": None if ok else "killed", "git_commit": "abc123def4567890",
                         "versions": json.dumps({"python": "3.12", "torch": "2.13.0"})})  # fmt: skip
            if not ok:
                continue
            folder = tmp_path / "runs" / run_id
            folder.mkdir(parents=True)
            report = _eval_json(rng, drop_abbr=method == "full")
            (folder / "eval.json").write_text(json.dumps(report))
            for step in (0, 63, 126):
                curves.append({"run_id": run_id, "step": step, "tokens": step * 32,
                               "train_loss": None if step == 0 else 1 / (1 + step),
                               "val_loss": 1.8 - step / 100,
                               "val_accuracy": 0.9 + seed / 100 if step == 126 else 0.2 + step / 200})  # fmt: skip
    planned = pd.DataFrame(rows)[["run_id", "stage", "model", "method", "seed",
                                  "task.dataset", "task.max_length", "params.epochs",
                                  "params.batch_size"]]  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(curves), tmp_path / "runs", planned


def test_classification_report_says_what_a_researcher_needs(experiment, tmp_path):
    runs, curves, runs_dir, planned = experiment
    out = tmp_path / "report"
    page = build_report(runs, curves, out, runs_dir=runs_dir, planned=planned).read_text()
    text = re.sub(r"data:image/png;base64,[^\"]+", "", page)
    assert "Classification" in text and "Set-up" in text
    assert "train 2,000 / test 500 examples" in text  # sizes from the table and eval.json
    assert "2 of 3 seeds" in text  # full: seed 2 failed
    assert "is failed: killed" in text
    # Every interval of a bounded metric stays in [0, 1]; full's t interval would pass 1.
    for lo, hi in re.findall(r"\[([-0-9.]+), ([-0-9.]+)\]", text):
        assert 0 <= float(lo) <= float(hi) <= 1, (lo, hi)
    assert "[0.0000, 1.0000]" in text or "1.0000]" in text
    # The worst class of full fine-tuning is ABBR, F1 0 in both of its seeds.
    row = next(r for r in text.split("<tr>") if r.startswith("<td class='l'>minilm-l6 full"))
    assert "ABBR (n=9): F1 0.000 (F1 0 in 2 of 2 seeds)" in row
    for name in ("metrics", "per_class_f1", "confusion", "val_accuracy_curves"):
        assert (out / f"{name}.png").is_file(), name
    assert "best run: minilm-l6 lora seed 2" in text  # highest validation accuracy
    from scalelab.io import umask

    for f in [out / "report.html", *out.glob("*.png")]:  # modes follow the umask
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask(), f


def test_nothing_to_report_writes_nothing(tmp_path):
    runs = pd.DataFrame({"run_id": ["a"], "status": ["done"], "note": ["x"]})
    out = tmp_path / "never"
    with pytest.raises(ScalelabError, match="nothing to report"):
        build_report(runs, None, out)
    assert not out.exists()


def test_per_class_f1_keeps_the_confusion_matrix_order_of_classes():
    from scalelab.report.classification import per_class_table

    trec = ["DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"]  # the dataset's label order
    rep = {"test": classification_report(np.repeat(np.arange(6), SUPPORT),
                                         np.repeat(np.arange(6), SUPPORT), trec)}  # fmt: skip
    stored = json.loads(json.dumps(rep, sort_keys=True))  # as eval.json holds it
    assert list(stored["test"]["per_class"]) == sorted(trec) and stored["test"]["labels"] == trec
    runs = pd.DataFrame({"run_id": ["r0"], "seed": [0], "_label": ["minilm-l6 full"]})
    assert list(per_class_table(runs, {"r0": stored})["class"]) == trec
