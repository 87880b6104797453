import pytest
import torch

from scalelab.errors import ScalelabError
from scalelab.models.build import build_causal_lm, count_params
from scalelab.models.ladder import NAMED_SIZES, depth_rung, ladder_rung


@pytest.mark.parametrize("name", ["gpt-d1", "gpt-d2", "gpt-d3", "gpt-20k", "gpt-1m"])
def test_exact_parameter_counts_match_the_built_model(name):
    rung = ladder_rung(name)
    model = build_causal_lm(name, vocab_size=300, n_positions=64)
    non_emb, total = count_params(model)
    assert non_emb == rung.non_embedding_params
    assert total == rung.total_params(300, 64)
    assert model.config.activation_function == "gelu_pytorch_tanh"


def test_ladder_spans_20k_to_20m_and_is_monotone():
    counts = [depth_rung(d).non_embedding_params for d in range(1, 13)]
    assert counts == sorted(counts)
    assert counts[0] < 20_000 < counts[1] and 15e6 < counts[-1] < 25e6
    for name, rung in NAMED_SIZES.items():
        target = float(name.split("-")[1].replace("k", "e3").replace("m", "e6"))
        assert abs(rung.non_embedding_params / target - 1) < 0.15, name


def test_bad_depth_is_a_user_error():
    with pytest.raises(ScalelabError, match="depth"):
        ladder_rung("gpt-d99")


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = build_causal_lm("gpt-d1", 300, 32)
    torch.manual_seed(3)
    b = build_causal_lm("gpt-d1", 300, 32)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_checkpoint_folder_reloads_with_from_pretrained(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = build_causal_lm("gpt-d1", 300, 32).eval()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    x = torch.randint(0, 300, (2, 16))
    torch.testing.assert_close(model(input_ids=x).logits, again(input_ids=x).logits)
