"""Fine-tuning (`full`, `lora`) on tiny random BERT / GPT-2 models saved in the test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import cli, save_tiny, write_dataset, write_spec

from scalelab.engine.loop import train
from scalelab.grid.store import ResultsStore
from scalelab.methods.finetune import FinetuneRecipe
from scalelab.models.registry import resolve_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "bert": save_tiny(root / "bert", "bert"),
        "gpt2": save_tiny(root / "gpt2", "gpt2"),
        "data": write_dataset(root / "data.jsonl"),
    }


def spec_for(tmp_path: Path, tiny, **over) -> Path:
    fields = {
        "name": "ft",
        "output_dir": str(tmp_path / "out"),
        "models": [str(tiny["bert"])],
        "tasks": {"dataset": str(tiny["data"]), "kind": "classification", "max_length": 16},
        "methods": ["full", {"name": "lora", "r": 4, "lr": 5e-3}],
        "params": {"epochs": 2, "batch_size": 8, "lr": 1e-3},
        "seeds": [0],
        "runtime": {"threads": 1},
    }
    fields.update(over)
    return write_spec(tmp_path / "exp.yaml", **fields)


def make_ctx(tmp_path: Path, model: Path, data: Path, method: str, seed: int = 0, **params):
    from scalelab.builtins import load_builtins
    from scalelab.config import validate
    from scalelab.data.classification import ClassificationTask
    from scalelab.grid.spec import Runtime
    from scalelab.methods.base import METHODS, RunContext

    load_builtins()
    p = validate(METHODS.get(method).params, {"epochs": 2, "batch_size": 8, **params})
    task = ClassificationTask(dataset=str(data), max_length=16)
    run_dir = tmp_path / f"{method}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        run_id="x",
        model=resolve_model(str(model)),
        task=task,
        params=p,
        seed=seed,
        run_dir=run_dir,
        runtime=Runtime(threads=1, checkpoint_every_steps=1),
    )


def test_full_and_lora_through_the_cli(tmp_path, tiny, capsys):
    spec = spec_for(tmp_path, tiny)
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "2 done, 0 failed" in out, err
    table = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    for m in (
        "test_accuracy",
        "test_macro_f1",
        "val_accuracy",
        "trainable_params",
        "total_params",
        "examples_per_s",
        "wall_s",
        "val_macro_f1",
        "test_loss",
        "best_step",
        "epochs_run",
    ):
        assert table[m].notna().all(), m
    full, lora = (table[table["method"] == m].iloc[0] for m in ("full", "lora"))
    assert full["trainable_params"] == full["total_params"]
    assert lora["trainable_params"] < 0.5 * lora["total_params"]
    assert lora["params.r"] == 4 and full["epochs_run"] == 2
    run_dir = tmp_path / "out" / "runs" / lora["run_id"]
    report = json.loads((run_dir / "eval.json").read_text())
    assert len(report["test"]["confusion_matrix"]) == 3 and "per_class" in report["test"]
    assert (run_dir / "model" / "adapter_config.json").exists()
    assert (tmp_path / "out" / "runs" / full["run_id"] / "model" / "model.safetensors").exists()
    curves = ResultsStore(tmp_path / "out" / "results.sqlite").curves()
    # the start (step 0, untrained head) and one eval per epoch; monitor points beside them
    full_curve = curves[curves["run_id"] == full["run_id"]]
    assert full_curve["val_accuracy"].notna().sum() == 3
    assert full_curve["grad_norm"].notna().sum() >= 2  # at least each epoch end


@pytest.mark.parametrize("arch,head", [("bert", "classifier"), ("gpt2", "score")])
def test_lora_saves_head_and_reloads_to_identical_logits(tmp_path, tiny, arch, head):
    from scalelab.data.classification import collate
    from scalelab.methods.finetune import load_finetuned

    ctx = make_ctx(tmp_path, tiny[arch], tiny["data"], "lora", r=4, lr=5e-3)
    trainer = FinetuneRecipe(ctx)
    result = train(trainer, ctx)
    assert trainer.new_modules == [head]  # computed from the checkpoint's missing keys
    assert head in trainer.model.peft_config["default"].modules_to_save
    assert trainer.head_names and all(".modules_to_save." in n for n in trainer.head_names)
    if arch == "gpt2":  # no pad token: pad = eos, and the model knows it
        assert trainer.model.config.pad_token_id == trainer.tok.eos_token_id
    assert 0 < result.metrics["trainable_frac"] < 1
    device = next(trainer.model.parameters()).device  # cuda where there is a GPU
    ids, mask = (t.to(device) for t in collate(trainer.seqs["test"], trainer.pad))
    trainer.model.eval()
    with torch.no_grad():
        before = trainer.model(input_ids=ids, attention_mask=mask).logits
    reloaded, tok = load_finetuned(ctx.run_dir / "model")
    assert tok.pad_token_id == trainer.pad
    reloaded.to(device)
    with torch.no_grad():
        after = reloaded(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_layerwise_lr_thirds(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from scalelab.models.pretrained import layer_multipliers

    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    mults = layer_multipliers(BertForSequenceClassification(cfg))
    assert mults["bert.embeddings.word_embeddings.weight"] == 0.1
    expect = [0.1, 0.1, 0.5, 0.5, 1.0, 1.0]
    for i, m in enumerate(expect):
        block = {v for k, v in mults.items() if k.startswith(f"bert.encoder.layer.{i}.")}
        assert block == {m}, i
    assert mults["bert.pooler.dense.weight"] == 1.0 and mults["classifier.weight"] == 1.0


def test_optimizer_decays_matrices_only(tmp_path, tiny):
    from scalelab.engine.optim import make_optimizer

    ctx = make_ctx(
        tmp_path, tiny["bert"], tiny["data"], "full", weight_decay=0.1, layerwise_lr=True
    )
    plan = FinetuneRecipe(ctx).setup(torch.device("cpu"))
    opt = make_optimizer(plan.model, ctx.params, plan.lr_mults)
    for g in opt.param_groups:
        assert all((q.dim() >= 2) == (g["weight_decay"] > 0) for q in g["params"])
    assert {g["lr_mult"] for g in opt.param_groups} == {0.1, 0.5, 1.0}


def test_resume_mid_epoch_replays_exactly(tmp_path, tiny):
    params = {"epochs": 3, "lr": 1e-3, "head_only_epochs": 1}
    clean_ctx = make_ctx(tmp_path / "a", tiny["bert"], tiny["data"], "full", **params)
    want = train(FinetuneRecipe(clean_ctx), clean_ctx).metrics

    ctx = make_ctx(tmp_path / "b", tiny["bert"], tiny["data"], "full", **params)
    killed = FinetuneRecipe(ctx)

    def kill(event):
        if event["step"] >= killed.steps_per_epoch * 2 + 2:  # inside the third epoch
            raise KeyboardInterrupt

    ctx.report = kill
    with pytest.raises(KeyboardInterrupt):
        train(killed, ctx)
    state = json.loads((ctx.run_dir / "checkpoint" / "state.json").read_text())
    assert state["step"] == killed.steps_per_epoch * 2 + 1  # checkpointed every step
    ctx.report = lambda e: None
    got = train(FinetuneRecipe(ctx), ctx).metrics
    for m in ("test_loss", "val_loss", "test_accuracy", "best_step"):
        assert got[m] == pytest.approx(want[m], rel=1e-6), m
    assert not (ctx.run_dir / "checkpoint").exists()


def test_early_stopping_and_eval_every(tmp_path, tiny):
    ctx = make_ctx(
        tmp_path,
        tiny["bert"],
        tiny["data"],
        "full",
        epochs=20,
        lr=1e-7,
        eval_every=2,
        early_stopping_patience=2,
    )
    result = train(FinetuneRecipe(ctx), ctx)
    assert result.metrics["epochs_run"] < 20  # a tiny lr never improves: stops after 2 flat evals
    assert all(r["step"] % 2 == 0 for r in result.curve)


BAD = {
    "r": ({"methods": [{"name": "lora", "r": 0}]}, "params.r: Input should be greater than 0"),
    "dtype": ({"params": {"dtype": "fp64"}}, "params.dtype"),
    "head": ({"params": {"epochs": 2, "head_only_epochs": 2}}, "params.head_only_epochs (2)"),
    "targets": ({"methods": [{"name": "lora", "target_modules": []}]}, "params.target_modules"),
    "lr": ({"params": {"lr": -1}}, "params.lr"),
    "max_length": ({"tasks": {"dataset": "trec", "max_length": 0}}, "tasks[0].max_length"),
    "unknown": ({"params": {"epoch": 3}}, "params.epoch: unknown key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_options_are_one_line_exit_2_and_write_nothing(tmp_path, tiny, capsys, case):
    change, message = BAD[case]
    spec = spec_for(tmp_path, tiny, **change)
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_autocast_dtypes_train(tmp_path, tiny, dtype):
    ctx = make_ctx(tmp_path, tiny["bert"], tiny["data"], "full", epochs=1, lr=1e-3, dtype=dtype)
    metrics = train(FinetuneRecipe(ctx), ctx).metrics
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_loss"] == metrics["test_loss"]


def test_balanced_class_weights_weigh_a_rare_class_up(tmp_path, tiny):
    import numpy as np

    data = tmp_path / "skewed.jsonl"  # class 2 rare: 6 of 66 examples
    rows = [json.loads(line) for line in tiny["data"].read_text().splitlines()]
    keep = [r for r in rows if r["label"] != 2] + [r for r in rows if r["label"] == 2][:6]
    data.write_text("".join(json.dumps(r) + "\n" for r in keep))
    ctx = make_ctx(tmp_path, tiny["bert"], data, "full", class_weights="balanced")
    recipe = FinetuneRecipe(ctx)
    recipe.setup(torch.device("cpu"))
    counts = np.bincount(recipe.labels["train"], minlength=3)
    want = len(recipe.labels["train"]) / (3 * counts)
    assert recipe.class_weight.tolist() == pytest.approx(want.tolist())
    assert recipe.class_weight[2] > 2 * recipe.class_weight[0]  # the rare class counts more
    loss, _ = recipe.loss_step(recipe.model, recipe.batch(0))
    assert torch.isfinite(loss)
    plain = make_ctx(tmp_path, tiny["bert"], data, "full")
    assert FinetuneRecipe(plain).args.class_weights == "none"
    # its default is left out of run ids: runs stored before the option keep their ids
    from scalelab.engine.args import identity

    assert "class_weights" not in identity(plain.params)
    assert identity(ctx.params)["class_weights"] == "balanced"


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_keep_layers_fine_tunes_a_student_cut_from_the_encoder(tmp_path, arch):
    """DistilBERT-style: the classifier keeps the named blocks' weights exactly, the
    embeddings too, and trains; the parameter count drops by the blocks cut."""
    from transformers import AutoModel

    from scalelab.engine.args import identity

    folder = save_tiny(tmp_path / arch, arch, n_layer=3)
    whole = AutoModel.from_pretrained(folder)
    blocks = whole.h if arch == "gpt2" else whole.encoder.layer
    ctx = make_ctx(tmp_path, folder, write_dataset(tmp_path / "d.jsonl"), "full",
                   keep_layers=[0, 2])  # fmt: skip
    recipe = FinetuneRecipe(ctx)
    recipe.setup(torch.device("cpu"))
    cut = recipe.model.transformer.h if arch == "gpt2" else recipe.model.bert.encoder.layer
    assert len(cut) == 2 and recipe.model.config.num_hidden_layers == 2
    for new, old in ((0, 0), (1, 2)):
        theirs = blocks[old].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in cut[new].state_dict().items())
    per_block = sum(p.numel() for p in blocks[1].parameters())
    n = sum(p.numel() for p in recipe.model.parameters())
    full = FinetuneRecipe(make_ctx(tmp_path, folder, tmp_path / "d.jsonl", "full"))
    full.setup(torch.device("cpu"))
    assert sum(p.numel() for p in full.model.parameters()) - n == per_block
    loss, _ = recipe.loss_step(recipe.model, recipe.batch(0))
    assert torch.isfinite(loss)
    assert identity(ctx.params)["keep_layers"] == [0, 2]  # in the run id when set
    assert "keep_layers" not in identity(full.ctx.params)  # and absent at its default


@pytest.mark.parametrize(
    ("model", "keep", "depth"),
    [("minilm-l6", [0, 6], 6), ("mpnet-base", [11, 12], 12), ("local", [0, 2], 2)],
)
def test_a_cut_past_the_models_blocks_is_one_line_at_spec_time(tmp_path, capsys, model, keep,
                                                               depth):  # fmt: skip
    """The depth of a registered model (its entry) or a local folder (config.json) is known
    before any weights load, so `keep_layers` past it fails the spec, not the run."""
    if model == "local":
        model = str(save_tiny(tmp_path / "bert", "bert"))  # 2 blocks
    data = write_dataset(tmp_path / "d.jsonl", n=30)
    spec = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"),
                      models=[model], tasks=[{"dataset": str(data), "kind": "classification"}],
                      methods=[{"name": "full", "keep_layers": keep}])  # fmt: skip
    code, _, err = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"has blocks 0..{depth - 1}" in err and "params.keep_layers" in err, err
    assert not (tmp_path / "out").exists()


def test_augmented_copies_are_not_counted_as_labelled_examples(tmp_path, tiny, capsys):
    """train_examples counts labels (the subsample), train_augmented the EDA copies of them:
    a data-scaling curve puts an augmented run at its labels, not at labels + copies."""
    task = {"dataset": str(tiny["data"]), "kind": "classification", "max_length": 16,
            "train_size": 12, "augment": {"method": "eda", "ratio": [0, 0.5], "n_aug": 2,
                                          "alpha_sr": 0, "alpha_ri": 0}}  # fmt: skip
    spec = spec_for(tmp_path, tiny, tasks=task, methods=["full"], params={"epochs": 1})
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "2 done, 0 failed" in out, err
    table = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    plain = table[table["task.augment.ratio"] == 0].iloc[0]
    half = table[table["task.augment.ratio"] == 0.5].iloc[0]
    assert plain["train_examples"] == half["train_examples"] == 12
    assert pd.isna(plain["train_augmented"]) and half["train_augmented"] == 6 * 2


@pytest.mark.parametrize("arch,method", [("bert", "full"), ("gpt2", "lora")])
def test_packing_gives_the_padded_logits_in_batch_order_and_trains(tmp_path, tiny, arch, method):
    ctx = make_ctx(tmp_path, tiny[arch], tiny["data"], method, packing=True, lr=1e-3)
    recipe = FinetuneRecipe(ctx)
    model = recipe.setup(torch.device("cpu")).model  # setup checked packed == padded
    batch = recipe.batch(0)
    assert len(set(recipe.train_len[batch])) > 1  # lengths differ: rows really are packed
    model.eval()
    with torch.no_grad():
        packed, y, idx = recipe.logits_and_labels(model, batch)
        recipe.args = recipe.args.model_copy(update={"packing": False})
        padded, y0, idx0 = recipe.logits_and_labels(model, batch)
    order = {int(i): k for k, i in enumerate(idx0)}  # the padded path may sort by length
    back = torch.tensor([order[int(i)] for i in idx])
    torch.testing.assert_close(packed, padded[back], rtol=0, atol=2e-5)
    assert torch.equal(y, y0[back]) and list(idx) == list(batch)
    result = train(FinetuneRecipe(ctx), ctx)
    losses = [r["train_loss"] for r in result.curve if r.get("train_loss") is not None]
    assert losses and all(math.isfinite(x) for x in losses)
    assert math.isfinite(result.metrics["test_loss"])


def test_packing_is_in_the_run_id_only_when_on(tmp_path, tiny):
    from scalelab.grid.spec import expand, load_spec

    def ids(params):
        spec = load_spec(spec_for(tmp_path, tiny, methods=["full"], params=params))
        return [r.run_id for r in expand(spec)]

    base = {"epochs": 2, "batch_size": 8, "lr": 1e-3}
    assert ids(base) == ids({**base, "packing": False}) != ids({**base, "packing": True})


def test_a_classifier_with_another_label_count_gets_a_new_head(tmp_path, tiny):
    """A 2-label classifier checkpoint fine-tuned on 3 classes: its head is replaced and
    trained as new (it used to fail in transformers' size check)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "two_labels"
    AutoModelForSequenceClassification.from_pretrained(tiny["bert"], num_labels=2).save_pretrained(
        folder
    )
    AutoTokenizer.from_pretrained(tiny["bert"]).save_pretrained(folder)
    ctx = make_ctx(tmp_path, folder, tiny["data"], "full", epochs=1)
    recipe = FinetuneRecipe(ctx)
    recipe.setup(torch.device("cpu"))
    assert recipe.new_modules == ["classifier"] and recipe.head_names
    assert recipe.model.classifier.out_features == 3
    assert math.isfinite(train(FinetuneRecipe(ctx), ctx).metrics["test_loss"])
