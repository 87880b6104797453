"""Corpus sources of any size: shards (text, JSONL, parquet; globs), streamed in chunks;
a train-token cap as a data-budget axis that leaves existing run ids alone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_spec

from scalelab.data import lm_sources
from scalelab.data.lm_tokens import prepare_lm_data
from scalelab.data.loaders import lm_splits
from scalelab.data.tasks import LMTask
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.grid.spec import expand, load_spec

REPO = Path(__file__).resolve().parents[2]
BYTE = TokenizerSpec(kind="byte")


def _docs(prefix: str, n: int) -> list[str]:
    return [f"{prefix} document {i}: some words here.\nA second line {i}." for i in range(n)]


def _sharded(folder: Path) -> dict[str, list[str]]:
    """train: two JSONL shards (one gzipped) and a parquet one; valid.txt; test/ folder."""
    folder.mkdir()
    train = _docs("train", 90)
    with gzip.open(folder / "train-00000.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(train[:30]))
    (folder / "train-00001.jsonl").write_text(
        "".join(json.dumps({"text": d}) + "\n\n" for d in train[30:60])  # blank lines skipped
    )
    pq.write_table(pa.table({"text": train[60:]}), folder / "train_00002.parquet")
    valid = _docs("valid", 1)
    (folder / "valid.txt").write_text(valid[0])
    (folder / "test").mkdir()
    test = _docs("test", 12)
    for i in (0, 1):
        part = test[6 * i : 6 * i + 6]
        (folder / "test" / f"part-{i}.jsonl").write_text(
            "".join(json.dumps({"text": d}) + "\n" for d in part)
        )
    return {"train": train, "validation": valid, "test": test}


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_shards_are_documents_joined_by_a_blank_line(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(lm_sources, "CHUNK_CHARS", chunk)
    docs = _sharded(tmp_path / "c")
    splits = lm_splits(str(tmp_path / "c"))
    for split, want in docs.items():
        assert splits[split].text() == "\n\n".join(want), split
        assert sum(n for _, n in splits[split].chunks()) == len(want)


def test_one_record_file_per_split_is_found(tmp_path):
    for split in ("train", "valid", "test"):
        rows = [{"text": f"{split} {i}"} for i in range(3)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "train.txt").write_text("plain text wins")  # as before: text files first
    splits = lm_splits(str(tmp_path))
    assert splits["train"].text() == "plain text wins"
    assert splits["validation"].text() == "valid 0\n\nvalid 1\n\nvalid 2"


def test_globs_and_text_field_pick_the_files(tmp_path):
    folder = tmp_path / "c"
    (folder / "shards").mkdir(parents=True)
    for split in ("tr", "va", "te"):
        for i in range(2):
            rows = [{"body": f"{split} {i} {k} " * 20} for k in range(5)]
            (folder / "shards" / f"{split}-{i}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows)
            )
    files = {"train": "shards/tr-*.jsonl", "validation": "shards/va-*", "test": "shards/te-*"}
    task = LMTask(dataset=str(folder), files=files, text_field="body", tokenizer=BYTE, seq_len=32,
                  max_train_tokens=1000)  # fmt: skip
    data = prepare_lm_data(task)
    assert len(data.ids["train"]) == 1000 and data.documents["train"] == 10
    assert bytes(data.ids["validation"][:5].tolist()) == b"va 0 "


def test_bad_sources_are_one_line_errors(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "train-0.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    (folder / "valid.txt").write_text("x" * 100)
    (folder / "test.txt").write_text("x" * 100)
    with pytest.raises(ValueError, match=r"files.validation: no file matches 'nope\*'"):
        LMTask(dataset=str(folder), files={"train": "*", "validation": "nope*", "test": "*"})
    with pytest.raises(ScalelabError, match=r"train-0.jsonl line 2: no field 'text'"):
        lm_splits(str(folder))["train"].text()
    # a broken record is named by the file's line, not the record's own "line 1"
    (folder / "train-0.jsonl").write_text('{"text": "a"}\n' * 2500 + '{"text": "b\tc\x01"\n')
    with pytest.raises(ScalelabError, match=r"train-0.jsonl line 2501: not a JSON record \("):
        lm_splits(str(folder))["train"].text()


def test_a_token_cap_is_an_axis_that_leaves_existing_ids_alone(tmp_path, corpus):
    quickstart = expand(load_spec(REPO / "examples" / "quickstart.yaml"))
    # The ids the README shows, from before the cap (and files, text_field) existed.
    assert [r.run_id[:8] for r in quickstart] == [
        "b03a69a4", "79ef8d0f", "0b04dc59", "5aa49cc8", "924ce158"
    ]  # fmt: skip
    task = {"dataset": str(corpus), "kind": "lm", "tokenizer": {"kind": "byte"}, "seq_len": 32}
    spec = write_spec(tmp_path / "e.yaml", name="cap", models="gpt-d1", methods="pretrain",
                      tasks={**task, "max_train_tokens": [None, 5000, 20000]},
                      params={"tokens": 8192, "batch_size": 8})  # fmt: skip
    runs = expand(load_spec(spec))
    assert len({r.run_id for r in runs}) == 3
    configs = [r.config["task"] for r in runs]
    assert "max_train_tokens" not in configs[0] and configs[1]["max_train_tokens"] == 5000
    plain = write_spec(tmp_path / "p.yaml", name="p", models="gpt-d1", methods="pretrain",
                       tasks=task, params={"tokens": 8192, "batch_size": 8})  # fmt: skip
    assert expand(load_spec(plain))[0].run_id == runs[0].run_id


def test_hub_datasets_stream_records(tmp_path):
    # A local dataset folder streams through the same `datasets` path as a Hub id.
    from scalelab.data.lm_sources import HubStream, SplitText

    folder = tmp_path / "ds"
    folder.mkdir()
    docs = _docs("hub", 7)
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    split = SplitText("train", (HubStream(str(folder), None, "train", "text"),))
    assert split.text() == "\n\n".join(docs) and len(split.digest()) == 64


def test_a_hub_corpus_offline_is_a_one_line_spec_error(tmp_path, monkeypatch):
    from scalelab.data import sources
    from scalelab.grid.spec import load_spec

    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    spec = write_spec(tmp_path / "h.yaml", name="h", models="gpt-d1", methods="pretrain",
                      tasks={"dataset": "hub:Salesforce/wikitext:wikitext-103-raw-v1", "kind": "lm"},
                      params={"tokens": 8192})  # fmt: skip
    with pytest.raises(
        ScalelabError, match=r"streams from the Hugging Face Hub, which is unreachable"
    ):
        expand(load_spec(spec))
