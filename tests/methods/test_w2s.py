"""Weak-to-strong (`w2s`): the halves, the losses against hand computations, the warm-up
ramp, and the chain of runs (weak model trained once, its labels shared by every student)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from helpers import cli, save_tiny, write_dataset, write_spec

from scalelab.data.classification import split_halves
from scalelab.grid.api import load_experiment_tables, open_experiment
from scalelab.methods.label_files import read_labels, read_predictions
from scalelab.methods.losses import (
    aux_coef_at,
    balanced_hard_labels,
    logconf_loss,
    soft_cross_entropy,
)


def test_the_halves_are_disjoint_fixed_stratified_and_cover_the_split():
    labels = [0] * 40 + [1] * 20 + [2] * 11
    a, b = split_halves(labels, seed=3)
    assert not set(a) & set(b) and sorted(a + b) == list(range(71))
    assert abs(len(a) - len(b)) <= 1
    assert (a, b) == split_halves(labels, seed=3)  # fixed by the data seed
    assert (a, b) != split_halves(labels, seed=4)
    for y, n in ((0, 40), (1, 20), (2, 11)):  # each class split in two (within one)
        assert abs(sum(labels[i] == y for i in a) - n / 2) <= 0.5


def test_soft_cross_entropy_is_the_expected_log_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    logq = torch.log_softmax(logits, -1)
    hand = -(0.7 * logq[0, 0] + 0.3 * logq[0, 1] + 0.5 * logq[1, 0] + 0.5 * logq[1, 1]) / 2
    assert soft_cross_entropy(logits, target).item() == pytest.approx(hand.item())


def test_binary_hard_labels_follow_the_weak_class_balance_like_the_reference_threshold():
    p1 = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.55])
    probs = torch.stack([1 - p1, p1], dim=1)
    # weak labels say 40% class 1: 2 of 5 examples, the two with the highest p1 (0.9, 0.6),
    # though 0.55 > 0.5 would be class 1 by argmax
    hard = balanced_hard_labels(probs, torch.tensor([0.6, 0.4]))
    assert hard[:, 1].tolist() == [1, 1, 0, 0, 0]
    # the reference's threshold on p0 at the prior_1 quantile picks the same examples
    threshold = torch.quantile(probs[:, 0], 0.4)
    assert (probs[:, 0] < threshold).tolist() == [True, True, False, False, False]


def test_three_class_hard_labels_against_a_hand_assignment():
    probs = torch.tensor([[0.5, 0.3, 0.2],
                          [0.6, 0.3, 0.1],
                          [0.4, 0.4, 0.2],
                          [0.1, 0.1, 0.8]])  # fmt: skip
    # prior (0.5, 0.25, 0.25) -> quotas 2, 1, 1. In order of decreasing probability:
    # (3, c2) 0.8; (1, c0) 0.6; (0, c0) 0.5 fills class 0; (2, c0) 0.4 no room; (2, c1) 0.4
    hard = balanced_hard_labels(probs, torch.tensor([0.5, 0.25, 0.25]))
    assert hard.argmax(1).tolist() == [0, 0, 1, 2] and hard.sum(0).tolist() == [2, 1, 1]
    # a prior that leans to class 1 moves example 0 there: quotas 1, 2, 1
    hard = balanced_hard_labels(probs, torch.tensor([0.25, 0.5, 0.25]))
    assert hard.argmax(1).tolist() == [1, 0, 1, 2]


def test_the_logconf_target_mixes_weak_labels_and_balanced_hard_labels():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1],
                                     [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]]))  # fmt: skip
    weak = torch.tensor(
        [[0.6, 0.2, 0.2], [0.4, 0.4, 0.2], [0.6, 0.2, 0.2], [0.4, 0.2, 0.4]]
    )  # mean (0.5, 0.25, 0.25)
    loss, target = logconf_loss(logits, weak, coef=0.25)
    hard = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert torch.allclose(target, 0.75 * weak + 0.25 * hard)
    assert loss.item() == pytest.approx(soft_cross_entropy(logits, target).item())
    _, plain = logconf_loss(logits, weak, coef=0.0)  # c = 0: the naive target
    assert torch.equal(plain, weak)


def test_the_confidence_weight_ramps_linearly_over_the_warmup():
    ramp = [aux_coef_at(f, 0.5, 0.2) for f in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)]
    assert ramp == pytest.approx([0.0, 0.125, 0.25, 0.5, 0.5, 0.5])
    assert aux_coef_at(0.0, 0.5, 0.0) == 0.5  # no warm-up: the full weight at once
    # the reference code would give 0.5 * 0.1 at step_frac 0.1 and 0.5 right after 0.2
    assert aux_coef_at(0.1, 0.5, 0.2) != 0.5 * 0.1


def _chain_spec(tmp_path, data, weak, strong, **extra):
    tune = {"epochs": 2, "batch_size": 8, "lr": 1e-3}
    half = {"dataset": str(data), "kind": "classification", "max_length": 16}
    stages = {
        "weak": {"models": str(weak), "methods": "full", "params": tune,
                 "tasks": {**half, "half": "a"}},
        "ceiling": {"models": [str(m) for m in strong], "methods": "full", "params": tune,
                    "tasks": {**half, "half": "b"}},
        "w2s": {"models": [str(m) for m in strong], "params": tune,
                "tasks": {**half, "half": "b"},
                "methods": [{"name": "w2s", "label": "naive", "labels": "@weak"},
                            {"name": "w2s", "label": "logconf", "labels": "@weak",
                             "loss": "logconf"}]},
        **extra,
    }  # fmt: skip
    return write_spec(tmp_path / "w.yaml", name="w", output_dir=str(tmp_path / "out"),
                      seeds=[0, 1], stages=stages, runtime={"threads": 1})  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2s_assets")
    return {"weak": save_tiny(root / "bert1", "bert", n_layer=1),
            "strong": save_tiny(root / "bert2", "bert"),
            "gpt": save_tiny(root / "gpt2", "gpt2"),
            "data": write_dataset(root / "data.jsonl", n=120)}  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny):
    """The weak -> ceiling / w2s chain (bert1 weak; bert2 and gpt2 strong; two seeds: 14 runs)
    run once: the spec. The chain's test and the w2s command's test both read this run."""
    root = tmp_path_factory.mktemp("w2s_chain")
    spec = _chain_spec(root, tiny["data"], tiny["weak"], [tiny["strong"], tiny["gpt"]])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        code, _, err = cli("run", spec, "--quiet")
    assert code == 0, err
    return spec


def test_the_weak_model_is_trained_once_and_its_labels_feed_every_student(chain, capsys):
    spec = chain  # run (once, uninterrupted) by the fixture
    exp = open_experiment(spec)
    by_stage = {s: [r for r in exp.runs if r.stage == s] for s in ("weak", "ceiling", "w2s")}
    assert [len(v) for v in by_stage.values()] == [2, 4, 8]
    weak_ids = {r.seed: r.run_id for r in by_stage["weak"]}
    for r in by_stage["w2s"]:  # each student pairs with the weak run of its own seed
        assert r.config["params"]["labels"] == f"run:{weak_ids[r.seed]}"
        assert weak_ids[r.seed] in r.deps
    table, _ = load_experiment_tables(spec)
    assert (table["status"] == "done").all() and len(table) == 14
    weak = table[table["stage"] == "weak"]
    runs_dir = exp.runs_dir
    for _, w in weak.iterrows():  # soft labels on half B, scored against B's truth
        labels = read_labels(runs_dir / w["run_id"])
        assert labels.step == 0 and labels.probs.shape == (len(labels.index), 3)
        assert np.allclose(labels.probs.sum(1), 1, atol=1e-5)
        assert w["labels_accuracy"] == pytest.approx(labels.accuracy)
    students = table[table["stage"] == "w2s"]
    assert set(students["variant"]) == {"naive", "logconf"}
    assert (students["chain_step"] == 1).all() and (students["chain_steps"] == 1).all()
    # a student trains on exactly the examples its weak labels cover: all of half B
    b_size = len(read_labels(runs_dir / weak.iloc[0]["run_id"]).index)
    assert (students["train_examples"] == b_size).all()
    naive = students[students["variant"] == "naive"].set_index(["model", "seed"])
    conf = students[students["variant"] == "logconf"].set_index(["model", "seed"])
    assert (naive["val_loss"] != conf["val_loss"]).all()  # the two losses train differently
    probs, truth = read_predictions(runs_dir / students.iloc[0]["run_id"])
    assert probs.shape == (len(truth), 3)
    # running again trains nothing: the weak runs stay as they were
    capsys.readouterr()
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0 and "0 done, 0 failed, 14 already done" in out


def test_a_bootstrap_chain_uses_fresh_examples_at_each_step(tmp_path, tiny):
    tune = {"epochs": 1, "batch_size": 8, "lr": 1e-3}
    half = {"dataset": str(tiny["data"]), "kind": "classification", "max_length": 16}
    boot = {"name": "w2s", "bootstrap_steps": 1}
    stages = {
        "weak": {"models": str(tiny["weak"]), "methods": "full", "params": tune,
                 "tasks": {**half, "half": "a"}},
        "mid": {"models": str(tiny["weak"]), "params": tune, "tasks": {**half, "half": "b"},
                "methods": {**boot, "labels": "@weak"}},
        "top": {"models": str(tiny["strong"]), "params": tune, "tasks": {**half, "half": "b"},
                "methods": {**boot, "labels": "@mid"}},
    }  # fmt: skip
    spec = write_spec(tmp_path / "b.yaml", name="b", output_dir=str(tmp_path / "out"),
                      seeds=[0], stages=stages, runtime={"threads": 1})  # fmt: skip
    code, _, err = cli("run", spec, "--quiet")
    assert code == 0, err
    table, _ = load_experiment_tables(spec)
    runs_dir = open_experiment(spec).runs_dir
    row = {s: table[table["stage"] == s].iloc[0] for s in ("weak", "mid", "top")}
    weak = read_labels(runs_dir / row["weak"]["run_id"])
    mid = read_labels(runs_dir / row["mid"]["run_id"])
    assert (mid.step, mid.steps) == (1, 2)
    # the intermediate trains on half of B and labels the other half for the last step
    trained = row["mid"]["train_examples"]
    assert trained + len(mid.index) == len(weak.index)
    assert set(mid.index) < set(weak.index)
    assert row["top"]["train_examples"] == len(mid.index)
    assert (row["top"]["chain_step"], row["top"]["chain_steps"]) == (2, 2)
    assert not (runs_dir / row["top"]["run_id"] / "labels.npz").exists()


def test_a_student_on_the_weak_models_own_half_is_a_spec_error(tmp_path, tiny, capsys):
    spec = _chain_spec(tmp_path, tiny["data"], tiny["weak"], [tiny["strong"]])
    import yaml

    raw = yaml.safe_load(spec.read_text())
    raw["stages"]["w2s"]["tasks"]["half"] = "a"
    spec.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "params.labels" in err and "other half" in err
    assert not (tmp_path / "out").exists()
    raw["stages"]["w2s"]["tasks"].pop("half")
    spec.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "task.half" in err and not (tmp_path / "out").exists()
    raw["stages"]["w2s"]["tasks"]["half"] = "b"
    raw["stages"]["w2s"]["seeds"] = [0]
    spec.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "stages.w2s.seeds" in err and not (tmp_path / "out").exists()


def test_the_w2s_command_prints_every_accuracy_and_writes_the_figures(tmp_path, chain, capsys):
    spec = chain  # the chain's runs, done
    figs = tmp_path / "figs"
    code, out, err = cli("w2s", spec, "--out", figs, "--bootstrap", 50, capsys=capsys)
    assert code == 0, err
    for word in (
        "weak ceiling",
        "strong ceiling",
        "naive",
        "logconf",
        "median PGR",
        "logconf - naive",
        "seeds and test examples",
        "bert1",
        "bert2",
        "gpt2",
    ):
        assert word in out, word
    # every pair's PGR, with the accuracies it comes from, beside the JSON's pairs
    pairs = json.loads(cli("w2s", spec, "--json", "--bootstrap", 50, capsys=capsys)[1])["pairs"]
    for p in pairs:
        pgr = "n/a" if p["pgr"] is None else f"{p['pgr']:+.3f}"  # an excluded pair: no PGR
        assert f"{p['method']:<12} {p['weak']} -> {p['strong']}: {pgr}" in out
        assert f"(w2s {p['acc_w2s']:.4f}, weak {p['acc_weak']:.4f}" in out
    names = {p.name for p in figs.glob("*.png")}
    assert names == {"scaling_behavior.png", "error_distribution.png", "pgr_heatmap.png"}
    code, _, err = cli("report", spec, capsys=capsys)
    assert code == 0, err
    page = (spec.parent / "out" / "w-report" / "report.html").read_text()
    assert "Weak-to-strong: performance gap recovered (PGR)" in page
    assert "median PGR" in page and "where their weak supervisor was wrong" in page
    assert "(1000 draws, paired across methods)" in page  # the command's default: one answer
    # results without students: one line saying so, not a missing column
    raw = yaml.safe_load(spec.read_text())
    raw["stages"] = {k: v for k, v in raw["stages"].items() if k == "weak"}
    only_weak = tmp_path / "weak_only.yaml"
    only_weak.write_text(yaml.safe_dump(raw))
    code, _, err = cli("w2s", only_weak, capsys=capsys)
    assert code == 2 and "no w2s runs" in err and err.count("\n") == 1, err
    # bad input: one line, exit 2, nothing written
    code, _, err = cli("w2s", tmp_path / "nope.yaml", "--out", tmp_path / "x", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "x").exists()
