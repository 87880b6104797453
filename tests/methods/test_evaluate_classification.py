"""`evaluate` on classification tasks: a decoder scoring verbalisers (with in-context
shots), an encoder by similarity to label names, fine-tuning's metric names, spec errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import LABEL_WORD, cli, run_stages, save_tiny, write_dataset, write_spec

from scalelab.data.classification import ClassificationTask, load_task_data
from scalelab.data.zero_shot import draw_shots
from scalelab.grid.api import load_experiment_tables

VERBAL = {str(k): v for k, v in LABEL_WORD.items()}  # labels "0", "1", "2" -> cat, dog, bird


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"gpt2": save_tiny(root / "gpt2", "gpt2"), "bert": save_tiny(root / "bert", "bert"),
            "data": write_dataset(root / "data.jsonl")}  # fmt: skip


def spec_for(tmp_path: Path, model, data, name: str = "zs", **params) -> Path:
    return write_spec(tmp_path / f"{name}.yaml", name=name, output_dir=str(tmp_path / "out"),
                      models=[str(model)],
                      tasks={"dataset": str(data), "kind": "classification", "max_length": 16},
                      methods="evaluate", params=params, seeds=[0],
                      runtime={"threads": 1})  # fmt: skip


def direct_loglikelihood(folder: Path, context: str, continuation: str) -> float:
    """log p(continuation | context) from the GPT-2 itself (word-level tokenizer: the
    context's tokens are a prefix of the joined text's)."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(folder)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    n_ctx = len(tok(context)["input_ids"])
    ids = tok(context + continuation, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return float(sum(logp[i - 1, ids[0, i]] for i in range(n_ctx, ids.shape[1])))


def test_a_decoder_predicts_the_label_of_highest_loglikelihood(tiny, tmp_path, capsys):
    spec = spec_for(tmp_path, tiny["gpt2"], tiny["data"], shots=[0, 2], verbalizers=VERBAL)
    code, out, err = cli("run", spec, capsys=capsys)
    assert code == 0, out + err
    runs = load_experiment_tables(spec)[0].sort_values("params.shots")
    assert list(runs["params.shots"]) == [0, 2] and set(runs.status) == {"done"}
    data = load_task_data(ClassificationTask(dataset=str(tiny["data"]), max_length=16))
    for _, row in runs.iterrows():
        run_dir = tmp_path / "out" / "runs" / row.run_id
        report = json.loads((run_dir / "eval.json").read_text())
        shots = [data.train[i] for i in report["shots"]]
        assert len(shots) == row["params.shots"]
        prefix = "".join(f"Text: {s['text'].strip()}\nLabel: {VERBAL[str(s['label'])]}\n\n"
                         for s in shots)  # fmt: skip
        with np.load(run_dir / "predictions.npz") as f:
            probs, truth = f["probs"], f["truth"]
        assert probs.shape == (len(data.test), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
        assert list(truth) == [e["label"] for e in data.test]
        assert row.test_accuracy == pytest.approx(float((probs.argmax(1) == truth).mean()))
        for i, example in enumerate(data.test[:3]):
            context = prefix + f"Text: {example['text'].strip()}\nLabel:"
            lls = [direct_loglikelihood(tiny["gpt2"], context, " " + w) for w in VERBAL.values()]
            assert probs[i].argmax() == int(np.argmax(lls))
            want = np.exp(np.array(lls) - max(lls))
            assert probs[i] == pytest.approx(want / want.sum(), abs=1e-4)
        scores = pd.read_parquet(run_dir / "scores.parquet")
        assert sorted(set(scores.split)) == ["test", "validation"]
        assert len(scores) == len(data.test) + len(data.validation)
        assert not list(run_dir.glob("*.partial.jsonl"))
        for key in ("val_accuracy", "val_macro_f1", "test_macro_f1", "test_loss", "val_loss"):
            assert 0 <= row[key] < float("inf"), key
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0 and "2 already done" in out


def test_the_shots_are_a_balanced_draw_from_train_fixed_by_data_seed(tiny):
    train = load_task_data(ClassificationTask(dataset=str(tiny["data"]))).train
    labels = [e["label"] for e in train]
    a = draw_shots(labels, 5, seed=0)
    assert a == draw_shots(labels, 5, seed=0)  # fixed per (data_seed, shot_seed)
    assert a != draw_shots(labels, 5, seed=1) and a != draw_shots(labels, 5, 0, shot_seed=1)
    assert len(set(a)) == 5 and all(0 <= i < len(labels) for i in a)
    counts = sorted(np.bincount([labels[i] for i in a], minlength=3))
    assert counts == [1, 2, 2]  # round robin over the classes: never two more of one
    six = [labels[i] for i in draw_shots(labels, 6, seed=3)]
    assert sorted(np.bincount(six)) == [2, 2, 2]
    assert draw_shots(labels, 0, seed=0) == []
    with pytest.raises(Exception, match="params.shots"):
        draw_shots(labels, len(labels) + 1, seed=0)


def test_shots_come_from_train_and_never_hold_a_scored_example(tiny, tmp_path, capsys):
    task = ClassificationTask(dataset=str(tiny["data"]), max_length=16, data_seed=7)
    spec = write_spec(tmp_path / "s.yaml", name="s", output_dir=str(tmp_path / "out"),
                      models=[str(tiny["gpt2"])], tasks={**task.model_dump(), "max_length": 16},
                      methods="evaluate", params={"shots": 4, "verbalizers": VERBAL},
                      runtime={"threads": 1})  # fmt: skip
    assert cli("run", spec, capsys=capsys)[0] == 0
    row = load_experiment_tables(spec)[0].iloc[0]
    report = json.loads((tmp_path / "out" / "runs" / row.run_id / "eval.json").read_text())
    data = load_task_data(task)
    assert report["shots"] == draw_shots([e["label"] for e in data.train], 4, 7)
    shot_texts = [data.train[i]["text"].strip() for i in report["shots"]]
    scored = {e["text"].strip() for e in data.test + data.validation}
    assert not scored & set(shot_texts)
    prompt = report["prompt"]  # the first test example's, after the shots in their order
    assert prompt.endswith(f"Text: {data.test[0]['text'].strip()}\nLabel:")
    places = [prompt.index(f"Text: {t}\n") for t in shot_texts]
    assert places == sorted(places)


def test_an_encoder_finds_the_label_a_text_names(tiny, tmp_path, capsys):
    """Texts identical to their label's verbaliser: cosine 1 with their own label."""
    rows = [{"text": LABEL_WORD[y], "label": y, "split": s}
            for s, n in (("train", 3), ("validation", 2), ("test", 4)) for _ in range(n)
            for y in range(3)]  # fmt: skip
    data = tmp_path / "named.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = spec_for(tmp_path, tiny["bert"], data, verbalizers=VERBAL)
    code, out, err = cli("run", spec, capsys=capsys)
    assert code == 0, out + err
    row = load_experiment_tables(spec)[0].iloc[0]
    assert row.status == "done"
    assert row.test_accuracy == 1.0 and row.val_accuracy == 1.0 and row.test_macro_f1 == 1.0
    assert pd.isna(row.get("test_loss")) and row.test_n == 12 and row.shots == 0
    run_dir = tmp_path / "out" / "runs" / row.run_id
    with np.load(run_dir / "predictions.npz") as f:
        assert (f["probs"].argmax(1) == f["truth"]).all()
    assert json.loads((run_dir / "eval.json").read_text())["pooling"] == ["mean"]


def test_an_encoder_uses_the_pooling_its_folder_declares(tiny, tmp_path):
    from scalelab.models.embedding import embed, load_encoder, pooling_of
    from scalelab.models.registry import resolve_model

    assert pooling_of(tiny["bert"]) == ("mean",)
    folder = tmp_path / "cls"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    assert pooling_of(folder) == ("cls",)
    encoder = load_encoder(resolve_model(str(tiny["bert"])))
    mean = embed(encoder, ["the cat sat", "dog"], 16)
    encoder.pooling = ("cls",)
    cls = embed(encoder, ["the cat sat", "dog"], 16)
    assert mean.shape == cls.shape == (2, 32) and not np.allclose(mean, cls)
    assert np.allclose(np.linalg.norm(mean, axis=1), 1, atol=1e-5)


def test_metric_names_are_the_fine_tuning_ones():
    from scalelab.methods.base import METHODS
    from scalelab.methods.finetune import CLASSIFICATION_METRICS
    from scalelab.metrics import metrics_for

    ours = METHODS.get("evaluate").for_kind("classification").metrics
    theirs = {d.name: d for d in CLASSIFICATION_METRICS}
    quality = [d for d in ours if d.is_quality]
    assert [d.name for d in quality] == ["test_accuracy", "test_macro_f1", "test_loss",
                                         "val_accuracy", "val_macro_f1", "val_loss"]  # fmt: skip
    for d in quality:
        t = theirs[d.name]
        assert (d.higher_is_better, d.fmt, d.bounds, d.kind) == (
            t.higher_is_better, t.fmt, t.bounds, t.kind), d.name  # fmt: skip
    metrics_for(["full", "lora", "evaluate"])  # one direction per name: no error


@pytest.mark.parametrize(
    "model, params, data, expect",
    [
        ("gpt-d1", {"verbalizers": VERBAL}, None, "untrained ladder"),
        ("bert", {"shots": 2, "verbalizers": VERBAL}, None, "is an encoder"),
        ("gpt2", {"verbalizers": {"7": "cow"}}, None, "unknown label '7'"),
        ("gpt2", {}, None, "is a number"),
        ("gpt2", {"verbalizers": {"0": "cat", "1": "cat", "2": "bird"}}, None, "two labels"),
        ("gpt2", {"template": "no text here"}, None, "{text}"),
        ("classifier", {"verbalizers": VERBAL}, None, "sequence classifier"),
        ("gpt2", {}, "trec", "unknown label 'cat'"),
    ],
)
def test_bad_zero_shot_specs_are_one_line_at_spec_time(tiny, tmp_path, capsys, model, params,
                                                       data, expect):  # fmt: skip
    if model == "classifier":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, num_labels=3)  # fmt: skip
        model = tmp_path / "clf"
        BertForSequenceClassification(config).save_pretrained(model)
    elif model in tiny:
        model = tiny[model]
    if data == "trec":
        params = {"verbalizers": {"cat": "x"}}
    spec = spec_for(tmp_path, model, data or tiny["data"], **params)
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "out").exists()


def test_compare_shows_zero_shot_beside_fine_tuned_accuracy(tiny, tmp_path, capsys):
    spec = write_spec(tmp_path / "cmp.yaml", name="cmp", output_dir=str(tmp_path / "out"),
                      models=[str(tiny["bert"])],
                      tasks={"dataset": str(tiny["data"]), "kind": "classification",
                             "max_length": 16},
                      methods=[{"name": "full", "epochs": 1, "batch_size": 8},
                               {"name": "evaluate", "verbalizers": VERBAL}],
                      seeds=[0], runtime={"threads": 1})  # fmt: skip
    assert cli("run", spec, capsys=capsys)[0] == 0
    runs = load_experiment_tables(spec)[0].set_index("method")
    code, out, _ = cli("compare", spec, "--by", "method", capsys=capsys)
    assert code == 0
    table = out.split("test_macro_f1")[0]  # the first table: test_accuracy, one row per method
    assert table.startswith("test_accuracy")
    for method in ("full", "evaluate"):
        line = next(x for x in table.splitlines() if x.split()[:1] == [method])
        assert f"{runs.loc[method, 'test_accuracy']:.4f}" in line


def test_a_variant_is_registered_once_for_a_kind_of_the_method():
    from dataclasses import replace

    from scalelab.methods.base import METHODS, register_variant

    evaluate = METHODS.get("evaluate")
    variant = evaluate.for_kind("classification")
    assert variant is not evaluate and "classification" in evaluate.task_kinds
    with pytest.raises(ValueError, match="already serves"):
        register_variant("evaluate", "classification", variant)
    with pytest.raises(ValueError, match="register it before"):
        register_variant("no-such-method", "classification", variant)
    with pytest.raises(ValueError, match="named"):
        register_variant("full", "lm", replace(variant, name="other"))


def test_an_endpoint_through_scalelab_serve_scores_like_the_local_model(tiny, tmp_path, capsys):
    from scalelab.testing import ServeProcess

    server = ServeProcess(tiny["gpt2"], tmp_path / "serve.log", name="tiny", home=tmp_path / "h")
    try:
        server.wait(600)
        spec = write_spec(tmp_path / "both.yaml", name="both", output_dir=str(tmp_path / "out"),
                          models=[str(tiny["gpt2"]), f"{server.url}#tiny"],
                          tasks={"dataset": str(tiny["data"]), "kind": "classification",
                                 "max_length": 16},
                          methods="evaluate", params={"shots": 2, "verbalizers": VERBAL},
                          runtime={"threads": 1})  # fmt: skip
        code, out, err = cli("run", spec, capsys=capsys)
        assert code == 0, out + err
    finally:
        server.stop()
    runs = load_experiment_tables(spec)[0]
    probs = {}
    for _, row in runs.iterrows():
        with np.load(tmp_path / "out" / "runs" / row.run_id / "predictions.npz") as f:
            probs[row.model.startswith("http")] = f["probs"]
    assert probs[True] == pytest.approx(probs[False], abs=1e-4)
    local, http = (runs[runs.model.str.startswith("http") == flag].iloc[0] for flag in (0, 1))
    for key in ("test_accuracy", "val_accuracy", "test_loss"):
        assert http[key] == pytest.approx(local[key], abs=1e-4), key


def test_a_template_with_line_breaks_keeps_each_run_on_one_line(tiny, tmp_path):
    from scalelab.grid.api import labels
    from scalelab.grid.spec import expand, load_spec

    spec = spec_for(tmp_path, tiny["gpt2"], tiny["data"], verbalizers=VERBAL,
                    template=["Q: {text}\nA:", "{text}\t=>"])  # fmt: skip
    shown = labels(expand(load_spec(spec))).values()
    assert sorted(x.split("params.template=")[1] for x in shown) == ["Q: {text}\\nA:",
                                                                     "{text}\\t=>"]  # fmt: skip
    assert not any("\n" in x or "\t" in x for x in shown)


def test_a_ladder_run_is_scored_as_a_decoder_and_its_row_gains_the_accuracy(tiny, tmp_path,
                                                                           corpus, capsys):  # fmt: skip
    data = str(tiny["data"])
    stages = {
        "train": {"models": ["gpt-d1"], "methods": ["pretrain"],
                  "params": {"tokens": 8 * 32 * 10, "batch_size": 8}},
        "score": {"models": ["@train"], "methods": ["evaluate"],
                  "tasks": {"dataset": data, "kind": "classification", "max_length": 16},
                  "params": {"shots": 1, "verbalizers": VERBAL}},
    }  # fmt: skip
    runs = run_stages(tmp_path, corpus, stages, capsys)
    train, score = (runs[runs.method == m].iloc[0] for m in ("pretrain", "evaluate"))
    assert score.status == "done" and 0 <= score.test_accuracy <= 1
    assert score.non_embedding_params == train.non_embedding_params
    assert train["test_accuracy@data-1shot"] == score.test_accuracy


def test_label_scores_per_character_favour_long_verbalisers_less():
    from scalelab.eval.multiple_choice import QuestionScore
    from scalelab.methods.evaluate_classification import label_scores

    s = QuestionScore(0, 1, ("no", "surely yes"), (-2.0, -4.0), (1, 3), (True, False))
    assert label_scores(s) == [-2.0, -4.0]
    assert label_scores(s, "chars") == [-1.0, -0.4]
    assert label_scores(QuestionScore(0, 0, ("é", "e"), (-2.0, -2.0), (1, 1), (True, True)),
                        "bytes") == [-1.0, -2.0]  # fmt: skip


def test_a_killed_decoder_run_resumes_from_its_saved_scores(tiny, tmp_path):
    """Saved rows (rigged: every label but the wrong one scores 0) are read back, not
    scored again; the rest are scored; the partial files go once the product is written."""
    from scalelab.eval.multiple_choice import QuestionScore
    from scalelab.grid.spec import Runtime
    from scalelab.methods.base import RunContext
    from scalelab.methods.evaluate_classification import (
        EvaluateClassificationParams,
        run_classification,
    )
    from scalelab.models.registry import resolve_model

    task = ClassificationTask(dataset=str(tiny["data"]), max_length=16)
    data = load_task_data(task)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "scores.test.partial.jsonl", "w") as f:
        for i, e in enumerate(data.test):
            ll = tuple(-50.0 if k == e["label"] else 0.0 for k in range(3))
            f.write(json.dumps(QuestionScore(i, e["label"], tuple(VERBAL.values()), ll,
                                             (1, 1, 1), (False,) * 3).as_row()) + "\n")  # fmt: skip
        f.write('{"doc_id": 99, "gold": 1, "ll": [-1.0')  # the kill hit mid-line
    params = EvaluateClassificationParams(verbalizers=VERBAL)
    ctx = RunContext("r", resolve_model(str(tiny["gpt2"])), task, params, 0, run_dir,
                     Runtime(threads=1))  # fmt: skip
    got = run_classification(ctx).metrics
    assert got["test_accuracy"] == 0.0  # the saved (wrong) scores were used
    assert got["val_n"] == len(data.validation) and got["test_n"] == len(data.test)
    assert not list(run_dir.glob("*.partial.jsonl"))
    assert len(pd.read_parquet(run_dir / "scores.parquet")) == len(data.test) + len(data.validation)
