"""What a method gives the engine: a `Recipe` (torchtune's recipes differ in little more
than setup and `_loss_step`; so do ours).

The engine calls `setup(device)` once, then for every optimizer step `batch(step)` and
`loss_step(model, micro_batch)` per micro-batch, `evaluate(model)` at the evaluation
cadence, and `finish(model, state)` at the end (test metrics, saved products). Everything
else (the loop, schedule, precision, accumulation, clipping, best weights, early stopping,
checkpoints, throughput, events, logging, DDP) is the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Phase:
    """A stretch of optimizer steps with its own trainable parameters, optimizer and lr
    schedule (e.g. the new head alone first, then everything).

    trainable: parameter names that train in this phase (None: every parameter that
    requires grad after setup). early_stopping: whether validation without improvement in
    this phase counts towards the patience."""

    name: str
    steps: int
    trainable: tuple[str, ...] | None = None
    early_stopping: bool = True


@dataclass
class Plan:
    """The shape of a training run, returned by `Recipe.setup`.

    model: the trainable torch module (on the device); phases: consecutive, their steps sum
    to the run's optimizer steps; eval_every: steps between validation passes (0: none
    besides epoch ends and the last step); epoch_steps: steps per epoch when the method has
    epochs (a validation pass ends every epoch); select: (validation metric, higher is
    better) whose best value's weights are kept for `finish`, or None for the final weights;
    patience: evaluations without improvement before stopping (0 = never); lr_mults:
    parameter name -> lr multiplier (layer-wise lr, muP); wd_mults: parameter name ->
    weight-decay multiplier (muP); eval_at_start: also evaluate before the
    first step (the curve's step-0 point: where training starts from; never selected as the
    best weights); snapshots: optimizer step -> folder where the full training state after
    that step is saved as a checkpoint and kept (a product: cooldown branches start from
    one); revisions: optimizer step -> folder where the model after that step is saved by
    `Recipe.save_revision` (a product: a model folder, evaluable like the final model; one
    already there, from before a resume, is kept); start_from: a checkpoint folder to start from when the run has none of its own
    (a cooldown branch starts from its stable run's snapshot: its weights, optimizer state,
    step, losses, curve and token count; time and throughput count this run's own work)."""

    model: Any
    phases: list[Phase]
    eval_every: int = 0
    epoch_steps: int | None = None
    select: tuple[str, bool] | None = None
    patience: int = 0
    lr_mults: dict[str, float] | None = None
    wd_mults: dict[str, float] | None = None
    eval_at_start: bool = False
    snapshots: dict[int, Any] = field(default_factory=dict)
    revisions: dict[int, Any] = field(default_factory=dict)
    start_from: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)


class Recipe:
    """Base class of a method's recipe; `ctx` is the run's RunContext, `args` its params
    (a TrainArgs subclass)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.args = ctx.params

    def setup(self, device) -> Plan:
        raise NotImplementedError

    def batch(self, step: int) -> Any:
        """The whole (global) batch of optimizer step `step`, a function of (seed, step)
        only, so a resumed run replays it. Tensors, lists or arrays whose first dimension
        is the example (the engine splits it for accumulation and DDP)."""
        raise NotImplementedError

    def loss_step(self, model, batch) -> tuple[Any, dict[str, float]]:
        """(mean loss over the micro-batch as a 0-d tensor, logs). Logs may count
        `examples` and `tokens` (summed by the engine for throughput)."""
        raise NotImplementedError

    def evaluate(self, model) -> dict[str, float]:
        """Validation metrics (e.g. {"val_loss": ..., "val_accuracy": ...})."""
        return {}

    def save_revision(self, model, folder) -> None:
        """Save `model` (as training has it now, left unchanged) as a from_pretrained
        folder at `folder`, atomically: what `Plan.revisions` asks for."""
        raise NotImplementedError

    def finish(self, model, state: dict[str, Any]):
        """Final evaluation, saved products; returns the RunResult."""
        raise NotImplementedError
