"""Few-shot draws of a classification task (`k_per_class`, `draw`): stratified, fixed by
(data_seed, draw), different across draws, nested in k; errors at spec time; run ids of
tasks without them unchanged."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import cli, write_dataset, write_spec

from scalelab.data.classification import ClassificationTask, draw_k_per_class, load_task_data
from scalelab.data.loaders import stratified_subsample
from scalelab.engine.args import identity
from scalelab.errors import ScalelabError

NAMES = ["a", "b", "c"]
LABELS = [0] * 40 + [1] * 25 + [2] * 12  # unbalanced on purpose


def test_a_draw_takes_exactly_k_of_each_class_fixed_by_data_seed_and_draw():
    for k in (1, 5, 12):
        picked = draw_k_per_class(LABELS, k, data_seed=0, draw=0, names=NAMES)
        assert Counter(LABELS[i] for i in picked) == {0: k, 1: k, 2: k}
        assert picked == sorted(set(picked))  # ascending positions, no repeats
        assert picked == draw_k_per_class(LABELS, k, 0, 0, NAMES)  # fixed
    five = {(seed, draw): draw_k_per_class(LABELS, 5, seed, draw, NAMES)
            for seed in (0, 1) for draw in (0, 1, 2)}  # fmt: skip
    assert len({tuple(v) for v in five.values()}) == 6  # every (seed, draw) its own set
    # nested in k: a larger k keeps the smaller k's examples (same seed and draw)
    for draw in (0, 1):
        sets = [set(draw_k_per_class(LABELS, k, 3, draw, NAMES)) for k in (1, 2, 5, 12)]
        assert all(small <= big for small, big in zip(sets, sets[1:], strict=False))


def test_a_class_with_fewer_than_k_examples_is_one_error_naming_it():
    with pytest.raises(ScalelabError) as err:
        draw_k_per_class(LABELS, 13, 0, 0, NAMES)
    assert str(err.value) == (
        "task.k_per_class 13: class 'c' (12) has fewer than 13 examples in the training split"
    )
    with pytest.raises(ScalelabError, match=r"classes 'b' \(25\), 'c' \(12\) have fewer"):
        draw_k_per_class(LABELS, 30, 0, 0, NAMES)
    with pytest.raises(ScalelabError, match=r"class 'd' \(0\)"):  # a named class with none
        draw_k_per_class(LABELS, 1, 0, 0, [*NAMES, "d"])


def test_the_task_trains_on_its_draw_from_the_train_size_subsample(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", n=90)  # 72 train, 24 a class
    base = {"dataset": str(data), "kind": "classification"}
    full = load_task_data(ClassificationTask(**base))
    shots = load_task_data(ClassificationTask(**base, k_per_class=4, draw=1))
    assert Counter(e["label"] for e in shots.train) == {0: 4, 1: 4, 2: 4}
    assert [full.train[i] for i in shots.train_index] == shots.train
    assert shots.validation == full.validation and shots.test == full.test  # untouched
    other = load_task_data(ClassificationTask(**base, k_per_class=4, draw=2))
    assert other.train != shots.train
    again = load_task_data(ClassificationTask(**base, k_per_class=4, draw=1))
    assert again.train == shots.train
    sub = load_task_data(ClassificationTask(**base, train_size=30, k_per_class=3))
    pool = stratified_subsample(full.train, 30, 0)
    assert [pool[i] for i in sub.train_index] == sub.train and len(sub.train) == 9


def test_defaults_leave_the_run_identity_as_it_was(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", n=30)
    task = ClassificationTask(dataset=str(data), kind="classification", train_size=12)
    old = {"kind", "dataset", "max_length", "train_size", "val_size", "data_seed"}
    assert set(identity(task)) == old  # no k_per_class, no draw: stored ids stay
    shots = ClassificationTask(dataset=str(data), kind="classification", k_per_class=2)
    assert identity(shots)["k_per_class"] == 2 and "draw" not in identity(shots)
    assert identity(shots.model_copy(update={"draw": 1}))["draw"] == 1


@pytest.mark.parametrize(
    "task,message",
    [
        ({"k_per_class": 2, "half": "a"}, "task.k_per_class cannot be combined with task.half"),
        ({"draw": 1}, "task.draw 1 needs task.k_per_class"),
        ({"k_per_class": 25}, "task.k_per_class 25: classes '0' (24), '1' (24), '2' (24) have"),
        ({"k_per_class": 5, "train_size": 12},
         "fewer than 5 examples in the training split's train_size 12 subsample"),
        ({"k_per_class": 0}, "k_per_class"),
    ],
)  # fmt: skip
def test_bad_few_shot_tasks_are_one_line_at_spec_time(tmp_path, capsys, task, message):
    data = write_dataset(tmp_path / "d.jsonl", n=90)
    spec = write_spec(tmp_path / "c.yaml", name="c", output_dir=str(tmp_path / "out"),
                      models="minilm-l6", methods="full",
                      tasks={"dataset": str(data), "kind": "classification", **task})  # fmt: skip
    code, _, err = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
