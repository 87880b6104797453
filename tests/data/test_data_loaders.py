"""LM text and classification loaders: local files, fixed splits, stratified subsamples."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from scalelab.data import catalog
from scalelab.data.catalog import DatasetEntry, register_dataset
from scalelab.data.loaders import (
    load_classification,
    load_lm_text,
    stratified_subsample,
)
from scalelab.data.sources import LocalSource
from scalelab.errors import ScalelabError

SPLITS = ("train", "validation", "test")


def _labelled(n: int, labels=("neg", "pos", "meh"), weights=(6, 3, 1)) -> list[dict]:
    pool = [lab for lab, w in zip(labels, weights, strict=True) for _ in range(w)]
    return [{"text": f"example number {i}", "label": pool[i % len(pool)]} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- LM text -------------------------------------------------------------------------


def test_lm_folder_with_split_files(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\n")
    (tmp_path / "valid.txt").write_text("d\n")
    with gzip.open(tmp_path / "test.raw.gz", "wt") as f:
        f.write("e f\n")
    assert load_lm_text(str(tmp_path)) == {"train": "a b c\n", "validation": "d\n", "test": "e f\n"}


def test_lm_folder_missing_split(tmp_path):
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(ScalelabError, match="missing: validation, test"):
        load_lm_text(str(tmp_path))


def test_lm_single_file_contiguous_90_5_5(tmp_path):
    lines = [f"line {i}\n" for i in range(100)]
    f = tmp_path / "corpus.txt"
    f.write_text("".join(lines))
    out = load_lm_text(str(f))
    assert list(out) == list(SPLITS)
    assert out["train"] == "".join(lines[:90])
    assert out["validation"] == "".join(lines[90:95])
    assert out["test"] == "".join(lines[95:])


def test_lm_unknown_name_lists_known():
    with pytest.raises(ScalelabError, match="known: .*wikitext2"):
        load_lm_text("no_such_corpus")


def test_lm_unreadable_file_named(tmp_path):
    (tmp_path / "train.txt.gz").write_bytes(b"not gzip at all")
    (tmp_path / "valid.txt").write_text("x")
    (tmp_path / "test.txt").write_text("x")
    with pytest.raises(ScalelabError, match="cannot read .*train.txt.gz"):
        load_lm_text(str(tmp_path))


def test_lm_wrong_kind():
    with pytest.raises(ScalelabError, match="'trec' is a classification dataset, not lm"):
        load_lm_text("trec")


def test_lm_registered_documents(registry, tmp_path):
    docs = tmp_path / "docs.jsonl"
    _write_jsonl(docs, [{"t": f"doc {i}"} for i in range(20)])
    register_dataset(
        DatasetEntry(
            name="docs",
            kind="lm",
            description="test",
            sources=({"data": LocalSource(str(docs))},),
            read=lambda files: [json.loads(x)["t"] for x in files["data"].open()],
        )
    )
    out = load_lm_text("docs")
    assert out["train"].split("\n\n") == [f"doc {i}" for i in range(18)]
    assert out["validation"] == "doc 18" and out["test"] == "doc 19"


# --- classification --------------------------------------------------------------------


def test_local_file_string_labels_stratified(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", _labelled(200))
    data = load_classification(str(f))
    assert data.label_names == ["meh", "neg", "pos"]  # sorted
    assert [len(data.split(s)) for s in SPLITS] == [160, 20, 20]
    for split in SPLITS:  # each split keeps the 1:3:6 class mix
        assert Counter(ex["label"] for ex in data.split(split))[0] == len(data.split(split)) // 10
    texts = [ex["text"] for s in SPLITS for ex in data.split(s)]
    assert len(set(texts)) == 200  # disjoint and complete
    again = load_classification(str(f))
    assert (again.train, again.validation, again.test) == (data.train, data.validation, data.test)


def test_local_csv_int_labels_and_missing_column(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(30)))
    data = load_classification(str(f))
    assert data.label_names == ["0", "1"] and data.num_labels == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\na,0\n")
    with pytest.raises(ScalelabError, match="missing: text"):
        load_classification(str(bad))


def test_local_folder_carves_validation_from_train(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", _labelled(100))
    _write_jsonl(tmp_path / "test.jsonl", _labelled(10))
    data = load_classification(str(tmp_path))
    assert [len(data.split(s)) for s in SPLITS] == [90, 10, 10]
    assert not {e["text"] for e in data.train} & {e["text"] for e in data.validation}


def test_registered_splits_are_stored_and_reused(registry, tmp_path):
    f = tmp_path / "raw.csv"
    rows = ["text,cat"] + [f"review {i},{['bad', 'good', 'plot'][i % 3]}" for i in range(90)]
    rows.append("review 0,good")  # a duplicate text: dropped so it cannot leak across splits
    f.write_text("\n".join(rows) + "\n")
    register_dataset(
        DatasetEntry(
            name="reviews",
            kind="classification",
            description="test",
            sources=({"data": LocalSource(str(f))},),
            label_column="cat",
            label_names=("bad", "good"),
            label_values=("bad", "good"),
        )
    )
    data = load_classification("reviews")
    assert data.label_names == ["bad", "good"]
    assert [len(data.split(s)) for s in SPLITS] == [48, 6, 6]
    f.unlink()  # the stored splits no longer need the source
    again = load_classification("reviews")
    assert (again.train, again.validation, again.test) == (data.train, data.validation, data.test)
    assert catalog.is_cached(catalog.get_dataset("reviews")) is False


def test_registered_row_splits(registry, tmp_path):
    f = tmp_path / "q.csv"
    f.write_text("text,y\n" + "".join(f"q{i},{i % 2}\n" for i in range(120)))
    register_dataset(
        DatasetEntry(
            name="q",
            kind="classification",
            description="test",
            sources=({"data": LocalSource(str(f))},),
            label_column="y",
            label_names=("a", "b"),
            row_splits={"train": (0, 100), "test": (100, 120)},
        )
    )
    data = load_classification("q")
    assert [len(data.split(s)) for s in SPLITS] == [90, 10, 20]
    assert [e["text"] for e in data.test] == [f"q{i}" for i in range(100, 120)]


def test_classification_errors(tmp_path):
    with pytest.raises(ScalelabError, match="known: .*trec"):
        load_classification("nope")
    with pytest.raises(ScalelabError, match="not classification"):
        load_classification("wikitext2")


# --- stratified subsample ----------------------------------------------------------------


def _ints(n: int, weights=(6, 3, 1)) -> list[dict]:
    return [
        {**ex, "label": ["neg", "pos", "meh"].index(ex["label"])}
        for ex in _labelled(n, weights=weights)
    ]


def test_subsample_keeps_proportions_and_is_deterministic():
    pool = _ints(1000)
    sub = stratified_subsample(pool, 100, seed=3)
    assert len(sub) == 100
    assert Counter(e["label"] for e in sub) == {0: 60, 1: 30, 2: 10}
    assert sub == stratified_subsample(pool, 100, seed=3)
    assert sub != stratified_subsample(pool, 100, seed=4)
    assert [pool.index(e) for e in sub] == sorted(pool.index(e) for e in sub)  # input order


def test_subsample_small_n_covers_every_class():
    pool = _ints(1000, weights=(97, 2, 1))
    sub = stratified_subsample(pool, 3, seed=0)
    assert sorted(e["label"] for e in sub) == [0, 1, 2]
    assert len(stratified_subsample(pool, 5, seed=0)) == 5


def test_subsample_nested_and_bounds():
    pool = _ints(300)
    small = stratified_subsample(pool, 30, seed=1)
    big = stratified_subsample(pool, 150, seed=1)
    assert all(e in big for e in small)
    assert stratified_subsample(pool, 300, seed=1) == pool
    with pytest.raises(ScalelabError, match="larger than the split"):
        stratified_subsample(pool, 301, seed=0)
    with pytest.raises(ScalelabError, match="positive"):
        stratified_subsample(pool, 0, seed=0)


def test_hub_classification_entry(registry, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from scalelab.data import sources
    from scalelab.data.sources import HubSource

    rows = {"text": [f"news {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
    loaded = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows),
        test=datasets.Dataset.from_dict({"text": ["t1", "t2"], "label": [0, 1]}),
    )
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a: loaded)
    register_dataset(
        DatasetEntry(
            name="hubnews",
            kind="classification",
            description="test",
            sources=({"hub": HubSource("hub/news")},),
            label_names=("a", "b"),
        )
    )
    data = load_classification("hubnews")
    assert [len(data.split(s)) for s in SPLITS] == [36, 4, 2]
