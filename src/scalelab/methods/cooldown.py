"""Cooldown branches of a warmup-stable-decay run: `cooldown`.

Hägele et al. (2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations", Sec. 4) train one run per model size at a constant learning rate and branch
short cooldowns off it: the loss at budget D is that of a `wsd` run of D tokens, for the
price of its cooldown alone. Here the stable run is a `pretrain` run with `schedule: wsd`
and `branch_tokens: [D, ...]`: it keeps its training state at the first cooldown step of
each D (`branches/<D>/`, engine snapshots). A `cooldown` run names that run as its model
and a budget D from its list:

    stages:
      stable:   {models: [gpt-d2, gpt-d4], methods: pretrain,
                 params: {schedule: wsd, tokens: 2000000, branch_tokens: [500000, 1000000]}}
      branches: {models: "@stable", methods: cooldown, params: {tokens: [500000, 1000000]}}

A branch takes everything else from its stable run (model, lr, batch size, cooldown
fraction and shape, seed: the same batches), starts from the saved state (weights,
AdamW moments, step, losses) and runs the cooldown steps of a D-token wsd run to the end:
the same arithmetic as one run trained straight through, up to the stable run's warmup,
which is that of the stable run's length. Its row reports `tokens` = D like any
`pretrain` run, so `fit --law chinchilla` reads branches as separate runs;
`cooldown_tokens` counts the tokens it trained itself. Products and metrics: `pretrain`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, PositiveInt

from scalelab import metrics as mx
from scalelab.config import Strict
from scalelab.engine.args import identity
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, register_method
from scalelab.methods.pretrain import (
    PRETRAIN_METRICS,
    PretrainParams,
    PretrainRecipe,
    branch_folder,
)

COOLDOWN_TOKENS = mx.MetricDef(
    "cooldown_tokens", None, ",d", "tokens this branch trained itself (its cooldown)", "info"
)


class CooldownParams(Strict):
    """tokens: the branch's budget D, one of its stable run's `branch_tokens`. Everything
    else (lr, batch size, cooldown fraction and shape, model, seed) is the stable run's."""

    tokens: PositiveInt = Field(le=10**14)


def check_run(task, params: CooldownParams, model, inputs: dict) -> None:
    """Spec time: the model is a `pretrain` wsd run of the same task that keeps a branch at
    `params.tokens`. Raises ScalelabError naming the field."""
    ups = inputs.get("model", ())
    if not ups:
        raise ScalelabError(
            f"models: a cooldown branch continues a stable run; name that stage (@stage) "
            f"as the model, not {model.name!r}"
        )
    up = ups[0]
    if model.revision:
        raise ScalelabError(
            f"models: {model.name}: a cooldown branch continues its stable run's training "
            "state (params.branch_tokens), not a kept revision; name the stage (@stage)"
        )
    if up.method != "pretrain":
        raise ScalelabError(
            f"models: {model.name} is a {up.method!r} run; cooldown branches continue a "
            "`pretrain` run with schedule: wsd"
        )
    offered = up.params.branch_tokens or []
    if not offered:
        raise ScalelabError(
            f"models: {model.name} (run {up.run_id[:8]}) keeps no cooldown branches: a stable "
            "run needs schedule: wsd and params.branch_tokens"
        )
    if params.tokens not in offered:
        raise ScalelabError(
            f"params.tokens: {params.tokens} is not a branch of stable run {up.run_id[:8]} "
            f"({model.name}), which keeps branches at {offered} (its params.branch_tokens)"
        )
    if up.config["task"] != identity(task):
        raise ScalelabError(
            f"tasks: a cooldown branch trains on its stable run's task; {model.name} "
            f"(run {up.run_id[:8]}) trained on another ({up.task.dataset!r})"
        )


def stable_run(model) -> tuple[Path, dict]:
    """(the stable run's folder, its config.json) for a branch's model reference."""
    folder = Path(model.path).parent
    try:
        return folder, json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ScalelabError(f"stable run {folder}: cannot read config.json ({err})") from None


class CooldownRecipe(PretrainRecipe):
    """`pretrain`'s recipe, run with the stable run's model and params at budget D, started
    from the stable run's saved state (Plan.start_from)."""

    def __init__(self, ctx) -> None:
        from dataclasses import replace

        from scalelab.models.registry import ModelRef, resolve_model

        folder, config = stable_run(ctx.model)
        stable = PretrainParams.model_validate(config["params"])
        self.branch = branch_folder(folder, ctx.params.tokens)
        params = stable.model_copy(
            update={"tokens": ctx.params.tokens, "branch_tokens": None, "keep_checkpoints": None}
        )
        name = config["model"]
        run_id, _, revision = name[4:].partition("@")  # run:<id>, run:<id>@<tokens>
        model = (ModelRef.for_run(run_id, folder.parent, revision=revision or None)
                 if name.startswith("run:") else resolve_model(name))  # fmt: skip
        super().__init__(replace(ctx, model=model, params=params))

    def setup(self, device):
        plan = super().setup(device)
        plan.start_from = self.branch
        return plan

    def finish(self, model, state):
        from scalelab.engine.schedules import cooldown_start

        result = super().finish(model, state)
        steps = self.total - cooldown_start(self.total, self.args.cooldown_frac)
        result.metrics["cooldown_tokens"] = steps * self.args.batch_size * self.ctx.task.seq_len
        return result


register_method(
    MethodDef(
        name="cooldown",
        params=CooldownParams,
        entry="scalelab.methods.cooldown:CooldownRecipe",
        task_kinds=("lm",),
        description="a cooldown branch of a wsd `pretrain` run at one of its branch_tokens",
        check_run=check_run,
        metrics=(*PRETRAIN_METRICS, COOLDOWN_TOKENS),
        seed_from="model",
    )
)
