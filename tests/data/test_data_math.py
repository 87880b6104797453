"""GSM8K-style math problems from local files."""

from __future__ import annotations

import json

import pytest

from scalelab.data.math_data import load_math, parse_gsm8k
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
