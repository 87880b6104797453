"""Active learning (`active`): each query strategy on hand-made probabilities and embeddings,
the pool across rounds (never a labelled, validation or test example), resuming after an
interrupted round, and a tiny experiment end to end (run, `scalelab active`, report)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from helpers import LABEL_WORD, WORDS, cli, save_tiny, write_spec

from scalelab.methods.active_query import (
    coreset_query,
    kmeans_query,
    lowest,
    query,
    random_query,
    uncertainty_scores,
)

# Five pool examples over three classes. By hand:
#   max p:   0.5  0.9  0.4  0.5  0.34  -> least confidence: 4, 2, then 0 (tie with 3: lower)
#   entropy: rows 4 (~ln 3) > 2 > 0 = 3 (ln 2) > 1
#   margin:  0    0.85 0.1  0    0.01  -> 0 and 3 tie at 0 (0 first), then 4
PROBS = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0],
                  [0.34, 0.33, 0.33]])  # fmt: skip


@pytest.mark.parametrize(
    "strategy, n, expected",
    [("least_confidence", 3, [4, 2, 0]), ("entropy", 3, [4, 2, 0]), ("entropy", 4, [4, 2, 0, 3]),
     ("margin", 2, [0, 3]), ("margin", 3, [0, 3, 4])],
)  # fmt: skip
def test_uncertainty_strategies_pick_the_hand_computed_examples(strategy, n, expected):
    picked = query(strategy, n, [0, 0, 1], len(PROBS), probs=PROBS)
    assert picked.tolist() == expected


def test_uncertainty_scores_are_the_textbook_quantities():
    ent = -np.sum(np.where(PROBS > 0, PROBS * np.log(np.where(PROBS > 0, PROBS, 1)), 0), 1)
    assert uncertainty_scores("entropy", PROBS) == pytest.approx(-ent)
    assert uncertainty_scores("least_confidence", PROBS) == pytest.approx(PROBS.max(1))
    top2 = np.sort(PROBS, 1)[:, -2:]
    assert uncertainty_scores("margin", PROBS) == pytest.approx(top2[:, 1] - top2[:, 0])


def test_ties_go_to_the_lower_position_whatever_the_input_order():
    assert lowest(np.array([0.2, 0.1, 0.1, 0.1, 0.0]), 3).tolist() == [4, 1, 2]
    assert lowest(np.zeros(6), 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot choose 7 of a pool of 6"):
        lowest(np.zeros(6), 7)


def test_the_core_set_takes_the_farthest_example_each_time():
    # unit vectors at angles (degrees); labelled at 0. Farthest from 0: 180 (pool 2); then
    # the farthest from {0, 180}: 90 and 270 tie at distance sqrt(2) -> the lower, pool 1
    angles = [10, 90, 180, 270, 20]
    pool = np.array([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles])
    picked = coreset_query(pool * 3.0, np.array([[2.0, 0.0]]), 3)  # lengths do not matter
    assert picked.tolist() == [2, 1, 3]


def test_embedding_kmeans_takes_one_example_per_cluster_nearest_its_centre():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    pool = np.concatenate([c + 0.05 * rng.standard_normal((6, 3)) for c in centres])
    picked = kmeans_query(pool, 3, seed=7)
    assert sorted(p // 6 for p in picked) == [0, 1, 2]  # one per cluster
    unit = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    for p in picked:  # each the member most similar to its cluster's (normalised) mean
        members = unit[(p // 6) * 6 : (p // 6 + 1) * 6]
        mean = members.mean(0) / np.linalg.norm(members.mean(0))
        assert p == (p // 6) * 6 + int(np.argmax(members @ mean))
    assert kmeans_query(pool, 3, seed=7).tolist() == picked.tolist()
    dup = np.ones((4, 2))  # one distinct point, two centres: still two distinct examples
    assert sorted(kmeans_query(dup, 2, seed=0).tolist()) == [0, 1]


def test_random_queries_are_a_function_of_their_seed():
    a = random_query(50, 10, [1, 0, 2])
    assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 50
    assert a.tolist() == random_query(50, 10, [1, 0, 2]).tolist()
    assert a.tolist() != random_query(50, 10, [1, 0, 3]).tolist()


# --- runs ---------------------------------------------------------------------------------

MARK = "heldout"  # a word only validation and test texts contain


def _write_split_data(path, n_train: int = 96, n_held: int = 12):
    """jsonl with a `split` column: 3 learnable classes; validation/test texts marked."""
    rng = random.Random(0)
    rows = []
    for split, n in (("train", n_train), ("validation", n_held), ("test", n_held)):
        for i in range(n):
            label = i % 3
            words = [rng.choice(WORDS[:2]), LABEL_WORD[label], *rng.sample(WORDS[6:], 3)]
            if split != "train":
                words.append(MARK)
            rows.append({"text": " ".join(words) + f" {i}", "label": label, "split": split})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("active_assets")
    return {"bert": save_tiny(root / "bert", "bert"),
            "data": _write_split_data(root / "data.jsonl")}  # fmt: skip


def _spec(tmp_path, tiny, strategies, seeds, out="out"):
    methods = [{"name": "active", "strategy": s} for s in strategies]
    return write_spec(tmp_path / f"{out}.yaml", name="al", output_dir=str(tmp_path / out),
                      models=str(tiny["bert"]), methods=methods, seeds=seeds,
                      tasks={"dataset": str(tiny["data"]), "kind": "classification",
                             "max_length": 16},
                      params={"seed_size": 12, "query_size": 12, "budget": 36, "epochs": 2,
                              "batch_size": 8, "lr": 1e-3},
                      runtime={"threads": 1})  # fmt: skip


def _rounds(runs_dir, run_id) -> dict:
    return json.loads((runs_dir / run_id / "rounds.json").read_text())


def test_rounds_resume_after_an_interrupted_round_and_equal_an_uninterrupted_run(tmp_path, tiny):
    from scalelab.grid.api import open_experiment
    from scalelab.grid.runner import execute

    class Stop(Exception):
        pass

    runs = {}
    for out in ("a", "b"):
        exp = open_experiment(_spec(tmp_path, tiny, ["margin"], [0], out=out))
        runs[out] = (exp.runs[0], exp.spec.runtime, exp.runs_dir)
    run, runtime, runs_dir = runs["a"]

    def stop_in_round_1(event):  # raise inside round 1, after round 0 is recorded
        path = runs_dir / run.run_id / "rounds.json"
        if "loss" in event and path.exists() and len(json.loads(path.read_text())["rounds"]) == 1:
            raise Stop("interrupted")

    row, _ = execute(run, runtime, runs_dir, report=stop_in_round_1)
    assert row["status"] == "failed" and "interrupted" in row["error"]
    assert len(_rounds(runs_dir, run.run_id)["rounds"]) == 1
    row, curve = execute(run, runtime, runs_dir)
    assert row["status"] == "done", row["error"]
    run_b, runtime_b, dir_b = runs["b"]
    assert run_b.run_id == run.run_id
    row_b, curve_b = execute(run_b, runtime_b, dir_b)
    resumed, straight = _rounds(runs_dir, run.run_id), _rounds(dir_b, run.run_id)
    for r, s in zip(resumed["rounds"], straight["rounds"], strict=True):
        assert (r["added"], r["queried"]) == (s["added"], s["queried"])
        for key in ("val_accuracy", "test_accuracy", "test_macro_f1", "val_loss", "steps"):
            assert r["metrics"][key] == s["metrics"][key], key
    assert [p["test_accuracy"] for p in curve] == [p["test_accuracy"] for p in curve_b]
    assert row["metrics"]["test_accuracy"] == row_b["metrics"]["test_accuracy"]
    # killed after its last round was recorded (no store row yet): the rerun trains nothing
    # and reports the recorded result
    again, curve_again = execute(run, runtime, runs_dir)
    assert again["metrics"] == row["metrics"] and curve_again == curve


def test_an_experiment_runs_analyses_and_reports_end_to_end(tmp_path, tiny, capsys):
    from scalelab.data.classification import load_task_data
    from scalelab.grid.api import load_experiment_tables, open_experiment

    spec = _spec(tmp_path, tiny, ["random", "entropy", "kmeans", "coreset"], [0, 1])
    code, _, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0, err
    exp = open_experiment(spec)
    table, curves = load_experiment_tables(spec)
    assert (table["status"] == "done").all() and len(table) == 8
    assert (table["labels"] == 36).all() and (table["rounds"] == 3).all()
    assert (table["train_examples"] == 36).all()
    data = load_task_data(exp.runs[0].task)
    train_texts = [e["text"] for e in data.train]
    seed_sets = {}
    for run in exp.runs:
        state = _rounds(exp.runs_dir, run.run_id)
        labelled: list[int] = []
        for r in state["rounds"]:  # the pool never holds a labelled example
            assert r["added"] == (state["rounds"][r["round"] - 1]["queried"] if r["round"] else
                                  r["added"])  # fmt: skip
            assert not set(r["added"]) & set(labelled) and len(set(r["added"])) == 12
            labelled += r["added"]
            assert r["labels"] == len(labelled) and r["pool"] == len(data.train) - len(labelled)
            assert not set(r["queried"]) & set(labelled)
            assert all(0 <= i < len(data.train) for i in r["queried"])
        # ... nor a validation or test example: those are marked, no labelled text is
        assert not any(MARK in train_texts[i] for i in labelled)
        assert state["rounds"][-1]["queried"] == []
        seed_sets.setdefault(run.seed, set()).add(tuple(state["rounds"][0]["added"]))
    assert all(len(s) == 1 for s in seed_sets.values())  # one seed set per seed
    assert seed_sets[0] != seed_sets[1]
    # the curve: one point per round at 12, 24, 36 labels, the last one the table's
    assert sorted(set(curves["step"])) == [12, 24, 36]
    last = curves[curves["step"] == 36].set_index("run_id")["test_accuracy"]
    assert last.to_dict() == table.set_index("run_id")["test_accuracy"].to_dict()

    code, out, err = cli("active", spec, capsys=capsys)
    assert code == 0, err
    for word in ("random", "entropy", "kmeans", "coreset", "labels", "saving", "95%"):
        assert word in out, word
    code, out, err = cli("active", spec, "--format", "json", capsys=capsys)
    assert code == 0, err
    data = json.loads(out)
    assert {r["strategy"] for r in data["curves"]} == {"random", "entropy", "kmeans", "coreset"}
    assert {r["strategy"] for r in data["savings"]} == {"entropy", "kmeans", "coreset"}
    at_seed = [r for r in data["savings"] if r["labels"] == 12]
    assert all(r["ratio"] == 1.0 for r in at_seed)  # the shared seed set: no saving
    code, _, err = cli("report", spec, "--bootstrap", "20", capsys=capsys)
    assert code == 0, err
    page = (tmp_path / "out" / "al-report" / "report.html").read_text()
    assert "Active learning" in page and "label saving" in page
    assert (tmp_path / "out" / "al-report" / "active_curves.png").exists()
    # bad input: one line, exit 2
    code, _, err = cli("active", tmp_path / "nope.yaml", capsys=capsys)
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize(
    "params, message",
    [({"budget": 30}, r"params.budget \(30\) must be params.seed_size \(12\) plus a whole"),
     ({"budget": 6}, r"params.budget \(6\) is smaller than params.seed_size"),
     ({"strategy": "bald"}, "strategy"),
     ({"budget": 48, "task": {"train_size": 40}}, r"params.budget \(48\) exceeds task.train_size"),
     ({"budget": 36, "task": {"half": "a"}}, "task.half: active learning draws from the whole"),
     ({"budget": 36, "task": {"k_per_class": 4}}, "task.k_per_class: active learning draws")],
)  # fmt: skip
def test_a_budget_that_does_not_fit_the_rounds_is_a_spec_error(tmp_path, tiny, capsys, params,
                                                               message):  # fmt: skip
    from helpers import assert_spec_error

    task = {"dataset": str(tiny["data"]), "kind": "classification", **params.pop("task", {})}
    method = {"name": "active", "strategy": "random", "seed_size": 12, "query_size": 12,
              **params}  # fmt: skip
    assert_spec_error(tmp_path, capsys, message, models=str(tiny["bert"]), methods=[method],
                      tasks=task)  # fmt: skip
