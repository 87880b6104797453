"""Students cut from a teacher's blocks: exactly the named blocks, the rest unchanged."""

from __future__ import annotations

import pytest
import torch

from scalelab.errors import ScalelabError
from scalelab.models.build import build_causal_lm, count_params
from scalelab.models.surgery import cut_blocks, every_other, resolve_layers


def params_of(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_gpt2_student_keeps_the_named_blocks_and_the_ends(tmp_path):
    torch.manual_seed(0)
    teacher = build_causal_lm("gpt-d4", vocab_size=257, n_positions=64)
    before = params_of(teacher)
    blocks = [params_of(b) for b in teacher.transformer.h]
    non_emb, total = count_params(teacher)
    per_block = sum(p.numel() for p in teacher.transformer.h[0].parameters())

    student = cut_blocks(teacher, [0, 3])
    assert student.config.n_layer == 2 and len(student.transformer.h) == 2
    for new, old in ((0, 0), (1, 3)):
        got = params_of(student.transformer.h[new])
        assert all(torch.equal(got[k], blocks[old][k]) for k in blocks[old])
    after = params_of(student)
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                 "lm_head.weight"):  # fmt: skip
        assert torch.equal(after[name], before[name])
    assert count_params(student) == (non_emb - 2 * per_block, total - 2 * per_block)

    student.save_pretrained(tmp_path / "s")  # a product later runs load like any model
    x = torch.randint(0, 257, (2, 16))
    again = type(student).from_pretrained(tmp_path / "s").eval()
    torch.testing.assert_close(again(x).logits, student.eval()(x).logits)


def test_a_llama_style_student_decodes_with_its_cache():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    third = params_of(model.model.layers[2])
    cut_blocks(model, "every_other")
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    assert all(torch.equal(params_of(model.model.layers[1])[k], v) for k, v in third.items())
    x = torch.randint(0, 64, (1, 8))
    with torch.no_grad():  # cached decoding indexes layers by position: it must still agree
        full = model(x).logits[:, -1]
        past = model(x[:, :-1], use_cache=True).past_key_values
        step = model(x[:, -1:], cache=past, use_cache=True).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)


def test_layer_maps_are_checked():
    assert every_other(30) == list(range(0, 30, 2)) and len(every_other(15)) == 8  # SmolLM2
    assert resolve_layers([1, 3], 4) == [1, 3]
    for bad, message in (([], "at least one"), ([0, 4], "blocks 0..3"), ([2, 1], "ascending"),
                         ([1, 1], "ascending")):  # fmt: skip
        with pytest.raises(ScalelabError, match=message):
            resolve_layers(bad, 4)


@pytest.mark.parametrize(
    ("keep", "message"),
    [([], "keep at least one block"), ([1, 0], "once each, ascending"),
     ([0, 0], "once each, ascending"), ([-1], "start at 0"),
     ([5], r"model @teacher:gpt-d4 has blocks 0..3")],
)  # fmt: skip
def test_bad_block_lists_are_spec_errors(tmp_path, keep, message):
    """Caught when the spec is read, not as failed runs: list shape always, range when the
    cut model is an earlier stage's ladder run (its depth is in its name)."""
    from helpers import write_spec

    from scalelab.grid.spec import expand, load_spec

    spec = write_spec(tmp_path / "s.yaml", name="k", output_dir=str(tmp_path / "out"),
                      tasks={"dataset": "wikitext2", "seq_len": 32, "tokenizer": {"kind": "byte"}},
                      params={"tokens": 4096}, stages={
                          "teacher": {"models": "gpt-d4", "methods": "pretrain"},
                          "cut": {"models": "@teacher", "methods": "pretrain",
                                  "params": {"keep_layers": keep}}})  # fmt: skip
    with pytest.raises(ScalelabError, match=message):
        expand(load_spec(spec))
