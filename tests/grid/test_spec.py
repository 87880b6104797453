"""The spec: grid expansion, run ids, and errors that name the field."""

from __future__ import annotations

import pytest
from helpers import write_spec

from scalelab.errors import ScalelabError
from scalelab.grid.spec import expand, load_spec

BASE = {
    "name": "t",
    "models": ["gpt-d1", "gpt-d2"],
    "tasks": {"dataset": "wikitext2", "seq_len": 32, "tokenizer": {"kind": "byte"}},
    "methods": "pretrain",
    "params": {"tokens": 4096},
}


def runs_of(tmp_path, **over):
    return expand(load_spec(write_spec(tmp_path / "s.yaml", **{**BASE, **over})))


def test_lists_expand_into_a_grid(tmp_path):
    runs = runs_of(tmp_path, seeds=[0, 1, 2], params={"tokens": 4096, "lr": [1e-3, 3e-3]})
    assert len(runs) == 2 * 3 * 2
    assert {(r.model.name, r.seed, r.params.lr) for r in runs} == {
        (m, s, lr) for m in ("gpt-d1", "gpt-d2") for s in (0, 1, 2) for lr in (1e-3, 3e-3)
    }
    assert len({r.run_id for r in runs}) == 12


def test_scalars_and_defaults(tmp_path):
    (run,) = runs_of(tmp_path, models="gpt-d1")
    assert run.seed == 0 and run.task.kind == "lm" and run.params.batch_size == 16
    assert run.config["params"]["lr"] == 3e-3  # defaults are part of the identity


def test_run_id_is_content_addressed(tmp_path):
    a = {r.model.name: r.run_id for r in runs_of(tmp_path)}
    b = {r.model.name: r.run_id for r in runs_of(tmp_path, name="other", runtime={"threads": 1})}
    assert a == b  # experiment name and runtime do not change results
    c = {r.model.name: r.run_id for r in runs_of(tmp_path, params={"tokens": 4096, "lr": 1e-3})}
    assert a["gpt-d1"] != c["gpt-d1"]


def test_task_fields_can_be_swept(tmp_path):
    runs = runs_of(
        tmp_path,
        models="gpt-d1",
        tasks={"dataset": "wikitext2", "seq_len": [32, 64], "tokenizer": {"kind": "byte"}},
    )
    assert sorted(r.task.seq_len for r in runs) == [32, 64]


def test_labels_name_what_varies_between_runs(tmp_path):
    from scalelab.grid.api import labels

    runs = runs_of(
        tmp_path,
        tasks={"dataset": "wikitext2", "seq_len": [32, 64], "tokenizer": {"kind": "byte"}},
        params={"tokens": 4096, "lr": [1e-3, 3e-3]},
    )
    names = labels(runs)
    assert len(set(names.values())) == len(runs) == 8  # the grid reads apart
    for r in runs:
        name = names[r.run_id]
        assert name.startswith(f"{r.run_id[:8]} {r.model.name} pretrain seed=0")
        assert f"task.seq_len={r.task.seq_len}" in name and f"params.lr={r.params.lr}" in name
        assert "params.tokens" not in name and "task.dataset" not in name  # the same in all
    # Two methods: a field one of them lacks, or that differs only between methods, is not
    # "varying"; the method name already tells those runs apart.
    spec = {"name": "t", "seeds": [0, 1], "stages": {
        "base": {"models": "gpt-d1", "methods": "pretrain", "params": {"tokens": 4096},
                 "tasks": {"dataset": "wikitext2", "seq_len": 32, "tokenizer": {"kind": "byte"}}},
        "tuned": {"models": "@base", "methods": "full", "params": {"epochs": 1},
                  "tasks": {"dataset": "trec", "max_length": 32}},
    }}  # fmt: skip
    runs = expand(load_spec(write_spec(tmp_path / "dag.yaml", **spec)))
    names = labels(runs, stage=False)
    assert {r.method for r in runs} == {"pretrain", "full"} and len(runs) == 6
    assert len(set(names.values())) == 6
    for r in runs:  # seeds vary, and the label already says so; tuned runs name their base
        base = f" from={r.deps[0][:8]}" if r.deps else ""
        assert names[r.run_id] == f"{r.run_id[:8]} {r.model.name} {r.method} seed={r.seed}{base}"


def test_labels_show_what_varies_within_a_stage_not_in_another(tmp_path):
    """The same method in two stages: the few-shot stage's epochs and draws do not show on
    the other stage's runs (their stage tells them apart), only each stage's own axes."""
    from scalelab.grid.api import labels

    task = {"dataset": "trec", "max_length": 32}
    spec = {"name": "t", "seeds": [0], "models": str(tmp_path), "methods": "full", "stages": {
        "sizes": {"tasks": {**task, "train_size": [50, 100]}, "params": {"epochs": 8}},
        "fewshot": {"tasks": {**task, "k_per_class": 5, "draw": [0, 1]},
                    "params": {"epochs": 20}},
    }}  # fmt: skip
    runs = expand(load_spec(write_spec(tmp_path / "staged.yaml", **spec)))
    for stage in (True, False):
        names = labels(runs, stage=stage)
        for r in runs:
            name = names[r.run_id]
            assert "params.epochs" not in name
            if r.stage == "sizes":
                assert f"task.train_size={r.task.train_size}" in name and "draw" not in name
            else:
                assert f"task.draw={r.task.draw}" in name and "train_size" not in name


def test_method_entries_carry_their_own_params(tmp_path):
    runs = runs_of(
        tmp_path,
        models="gpt-d1",
        methods=["pretrain", {"name": "pretrain", "dtype": "bf16", "lr": [1e-3, 2e-3]}],
    )
    assert sorted((r.params.dtype, r.params.lr) for r in runs) == [
        ("bf16", 1e-3),
        ("bf16", 2e-3),
        ("fp32", 3e-3),
    ]


@pytest.mark.parametrize(
    "over,message",
    [
        (dict(params={"tokens": 4096, "lrr": 1}), "params.lrr: unknown key"),
        (dict(params={"tokens": 4096, "dtype": "fp8"}), "params.dtype"),
        (
            dict(
                tasks={
                    "dataset": "wikitext2",
                    "seq_len": 32,
                    "tokenizer": {"kind": "bpe", "vocab_size": 10},
                }
            ),
            "tokenizer.vocab_size",
        ),
        (dict(tasks={"dataset": "wikitext2", "eval": {"window": 999}}), "eval.window"),
        (dict(models=[]), "an empty list gives no runs"),
        (dict(seeds=[0, 0]), "same run twice"),
        (dict(runtime={"workers": 0}), "runtime.workers"),
        (dict(methods=[{"lr": 1}]), "methods[0].name: field required"),
    ],
)
def test_errors_name_the_field(tmp_path, over, message):
    with pytest.raises(ScalelabError, match=None) as info:
        runs_of(tmp_path, **over)
    assert message in str(info.value)


def test_editing_a_local_corpus_in_place_changes_the_run_ids(tmp_path):
    import os

    from scalelab.testing import make_corpus

    corpus = make_corpus(tmp_path / "corpus")
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"}}

    def ids():
        return [r.run_id for r in runs_of(tmp_path, tasks=task)]

    before = ids()
    assert ids() == before  # unchanged data, unchanged ids
    (corpus / ".notes").write_text("hidden files are not data")
    assert ids() == before
    train = corpus / "train.txt"
    text = train.read_text()
    train.write_text(text.replace("The", "A", 1))  # same folder, same name, other content
    st = train.stat()
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later mtime
    after = ids()
    assert all(a != b for a, b in zip(before, after, strict=True))
    train.write_text(text)
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))
    assert ids() == before  # content, not timestamps, decides


def test_settings_left_out_of_run_ids_still_fill_the_results_columns(tmp_path):
    """`packing: false` is left out of run ids (its default, added after results existed),
    so the stored config lacks it; the table shows each run's own value, and a setting a
    run's method does not have (pretraining has no `packing`) stays empty."""
    import pandas as pd

    from scalelab.grid.api import with_settings

    runs = expand(load_spec(write_spec(
        tmp_path / "s.yaml", name="s", output_dir=str(tmp_path / "out"),
        stages={
            "base": {"models": ["gpt-d1"], "tasks": {"dataset": "wikitext2"},
                     "methods": "pretrain", "params": {"tokens": 4096}},
            "tuned": {"models": ["minilm-l6"], "tasks": {"dataset": "trec"},
                      "methods": "full", "params": {"packing": [False, True]}},
        },
    )))  # fmt: skip
    pre, off, on = runs
    assert "packing" not in off.config["params"] and on.config["params"]["packing"] is True
    table = pd.DataFrame({"run_id": [r.run_id for r in runs],
                          "params.packing": [float("nan"), float("nan"), True],
                          "params.tokens": [4096, float("nan"), float("nan")]})  # fmt: skip
    out = with_settings(table, runs)
    assert out["params.packing"].tolist()[1:] == [False, True]
    assert pd.isna(out["params.packing"].iloc[0])  # pretraining has no such setting
    assert pd.isna(out["params.tokens"].iloc[1])  # fine-tuning has no `tokens`
    assert list(out.columns) == list(table.columns)
