"""Pretraining from scratch on a token budget (nanoGPT-style): params, recipe, registration.

The batch at step s is `batch_size` random windows of `seq_len + 1` tokens drawn by a
generator seeded with (seed, s); the loss is the mean next-token cross-entropy (nats). The
final metrics score the whole validation and test splits with a sliding window
(eval/lm.py). Products: `model/` (a save_pretrained folder with its tokenizer), and with
`keep_checkpoints` the same folder at earlier token counts, `revisions/<tokens>/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from scalelab import metrics as mx
from scalelab.engine.args import TrainArgs
from scalelab.engine.recipe import Phase, Plan, Recipe
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, RunResult, register_method


class PretrainParams(TrainArgs):
    """AdamW, linear warmup then cosine decay to min_lr_ratio * lr, gradient clipping.

    tokens: training budget in tokens (steps = tokens // (batch_size * seq_len)).
    batch_size: sequences per optimizer step (split over grad_accum_steps and DDP ranks).
    dropout: GPT-2 residual/attention/embedding dropout of a ladder model.
    eval_every: steps between validation passes (0 = about 10 per run, plus one at step 0);
    eval_tokens: validation tokens per periodic pass, scored in non-overlapping seq_len
    windows (the final metrics use the task's sliding window over `task.eval.max_tokens`,
    and the curve's last point is that final evaluation).
    keep_layers: start from the run's (trained) model cut to these transformer blocks, in
    order, embeddings and head kept (DistilGPT2-style students, `models/surgery.py`):
    block indices or "every_other"; None: the whole model.
    branch_tokens: with `schedule: wsd`, smaller token budgets D this run is the stable run
    for: the training state at the first cooldown step of a D-token wsd run (the lr is
    still constant there) is kept in `branches/<D>/`, and a `cooldown` run in a later
    stage finishes it (Hägele et al. 2024, Sec. 4: one stable run, short cooldowns).
    keep_checkpoints: token counts at which the model is also kept, as a revision of the
    run's model: at the first optimizer step whose trained tokens reach each count, the
    model (not the optimizer state) is saved like `model/` in `revisions/<count>/` (name it
    `@stage@<count>` in a later stage, or `runs/<id>/model@<count>`); how ability grows
    during training, like Pythia's step revisions.
    parametrization: "standard" (GPT-2's init, one lr) or "mup" (ladder models only: muP's
    init, per-layer Adam lr and weight decay, logit multiplier and attention scale, Yang
    et al. 2022 Tables 3/8, `models/mup.py`), so that the best lr found at one width holds
    at the others; mup_base_width: the width at which muP equals standard (the width
    multiplier is n_embd / mup_base_width; ignored, and left out of the run id, under
    standard). The saved model is plain GPT-2 either way.
    """

    # Added after results existed: left out of run ids at their defaults.
    ID_OMIT_DEFAULTS: ClassVar[frozenset[str]] = TrainArgs.ID_OMIT_DEFAULTS | {
        "keep_layers",
        "branch_tokens",
        "keep_checkpoints",
        "parametrization",
        "mup_base_width",
    }

    # 1e14: 100T tokens, several times the largest published training run; more is a typo
    tokens: PositiveInt = Field(le=10**14)
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 3e-3
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0)
    beta2: float = Field(0.95, ge=0, lt=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    eval_every: int = Field(0, ge=0)
    eval_tokens: PositiveInt = 32768
    keep_layers: list[int] | Literal["every_other"] | None = None
    branch_tokens: list[PositiveInt] | None = None
    keep_checkpoints: list[PositiveInt] | None = None
    parametrization: Literal["standard", "mup"] = "standard"
    mup_base_width: PositiveInt = 32

    @model_validator(mode="before")
    @classmethod
    def _base_width_only_for_mup(cls, data):
        # mup_base_width means nothing under standard parametrization: dropped, so that one
        # spec sweeping [standard, mup] with a base width gives standard runs the ids of
        # runs that never named one (the same computation, stored once).
        if isinstance(data, dict) and data.get("parametrization", "standard") == "standard":
            width = data.get("mup_base_width")
            if isinstance(width, int) and not isinstance(width, bool) and width > 0:
                data = {k: v for k, v in data.items() if k != "mup_base_width"}
        return data

    @field_validator("keep_layers")
    @classmethod
    def _layer_list(cls, v):
        from scalelab.models.surgery import check_layer_list

        return check_layer_list(v)


def _check(task, params: PretrainParams) -> None:
    batch_tokens = params.batch_size * task.seq_len
    if params.tokens < batch_tokens:
        raise ScalelabError(
            f"params.tokens ({params.tokens}) is smaller than one batch "
            f"(batch_size {params.batch_size} x seq_len {task.seq_len} = {batch_tokens})"
        )
    _check_branches(task, params)
    revision_steps(task, params)
    if params.batch_size < params.grad_accum_steps:
        raise ScalelabError(
            f"params.grad_accum_steps ({params.grad_accum_steps}) exceeds "
            f"params.batch_size ({params.batch_size})"
        )


def branch_steps(task, params: PretrainParams) -> dict[int, int]:
    """Branch budget D (tokens) -> the optimizer step after which its training state is
    saved: the first cooldown step of a D-token wsd run with these params."""
    from scalelab.engine.schedules import cooldown_start

    batch_tokens = params.batch_size * task.seq_len
    return {d: cooldown_start(d // batch_tokens, params.cooldown_frac)
            for d in params.branch_tokens or ()}  # fmt: skip


def branch_folder(run_dir: Path, tokens: int) -> Path:
    """Where a stable run keeps the training state of its branch at `tokens`."""
    return Path(run_dir) / "branches" / str(tokens)


def revision_steps(task, params: PretrainParams) -> dict[int, int]:
    """Kept token count -> the optimizer step (1-based) after which its model is saved: the
    first step whose trained tokens reach the count. Raises ScalelabError (naming
    params.keep_checkpoints) for a count below one batch or beyond the tokens the run
    trains, and for two counts on one step."""
    batch_tokens = params.batch_size * task.seq_len
    total = params.tokens // batch_tokens
    out: dict[int, int] = {}
    by_step: dict[int, int] = {}
    for n in params.keep_checkpoints or ():
        if n < batch_tokens:
            raise ScalelabError(
                f"params.keep_checkpoints: {n} is less than one batch (batch_size "
                f"{params.batch_size} x seq_len {task.seq_len} = {batch_tokens} tokens)"
            )
        if n > total * batch_tokens:
            raise ScalelabError(
                f"params.keep_checkpoints: {n} is more than the run trains (params.tokens "
                f"{params.tokens}: {total} steps of {batch_tokens} = {total * batch_tokens} tokens)"
            )
        step = -(-n // batch_tokens)
        if step in by_step:
            raise ScalelabError(
                f"params.keep_checkpoints: {by_step[step]} and {n} are both saved at step "
                f"{step} ({batch_tokens} tokens a step)"
            )
        by_step[step], out[n] = n, step
    return out


def revision_folder(run_dir: Path, tokens: int) -> Path:
    """Where a run keeps its model at `tokens` (`keep_checkpoints`)."""
    return Path(run_dir) / "revisions" / str(tokens)


def _check_branches(task, params: PretrainParams) -> None:
    """branch_tokens: wsd only; each budget a whole batch or more, below the run's own,
    starting its cooldown after the warmup; no two budgets sharing a step count."""
    if params.branch_tokens is None:
        return
    if params.schedule != "wsd":
        raise ScalelabError(
            f"params.branch_tokens needs params.schedule: wsd (a constant lr to branch "
            f"from), not {params.schedule!r}"
        )
    batch_tokens = params.batch_size * task.seq_len
    total = params.tokens // batch_tokens
    warmup = int(params.warmup_frac * total)
    steps: dict[int, int] = {}
    for d, start in branch_steps(task, params).items():
        if not batch_tokens <= d < params.tokens:
            raise ScalelabError(
                f"params.branch_tokens: {d} is not between one batch ({batch_tokens} tokens) "
                f"and the stable run's own budget params.tokens ({params.tokens})"
            )
        if start < warmup:
            raise ScalelabError(
                f"params.branch_tokens: {d} would start its cooldown at step {start}, inside "
                f"the warmup ({warmup} steps); use a larger budget or a smaller warmup_frac"
            )
        n = d // batch_tokens
        if n in steps:
            raise ScalelabError(
                f"params.branch_tokens: {steps[n]} and {d} are both {n} steps of "
                f"{batch_tokens} tokens"
            )
        steps[n] = d


def check_run(task, params: PretrainParams, model, inputs: dict) -> None:
    """Spec time: `keep_layers` needs trained weights to cut (not a ladder model's random
    initialisation); `parametrization: mup` needs a ladder model. Raises ScalelabError."""
    if params.keep_layers is not None and model.kind == "ladder":
        raise ScalelabError(
            f"params.keep_layers cuts a trained model's blocks, but model {model.name!r} "
            "starts from random weights: name an earlier stage's run (@stage) or a "
            "pretrained decoder as the model"
        )
    if params.parametrization == "mup" and model.kind != "ladder":
        raise ScalelabError(
            f"params.parametrization mup sets a ladder model's init and widths; model "
            f"{model.name!r} is a {model.kind} model: train a ladder name (gpt-d2w64, ...)"
        )
    from scalelab.models.surgery import check_blocks_exist

    check_blocks_exist(params.keep_layers, model)


def get_batch(ids, batch: int, seq_len: int, seed: int, step: int):
    """(x, y) int64 [batch, seq_len]: random windows, y shifted by one, fixed by (seed, step).

    ids: a split's tokens [n] (a token-file memmap, a numpy array or a tensor); only the
    drawn windows are read."""
    import torch

    from scalelab.data.lm_tokens import token_window

    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    # Starts are drawn from [0, len - seq_len - 1): the last possible start is never drawn.
    # Kept as is (every stored result depends on these draws); max(1, ...) makes a split
    # of exactly one window (seq_len + 1 tokens, what `require_full_windows` allows) work.
    high = max(1, len(ids) - seq_len - 1)
    starts = torch.randint(0, high, (batch,), generator=g)
    rows = torch.stack([token_window(ids, s, s + seq_len + 1) for s in starts.tolist()])
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def make_loss_fn(model, dtype: str = "fp32", compile: bool = False):
    """`loss(model, x, y)`: mean next-token cross-entropy (nats) of int64 [batch, seq] tensors.

    Compiling the model and the loss together is what pays on CPU (1.4-1.7x); compiling the
    model alone helps little at small sizes. `use_cache=False`: training needs no KV cache.
    """
    from contextlib import nullcontext

    import torch
    import torch.nn.functional as F

    from scalelab.engine.precision import DTYPES

    device_type = next(model.parameters()).device.type
    amp = DTYPES.get(dtype)  # None: fp32, no autocast (fp16's loss scaling is the engine's)

    def loss_fn(m, x, y):
        with torch.autocast(device_type, dtype=amp) if amp else nullcontext():
            logits = m(input_ids=x, use_cache=False).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))

    return torch.compile(loss_fn) if compile else loss_fn


class PretrainRecipe(Recipe):
    """A ladder model (or any causal LM, e.g. another run's product) on a token budget."""

    def setup(self, device) -> Plan:
        import torch
        from transformers.utils import logging as hf_logging

        from scalelab.data.lm_tokens import prepare_lm_data
        from scalelab.engine.precision import autocast_for
        from scalelab.models.build import build_causal_lm, load_tokenizer_for
        from scalelab.models.mup import apply_mup

        hf_logging.disable_progress_bar()  # our own display shows progress
        ctx, task, p = self.ctx, self.ctx.task, self.args
        ladder = ctx.model.kind == "ladder"
        self.data = prepare_lm_data(
            task, tokenizer=None if ladder else load_tokenizer_for(ctx.model), report=ctx.report
        )
        T, B = task.seq_len, p.batch_size
        if len(self.data.ids["train"]) <= T + 1:
            raise ScalelabError(
                f"task.dataset {task.dataset!r}: training split shorter than seq_len"
            )
        torch.manual_seed(ctx.seed)
        model = build_causal_lm(ctx.model, self.data.vocab_size, T, dropout=p.dropout)
        if p.keep_layers is not None:
            check_run(task, p, ctx.model, {})
            from scalelab.models.surgery import cut_blocks

            cut_blocks(model, p.keep_layers)
        mup = apply_mup(model, p.mup_base_width) if p.parametrization == "mup" else None
        model = model.to(device)
        self.device = device
        autocast_for(p.dtype, device)  # an unsupported dtype fails here, not at step 1
        self.loss_fn = make_loss_fn(model, p.dtype, ctx.runtime.compile)
        total = p.tokens // (B * T)
        self.total = total
        snapshots = {s: branch_folder(ctx.run_dir, d) for d, s in branch_steps(task, p).items()}
        revisions = {s: revision_folder(ctx.run_dir, n)
                     for n, s in revision_steps(task, p).items()}  # fmt: skip
        return Plan(model=model, phases=[Phase("train", total)], eval_at_start=True,
                    eval_every=p.eval_every or max(1, total // 10), snapshots=snapshots,
                    revisions=revisions, lr_mults=mup and mup.lr_mults,
                    wd_mults=mup and mup.wd_mults)  # fmt: skip

    def batch(self, step: int):
        return get_batch(self.data.ids["train"], self.args.batch_size, self.ctx.task.seq_len,
                         self.ctx.seed, step)  # fmt: skip

    def loss_step(self, model, batch):
        x, y = (t.to(self.device) for t in batch)
        return self.loss_fn(model, x, y), {"tokens": x.numel()}

    def evaluate(self, model) -> dict[str, float]:
        from scalelab.eval.lm import sliding_window_score

        T = self.ctx.task.seq_len
        val = sliding_window_score(model, self.data.ids["validation"], T, stride=T,
                                   max_tokens=self.args.eval_tokens)  # fmt: skip
        return {"val_loss": val.loss}

    def save_revision(self, model, folder: Path) -> None:
        """`model` as a plain GPT-2 (muP's multipliers folded into a copy's weights) with
        its tokenizer, a save_pretrained folder written atomically: the final `model/` and
        each revision alike."""
        import copy

        from scalelab.engine.checkpoint import save_pretrained_atomic
        from scalelab.models.mup import fold_mup, mup_of

        if mup_of(model) is not None:  # folding changes the weights: training goes on
            model = copy.deepcopy(model)
            fold_mup(model)
        save_pretrained_atomic(folder, model, self.data.tokenizer)

    def finish(self, model, state) -> RunResult:
        """Final sliding-window evaluation, the saved model folder, and the metrics."""
        import torch

        from scalelab.eval.lm import sliding_window_score
        from scalelab.models.build import count_params
        from scalelab.models.mup import fold_mup

        task, p, data = self.ctx.task, self.args, self.data
        window = task.eval.window or task.seq_len
        amp = torch.bfloat16 if p.dtype == "bf16" else None
        model.eval()
        score = {
            split: sliding_window_score(model, data.ids[split], window, task.eval.stride,
                                        task.eval.max_tokens, autocast_dtype=amp)
            for split in ("validation", "test")
        }  # fmt: skip
        fold_mup(model)  # muP's multipliers into the weights: a plain GPT-2 is saved
        self.save_revision(model, self.ctx.run_dir / "model")
        # The curve's last point becomes the evaluation the table reports (the periodic
        # passes score the first `eval_tokens` tokens in non-overlapping windows: cheaper,
        # and biased upwards); the periodic estimate at that step is kept beside it.
        curve = [dict(c) for c in state["curve"]]
        if curve and curve[-1].get("val_loss") is not None:
            curve[-1]["val_loss_periodic"] = curve[-1]["val_loss"]
            curve[-1]["val_loss"] = score["validation"].loss
        non_emb, total = count_params(model)
        losses = state["losses"]
        tail = losses[-max(1, len(losses) // 10) :]
        test_tokens = score["test"].n_tokens
        # bits/byte over the bytes actually scored (all of them unless eval.max_tokens caps it).
        test_bytes = data.n_bytes["test"] * test_tokens / max(len(data.ids["test"]) - 1, 1)
        metrics = {
            "non_embedding_params": non_emb,
            "total_params": total,
            "tokens": self.total * p.batch_size * task.seq_len,
            "train_loss": sum(tail) / len(tail),
            "val_loss": score["validation"].loss,
            "val_ppl": score["validation"].ppl,
            "test_loss": score["test"].loss,
            "test_ppl": score["test"].ppl,
            "bits_per_byte": score["test"].bits_per_byte(round(test_bytes)),
            "vocab_size": data.vocab_size,
            "train_split_tokens": len(data.ids["train"]),
            "val_tokens_scored": score["validation"].n_tokens,
            "test_tokens_scored": test_tokens,
        }
        return RunResult(metrics=metrics, curve=curve)


# What a pretraining run reports (methods that pretrain with extra terms add theirs).
PRETRAIN_METRICS = (
    mx.NON_EMBEDDING_PARAMS,
    mx.TOTAL_PARAMS,
    mx.TOKENS,
    mx.TRAIN_LOSS,
    mx.VAL_LOSS,
    mx.MetricDef("val_ppl", False, ".3f", "validation perplexity, exp(val_loss)"),
    mx.TEST_LOSS,
    mx.MetricDef("test_ppl", False, ".3f", "test perplexity, exp(test_loss)"),
    mx.MetricDef("bits_per_byte", False, ".4f", "test cross-entropy in bits per byte"),
    mx.TOKENS_PER_S,
    mx.PEAK_MEM_MB,
    mx.WALL_S,
    mx.MetricDef("vocab_size", None, ",d", "tokenizer vocabulary size", "info"),
    mx.MetricDef("train_split_tokens", None, ",d", "tokens in the training split", "info"),
    mx.MetricDef("val_tokens_scored", None, ",d", "validation tokens scored", "info"),
    mx.MetricDef("test_tokens_scored", None, ",d", "test tokens scored", "info"),
    mx.STEPS,
    *mx.EVENT_COUNTS,
)

register_method(
    MethodDef(
        name="pretrain",
        params=PretrainParams,
        entry="scalelab.methods.pretrain:PretrainRecipe",
        task_kinds=("lm",),
        description="train a ladder model from scratch on a token budget",
        check=_check,
        check_run=check_run,
        metrics=PRETRAIN_METRICS,
        products=("model", "branches", "revisions"),
    )
)
