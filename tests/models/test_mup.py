"""muP on the ladder: the rules as applied, the coordinate check, folding before save,
run ids, and a tiny pretraining run end to end."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import cli, run_stages, tiny_lm_spec, write_spec

from scalelab.engine.args import identity
from scalelab.engine.optim import decay_groups
from scalelab.errors import ScalelabError
from scalelab.methods.pretrain import PretrainParams
from scalelab.models.build import build_causal_lm, count_params
from scalelab.models.coord_check import coord_check
from scalelab.models.ladder import ladder_rung
from scalelab.models.mup import apply_mup, fold_mup, mup_of
from scalelab.models.registry import resolve_model


def test_width_only_names_fix_depth_and_set_width():
    rung = ladder_rung("gpt-d2w64")
    assert (rung.n_layer, rung.n_embd, rung.n_head) == (2, 64, 2)
    assert ladder_rung("gpt-d2w256").n_head == 8 and ladder_rung("gpt-d3") == ladder_rung(
        "gpt-d3w96"
    )
    model = build_causal_lm("gpt-d2w128", vocab_size=300, n_positions=32)
    assert count_params(model)[0] == ladder_rung("gpt-d2w128").non_embedding_params
    assert resolve_model("gpt-d1w32").kind == "ladder"
    for bad in ("gpt-d2w48", "gpt-d2w0", "gpt-d0w64", "gpt-d2w99999"):
        with pytest.raises(ScalelabError, match="ladder"):
            ladder_rung(bad)
    with pytest.raises(ScalelabError, match=r"gpt-d\{depth\}w\{width\}"):
        resolve_model("gpt-x7")  # the error lists the width-only names


def _pair(name: str, base: int = 32):
    torch.manual_seed(0)
    sp = build_causal_lm(name, vocab_size=64, n_positions=16)
    torch.manual_seed(0)
    mu = build_causal_lm(name, vocab_size=64, n_positions=16)
    return sp.eval(), mu.eval(), apply_mup(mu, base)


def test_mup_equals_standard_at_the_base_width():
    sp, mu, scaling = _pair("gpt-d2w32")
    assert scaling.width_mult == 1 and set(scaling.lr_mults.values()) == {1.0}
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(sp(input_ids=x).logits, mu(input_ids=x).logits)


def test_mup_rules_at_four_times_the_base_width():
    sp, mu, scaling = _pair("gpt-d2w128")
    m = 4.0
    hidden = {n for n in dict(mu.named_parameters()) if ".h." in n and n.endswith("weight")
              and "ln_" not in n}  # fmt: skip
    assert len(hidden) == 2 * 4 and set(scaling.lr_mults) == set(scaling.wd_mults) == hidden
    assert set(scaling.lr_mults.values()) == {1 / m} and set(scaling.wd_mults.values()) == {m}
    spp, mup = dict(sp.named_parameters()), dict(mu.named_parameters())
    for name in spp:  # hidden init std / sqrt(m); embeddings, biases, LayerNorms unchanged
        factor = m**-0.5 if name in hidden else 1.0
        torch.testing.assert_close(mup[name], spp[name] * factor)
    # logits = (1/m) * ln_f(h) @ wte^T: the tied readout's multiplier
    x = torch.randint(0, 64, (2, 16))
    h = mu.transformer(input_ids=x).last_hidden_state  # ln_f's output, with the multiplier
    out = sp.transformer.ln_f  # same ln_f parameters in both models
    assert torch.equal(out.weight, mu.transformer.ln_f.weight)
    torch.testing.assert_close(mu(input_ids=x).logits, h @ mu.transformer.wte.weight.T)
    assert mu.transformer.h[0].attn.scaling == 32**-0.5  # head_dim 32: GPT-2's own scale
    with pytest.raises(ScalelabError, match="already"):
        apply_mup(mu)
    # AdamW groups: hidden matrices at lr/m with weight decay x m (lr x wd unchanged)
    groups = {(g["lr_mult"], g["weight_decay"]): len(g["params"])
              for g in decay_groups(mu, 0.1, scaling.lr_mults, scaling.wd_mults)}  # fmt: skip
    assert groups == {(0.25, 0.4): 8, (1.0, 0.1): 2, (1.0, 0.0): 4 * 2 + 2 * 4 + 2}


@pytest.mark.parametrize("name", ["gpt-d2w128", "gpt-20k"])  # gpt-20k: head_dim 40
def test_a_trained_mup_model_saves_as_plain_gpt2_with_the_same_logits(tmp_path, name):
    from transformers import AutoModelForCausalLM

    _, mu, scaling = _pair(name)
    assert math.isclose(scaling.attn_scale * math.sqrt(mu.config.n_embd // mu.config.n_head),
                        math.sqrt(32 / (mu.config.n_embd // mu.config.n_head)))  # fmt: skip
    opt = torch.optim.AdamW(mu.parameters(), lr=1e-2)
    x = torch.randint(0, 64, (4, 16))
    for _ in range(3):  # move ln_f and the query projection away from their init
        loss = torch.nn.functional.cross_entropy(mu(input_ids=x).logits.flatten(0, 1),
                                                 x.roll(-1, 1).flatten())  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    mu.eval()
    with torch.no_grad():
        before = mu(input_ids=x).logits
        fold_mup(mu)
        assert mup_of(mu) is None
        torch.testing.assert_close(mu(input_ids=x).logits, before, rtol=1e-5, atol=1e-5)
    mu.save_pretrained(tmp_path / "m")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=x).logits, before, rtol=1e-5, atol=1e-5)


def _ratios(parametrization: str) -> dict[str, float]:
    """Largest / smallest (over widths 32..256) mean |x_10 - x_0| per layer, after 10 steps."""
    df = coord_check([32, 64, 128, 256], parametrization, depth=2, steps=10, lr=1e-2)
    last = df[df["step"] == 10].pivot(index="layer", columns="width", values="delta_abs")
    return (last.max(axis=1) / last.min(axis=1)).to_dict()


def test_coordinate_check_flat_under_mup_growing_under_standard():
    mup, sp = _ratios("mup"), _ratios("standard")
    # measured (seed 0): mup <= ~1.7 for every layer; standard blocks ~50-100x, logits ~4x
    assert set(mup) == {"embeddings", "block0", "block1", "logits"}
    assert max(mup.values()) < 2.0, mup
    assert min(sp["block0"], sp["block1"]) > 10 and sp["logits"] > 2.5, sp
    assert sp["embeddings"] < 2.0  # the input layer is width-independent in both


def test_parametrization_is_in_the_run_id_only_when_set(tmp_path):
    from scalelab.grid.spec import expand, load_spec

    assert "parametrization" not in identity(PretrainParams(tokens=1000))
    assert identity(PretrainParams(tokens=1000, parametrization="mup"))["parametrization"] == "mup"
    task = {"dataset": "wikitext2", "seq_len": 32, "tokenizer": {"kind": "byte"}}
    ids = {}
    for par in ("standard", "mup"):
        spec = write_spec(tmp_path / f"{par}.yaml", name="p", output_dir=str(tmp_path / "o"),
                          models="gpt-d2w64", tasks=task, methods="pretrain",
                          params={"tokens": 4096, "parametrization": par})  # fmt: skip
        ids[par] = expand(load_spec(spec))[0].run_id
    plain = write_spec(tmp_path / "plain.yaml", name="p", output_dir=str(tmp_path / "o"),
                       models="gpt-d2w64", tasks=task, methods="pretrain",
                       params={"tokens": 4096})  # fmt: skip
    assert ids["standard"] == expand(load_spec(plain))[0].run_id != ids["mup"]


def test_mup_on_a_model_outside_the_ladder_is_a_spec_error(tmp_path, corpus, capsys):
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"}}
    stages = {
        "base": {"models": "gpt-d1", "methods": "pretrain"},
        "more": {"models": "@base", "methods": "pretrain", "params": {"parametrization": "mup"}},
    }
    spec = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"),
                      tasks=task, stages=stages, params={"tokens": 8 * 32 * 4, "batch_size": 8})  # fmt: skip
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and err.startswith("error: stages.more.params.parametrization mup"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_tiny_mup_run_trains_and_its_saved_model_scores_the_same(tmp_path, corpus, capsys):
    from transformers import AutoModelForCausalLM

    from scalelab.data.lm_tokens import prepare_lm_data
    from scalelab.eval.lm import sliding_window_score
    from scalelab.grid.api import load_experiment_tables

    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d1w64"],
                        params={"tokens": 8 * 32 * 20, "batch_size": 8, "lr": 1e-2,
                                "parametrization": "mup"})  # fmt: skip
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0, out
    table, _ = load_experiment_tables(spec)
    row = table.iloc[0]
    assert row["status"] == "done" and row["params.parametrization"] == "mup"
    assert math.isfinite(row["train_loss"]) and row["val_loss"] < math.log(256)
    task = load_spec_task(spec)
    data = prepare_lm_data(task)
    saved = AutoModelForCausalLM.from_pretrained(
        tmp_path / "out" / "runs" / row["run_id"] / "model"
    )
    score = sliding_window_score(saved.eval(), data.ids["validation"], task.eval.window or 32,
                                 task.eval.stride, task.eval.max_tokens)  # fmt: skip
    assert math.isclose(score.loss, row["val_loss"], rel_tol=1e-5)


def load_spec_task(path):
    from scalelab.grid.spec import expand, load_spec

    return expand(load_spec(path))[0].task


def test_a_mup_student_distills_from_a_standard_teacher(tmp_path, corpus, capsys):
    budget = {"tokens": 8 * 32 * 10, "batch_size": 8, "lr": 1e-2}
    stages = {
        "teacher": {"models": "gpt-d1", "methods": "pretrain", "params": budget},
        "student": {"models": "gpt-d1w64", "methods": {"name": "distill",
                    "teachers": ["@teacher"], "parametrization": "mup"}, "params": budget},
    }  # fmt: skip
    table = run_stages(tmp_path, corpus, stages, capsys)
    student = table[table["stage"] == "student"].iloc[0]
    assert student["status"] == "done" and math.isfinite(student["train_kd"])
    assert student["params.parametrization"] == "mup"


def test_a_base_width_under_standard_parametrization_changes_no_run_id():
    from scalelab.engine.args import identity
    from scalelab.methods.pretrain import PretrainParams

    plain = identity(PretrainParams(tokens=1000))
    assert identity(PretrainParams(tokens=1000, mup_base_width=128)) == plain
    mup = identity(PretrainParams(tokens=1000, parametrization="mup", mup_base_width=128))
    assert mup["mup_base_width"] == 128
    with pytest.raises(ValueError, match="mup_base_width"):
        PretrainParams(tokens=1000, mup_base_width=0)  # still checked
