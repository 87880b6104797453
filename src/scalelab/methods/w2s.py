"""Weak-to-strong generalization: `w2s`, a strong student fine-tuned on a weaker model's labels.

Burns et al. (2023, "Weak-to-Strong Generalization: Eliciting Strong Capabilities With
Weak Supervision") ask how much of the gap between a weak supervisor and a strong model's
own ceiling a strong student recovers when it learns from the weak model's labels alone.
Here the protocol is a chain of runs, each trained once and shared:

    stages:
      weak:    {models: ..., tasks: {dataset: sarcasm, half: a}, methods: full}   # weak ceiling
      ceiling: {models: ..., tasks: {dataset: sarcasm, half: b}, methods: full}   # strong ceiling
      w2s:
        models: ...
        tasks: {dataset: sarcasm, half: b}
        methods:
          - {name: w2s, label: naive, labels: "@weak", loss: xent}
          - {name: w2s, label: logconf, labels: "@weak", loss: logconf, aux_coef: 0.5}

- The task's training split is cut into two fixed halves A and B (`task.half`, drawn with
  `data_seed`: `data.classification.split_halves`). A fine-tuning run on half A also writes
  its soft labels on half B (`labels.npz`, with `labels_accuracy` against B's truth).
- A `w2s` run names such a run as `labels` (one run per value: `@weak` is an axis over the
  weak runs) and takes its seed, so weak, ceiling and student pair seed for seed. It trains
  on half B with the labels as soft targets; the ground truth of B is never read for
  training (it only scores the labels). Validation ground truth picks no weights by default
  (`keep_best_val`): the student keeps its final weights.
- Losses (`methods/losses.py`): `xent`, cross-entropy against the soft weak labels (naive);
  `logconf`, the auxiliary confidence loss: target = (1 - c) weak + c hard(strong), hard
  labels of the student's own predictions with the weak labels' class balance (any number of
  classes), c ramping linearly from 0 to `aux_coef` over `aux_warmup_frac` of training.
- Bootstrapping (Burns et al. Sec. 4.3.1): weak -> intermediate -> strong, each step on the
  previous model's labels on fresh examples. With `bootstrap_steps: k` the chain has k + 1
  `w2s` runs: a step whose labels come from chain step d - 1 trains on a random 1/(k + 2 - d)
  of the examples those labels cover (fixed by `data_seed`) and labels the rest for the next
  step, so the k + 1 steps use disjoint parts of half B. Each step is a stage whose `labels`
  names the previous stage (`@boot_mid`).

Products: `full`'s (model, eval.json, predictions.npz) and, mid-chain, `labels.npz`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from scalelab import metrics as mx
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, is_run_reference, register_method
from scalelab.methods.finetune import CLASSIFICATION_METRICS, PRODUCTS, FinetuneRecipe, FullParams
from scalelab.methods.finetune import _check as _check_finetune


class W2SParams(FullParams):
    """`full` fine-tuning's params plus:

    labels: the run whose `labels.npz` the student learns from (`@stage` of a fine-tuning
    stage on the other half, or of the previous bootstrap step); loss: `xent` (naive) or
    `logconf` (auxiliary confidence); aux_coef: the largest confidence weight c, in [0, 1];
    aux_warmup_frac: fraction of training over which c ramps linearly from 0 to aux_coef;
    bootstrap_steps: intermediate models between the weak model and the final student (0:
    the student learns from the weak labels directly); keep_best_val: keep the weights with
    the best validation accuracy (ground truth a weakly supervised student would not have;
    False: the final weights).
    """

    labels: str
    loss: Literal["xent", "logconf"] = "xent"
    aux_coef: float = Field(0.5, ge=0, le=1)
    aux_warmup_frac: float = Field(0.2, ge=0, lt=1)
    bootstrap_steps: int = Field(0, ge=0, le=10)
    keep_best_val: bool = False

    @field_validator("labels")
    @classmethod
    def _reference(cls, v: str) -> str:
        if not is_run_reference(v):
            raise ValueError(
                f"{v!r} is not a reference to an earlier stage's runs: write @stage (the weak "
                "model's fine-tuning stage, on the other half of the training split)"
            )
        return v

    @field_validator("label_smoothing")
    @classmethod
    def _no_smoothing(cls, v: float) -> float:
        if v:
            raise ValueError("the weak labels are soft already: leave label_smoothing at 0")
        return v

    @field_validator("class_weights")
    @classmethod
    def _no_weights(cls, v: str) -> str:
        if v != "none":
            raise ValueError("class weights count ground-truth labels the student must not see")
        return v


def _check(task, params: W2SParams) -> None:
    _check_finetune(task, params)
    if getattr(task, "half", None) is None:
        raise ScalelabError(
            "task.half: a w2s student trains on one half of the training split (b) and its "
            "weak supervisor on the other (a): set half: b"
        )
    if getattr(task, "augment", None) is not None:
        raise ScalelabError(
            "task.augment: a w2s student learns the weak labels of the examples of its half; "
            "augmented copies have none (augment the weak supervisor's task instead)"
        )
    if params.early_stopping_patience and not params.keep_best_val:
        raise ScalelabError(
            "params.early_stopping_patience: early stopping watches validation ground truth; "
            "set keep_best_val: true to use it"
        )


def check_run(task, params: W2SParams, model, inputs: dict) -> None:
    """Spec time: `labels` names a classifier run of the same data on the other half (or,
    in a bootstrap chain, a `w2s` run on this half with the same bootstrap_steps)."""
    for up in inputs.get("labels", ()):
        who = f"params.labels: run {up.run_id[:8]} ({up.model.name}, {up.method})"
        theirs = up.task
        if theirs.kind != "classification" or up.method not in ("full", "lora", "w2s"):
            raise ScalelabError(f"{who} is not a fine-tuned classifier (full, lora or w2s)")
        for field in ("dataset", "train_size", "data_seed"):
            if getattr(theirs, field) != getattr(task, field):
                raise ScalelabError(
                    f"{who} has task.{field} {getattr(theirs, field)!r}, the student "
                    f"{getattr(task, field)!r}: both must cut the same training split"
                )
        if up.method == "w2s":
            if theirs.half != task.half or up.params.bootstrap_steps != params.bootstrap_steps:
                raise ScalelabError(
                    f"{who}: a bootstrap step learns from the previous step of its chain: "
                    "the same task.half and params.bootstrap_steps"
                )
        elif theirs.half is None or theirs.half == task.half:
            raise ScalelabError(
                f"{who} trained on half {theirs.half!r}: the weak labels come from a run on "
                f"the other half than the student's ({task.half!r})"
            )


class W2SRecipe(FinetuneRecipe):
    """`full` fine-tuning on another run's soft labels with the `xent` or `logconf` loss."""

    def load_data(self, task):
        """The student's examples: those the labels cover (its chain step's share of them),
        in the labels' order, with the soft labels as `self.targets` [n, K]."""
        import numpy as np

        from scalelab.data.classification import TaskData, load_task_data
        from scalelab.methods.label_files import read_labels

        data = load_task_data(task)
        refs = self.ctx.inputs.get("labels", ())
        if len(refs) != 1:
            raise ScalelabError(f"params.labels: names {len(refs)} runs, a student learns from 1")
        weak = read_labels(Path(refs[0].path).parent)
        if weak.label_names != data.label_names:
            raise ScalelabError(
                f"params.labels: {refs[0].name} labels {weak.label_names}, the task "
                f"{data.label_names}: the classes must match, in order"
            )
        steps = self.args.bootstrap_steps + 1
        step = weak.step + 1
        if (weak.steps and weak.steps != steps) or step > steps:
            raise ScalelabError(
                f"params.labels: {refs[0].name} is step {weak.step} of a {weak.steps}-step "
                f"chain; this run would be step {step} of {steps} (bootstrap_steps + 1)"
            )
        where = {p: i for i, p in enumerate(data.train_index)}
        if missing := [int(p) for p in weak.index if p not in where]:
            raise ScalelabError(
                f"params.labels: {len(missing)} labelled examples are not in this task's half "
                f"{task.half!r} (first position {missing[0]})"
            )
        order = np.random.default_rng(task.data_seed).permutation(len(weak.index))
        take = np.sort(order[0 :: steps - step + 1])
        rest = np.setdiff1d(np.arange(len(weak.index)), take)
        self.targets_np = weak.probs[take]
        self.weak_accuracy = float((weak.probs[take].argmax(-1) == weak.truth[take]).mean())
        self.heldout = [data.train[where[p]] for p in weak.index[rest]]
        self.heldout_index = weak.index[rest].tolist()
        self.label_step, self.label_steps = step, steps
        train = [data.train[where[p]] for p in weak.index[take]]
        return TaskData(train, data.validation, data.test, data.label_names,
                        weak.index[take].tolist())  # fmt: skip

    def setup(self, device):
        import torch

        plan = super().setup(device)
        self.targets = torch.from_numpy(self.targets_np).float().to(device)
        self.total = plan.total_steps
        if not self.args.keep_best_val:
            plan.select, plan.patience = None, 0
        return plan

    def batch(self, step: int):
        """The example indices of `step` (as `full`) and the step itself, per example."""
        import numpy as np

        idx = super().batch(step)
        return {"idx": idx, "step": np.full(len(idx), step, dtype=np.int64)}

    def loss_step(self, model, batch):
        import torch

        from scalelab.methods.losses import aux_coef_at, logconf_loss, soft_cross_entropy

        p = self.args
        logits, _, idx = self.logits_and_labels(model, batch["idx"])
        weak = self.targets[torch.from_numpy(idx).to(self.device)]
        if p.loss == "xent":
            loss = soft_cross_entropy(logits, weak)
        else:
            frac = int(batch["step"][0]) / max(1, self.total)
            loss, _ = logconf_loss(logits, weak, aux_coef_at(frac, p.aux_coef, p.aux_warmup_frac))
        return loss, {"examples": len(idx)}

    def finish(self, model, state):
        """`full`'s metrics plus the chain step and the accuracy of the labels trained on."""
        result = super().finish(model, state)
        result.metrics.update(chain_step=self.label_step, chain_steps=self.label_steps,
                              trained_labels_accuracy=self.weak_accuracy)  # fmt: skip
        return result


W2S_METRICS = (
    *CLASSIFICATION_METRICS,
    mx.MetricDef("trained_labels_accuracy", None, ".4f",
                 "accuracy of the soft labels the student trained on (vs ground truth)", "info"),
    mx.MetricDef("chain_step", None, ",d", "place in its bootstrap chain (1 = on weak labels)",
                 "info"),
    mx.MetricDef("chain_steps", None, ",d", "runs in its chain (bootstrap_steps + 1)", "info"),
)  # fmt: skip

register_method(
    MethodDef(
        name="w2s",
        params=W2SParams,
        entry="scalelab.methods.w2s:W2SRecipe",
        task_kinds=("classification",),
        description="weak-to-strong: a strong student fine-tuned on a weak run's soft labels "
        "(xent or logconf loss; bootstrap chains)",
        check=_check,
        check_run=check_run,
        metrics=W2S_METRICS,
        products=PRODUCTS,
        seed_from="labels",
    )
)
