"""GSM8K-style math problems from local files."""

from __future__ import annotations

import json

import pytest

from scalelab.config import validate
from scalelab.data.math_data import MathTask, Problem, load_math, load_math_splits, parse_gsm8k
from scalelab.data.tasks import local_data_identity, parse_task
from scalelab.errors import ScalelabError

RECORD = {"question": "1+1?", "answer": "One plus one is <<1+1=2>>2.\n#### 2"}


def test_parse_gsm8k():
    assert parse_gsm8k({**RECORD, "answer": "x\n#### 1,000"}, "t")["answer"] == "1000"
    with pytest.raises(ScalelabError, match="t: answer has no"):
        parse_gsm8k({"question": "q", "answer": "no marker"}, "t")


def test_load_math_file_and_folder(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text(json.dumps(RECORD) + "\n")
    problems = load_math(str(f))
    assert problems == {
        "test": [{"question": "1+1?", "rationale": "One plus one is <<1+1=2>>2.", "answer": "2"}]
    }
    (tmp_path / "train.jsonl").write_text(json.dumps(RECORD) + "\n")
    assert sorted(load_math(str(tmp_path))) == ["test", "train"]
    f.write_text("{not json\n")
    with pytest.raises(ScalelabError, match="test.jsonl:1: not valid JSON"):
        load_math(str(f))
    with pytest.raises(ScalelabError, match="not math"):
        load_math("trec")


def test_math_task_on_local_files_gives_problems(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text((json.dumps(RECORD) + "\n") * 3)
    splits = load_math_splits(MathTask(dataset=str(folder), train_size=2))
    assert {k: len(v) for k, v in splits.items()} == {"test": 3, "train": 2}
    assert splits["train"][1] == Problem(
        id="mine/train/1", question="1+1?", rationale="One plus one is 2.", answer="2"
    )
    with pytest.raises(ScalelabError, match="t: validation_size: dataset .* has no validation"):
        validate(MathTask, {"dataset": str(folder), "validation_size": 1}, "t")
    with pytest.raises(ScalelabError, match="t: train_size: .* has no train split"):
        validate(MathTask, {"dataset": str(folder / "test.jsonl"), "train_size": 1}, "t")
    with pytest.raises(ScalelabError, match="holds templates, not problems"):
        load_math("gsm_symbolic")


def test_math_kind_is_inferred_from_the_catalog(tmp_path):
    task = parse_task("gsm_symbolic", "tasks[0]")
    assert isinstance(task, MathTask) and task.kind == "math"
    assert isinstance(parse_task({"dataset": "gsm8k", "test_size": 10}, "t"), MathTask)
    f = tmp_path / "test.jsonl"
    f.write_text(json.dumps(RECORD) + "\n")
    local = parse_task({"dataset": str(f), "kind": "math"}, "t")
    assert local_data_identity(local) is not None and local_data_identity(task) is None
