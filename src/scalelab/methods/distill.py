"""Logit distillation of a language model from one or several teachers: `distill`.

A student (a ladder model from scratch, or any causal LM) trains on the same token budget
and batches as `pretrain`, with the loss of Hinton et al. (2015, "Distilling the Knowledge
in a Neural Network"): (1 - alpha) * CE(next token) + alpha * T^2 * KL(p_teacher^T ||
p_student^T) (`methods/losses.py`). Teachers are the model products of earlier stages of
the same spec (`teachers: "@teacher"` for every run of stage `teacher`, or a list of
filtered references); each is run in eval mode, without gradients, on the student's batch.

Logit distillation compares distributions over one vocabulary, so every teacher must use
the student's tokenizer token for token: checked when the spec is expanded (the teacher
runs' task tokenizers and datasets) and again when the teachers load (vocabulary sizes and
the tokenizers' full definitions), with one error line that points to sequence-level
(rationale) distillation otherwise. Products and metrics: those of `pretrain`, plus the
final train CE and KD terms.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from scalelab import metrics as mx
from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, is_run_reference, register_method
from scalelab.methods.finetune import CLASSIFICATION_METRICS, FinetuneRecipe, FullParams
from scalelab.methods.finetune import _check as _check_finetune
from scalelab.methods.pretrain import PRETRAIN_METRICS, PretrainParams, PretrainRecipe
from scalelab.methods.pretrain import _check as _check_pretrain
from scalelab.methods.pretrain import check_run as check_pretrain_run

MISMATCH_HINT = (
    "logit distillation needs one vocabulary token for token; across tokenizers only "
    "sequence-level (rationale) distillation works, which scalelab does not have yet"
)


class KDArgs(Strict):
    """The distillation terms every `distill` variant shares.

    teachers: references to earlier stages' runs (`@stage` or `@stage[model=...,seed=...]`;
    a reference matching several runs names them all); teacher_weights: one positive weight
    per teacher, normalised to sum 1 (default equal); alpha: the weight of the KD term (0:
    plain training, 1: teachers only); temperature: T of the softened distributions;
    combine: "mean" (KL to the weighted mixture of the teachers' distributions, the
    default: it reads 0 when the student matches the ensemble) or "sum_kl" (the weighted
    sum of per-teacher KLs). Both give the same gradients (`losses.kd_divergence`).
    """

    teachers: list[str] = Field(min_length=1)
    teacher_weights: list[PositiveFloat] | None = None
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: PositiveFloat = Field(2.0, le=100)
    combine: Literal["mean", "sum_kl"] = "mean"

    @field_validator("teachers")
    @classmethod
    def _references(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not is_run_reference(t)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a reference to an earlier stage's runs: write "
                "@stage or @stage[model=...,seed=...] (the teachers train in that stage)"
            )
        return v


class DistillParams(PretrainParams, KDArgs):
    """Language models: `pretrain`'s params plus `KDArgs`, and
    top_k: keep each teacher's k most likely tokens per position plus the leftover mass
    (None: the whole distribution); cache_teacher_outputs: keep the teachers' outputs per
    batch on disk for every later student that feeds them the same batch
    (`teacher_outputs.py`; False: run the teachers live at every step).
    """

    # Caching teacher outputs changes no result (tested bit for bit): not in run ids.
    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"cache_teacher_outputs"})

    top_k: PositiveInt | None = None
    cache_teacher_outputs: bool = True


class DistillClassifierParams(FullParams, KDArgs):
    """Classifiers: full fine-tuning's params (`full`) plus `KDArgs`. The teachers are
    fine-tuned classifier runs (`full` or `lora`) over the same labels; each scores the
    training set once, with its own tokenizer, before the student trains."""

    @field_validator("label_smoothing")
    @classmethod
    def _no_smoothing(cls, v: float) -> float:
        if v:
            raise ValueError("the teachers' soft labels replace label smoothing: leave it at 0")
        return v


def _check_weights(params: KDArgs) -> None:
    """One teacher weight per teacher run (counted after `@stage` references resolved)."""
    n, w = len(params.teachers), params.teacher_weights
    if w is not None and len(w) != n:
        raise ScalelabError(
            f"params.teacher_weights has {len(w)} weights for {n} teacher(s) "
            f"(params.teachers names {n} run(s))"
        )


def _check(task, params: DistillParams) -> None:
    _check_pretrain(task, params)
    _check_weights(params)


def _term_metrics(terms: dict[str, list[float]], state: dict, accum: int) -> dict[str, float]:
    """train_ce and train_kd over the steps train_loss averages (the last 10%, of this
    process's steps only after a resume; `accum` micro-batches per step)."""
    n = max(1, len(state["losses"]) // 10) * accum
    return {
        f"train_{k}": sum(values[-n:]) / len(values[-n:]) if values else float("nan")
        for k, values in terms.items()
    }


def check_run(task, params, model, inputs: dict) -> None:
    """Spec time: `pretrain`'s check, and every teacher run tokenized the student's
    dataset the student's way. inputs: param name -> the RunSpecs it names. Raises
    ScalelabError naming both sides."""
    check_pretrain_run(task, params, model, inputs)
    for up in inputs.get("teachers", ()):
        theirs, ours = up.task, task
        if getattr(theirs, "kind", None) != "lm":
            raise ScalelabError(
                f"params.teachers: run {up.run_id[:8]} ({up.model.name}) is a "
                f"{theirs.kind} run, not a language model; {MISMATCH_HINT}"
            )
        same = theirs.tokenizer == ours.tokenizer
        if same and ours.tokenizer.kind == "bpe":  # trained on its corpus: same corpus too
            same = theirs.dataset == ours.dataset
        if not same:
            raise ScalelabError(
                f"params.teachers: teacher {up.model.name} (run {up.run_id[:8]}) uses tokenizer "
                f"{theirs.tokenizer.model_dump(exclude_none=True)} on {theirs.dataset!r}, the "
                f"student {ours.tokenizer.model_dump(exclude_none=True)} on {ours.dataset!r}; "
                f"{MISMATCH_HINT}"
            )


class DistillRecipe(PretrainRecipe):
    """`pretrain`'s recipe with teachers: their logits on each batch enter the loss."""

    def setup(self, device):
        from scalelab.models.build import build_causal_lm, load_tokenizer_for

        plan = super().setup(device)
        refs = self.ctx.inputs.get("teachers", ())
        if len(refs) != len(self.args.teachers):
            raise ScalelabError(
                f"params.teachers: {len(self.args.teachers)} named, {len(refs)} resolved"
            )
        ours = self.data.tokenizer.backend_tokenizer.to_str()
        self.teachers = []
        for ref in refs:
            teacher = build_causal_lm(ref, self.data.vocab_size, self.ctx.task.seq_len)
            size = teacher.get_output_embeddings().weight.shape[0]
            tok = load_tokenizer_for(ref)
            if size != self.data.vocab_size or tok.backend_tokenizer.to_str() != ours:
                raise ScalelabError(
                    f"params.teachers: teacher {ref.name} has a {size}-token vocabulary "
                    f"({type(tok).__name__}), the student {self.data.vocab_size} tokens with "
                    f"another definition; {MISMATCH_HINT}"
                )
            self.teachers.append(
                self._outputs(ref, teacher.to(device).eval().requires_grad_(False))
            )
        self.weights = self.args.teacher_weights
        self.terms: dict[str, list[float]] = {"ce": [], "kd": []}  # per step, for metrics
        return plan

    def _outputs(self, ref, module):
        """The teacher behind its output cache (`teacher_outputs.py`), or live."""
        from scalelab.engine.precision import autocast_for
        from scalelab.methods.teacher_outputs import TeacherOutputs
        from scalelab.models.backends.fingerprint import folder_fingerprint
        from scalelab.models.registry import model_path
        from scalelab.paths import cache_dir

        p = self.args
        root = cache_dir("teacher_outputs") if p.cache_teacher_outputs else None
        fingerprint = folder_fingerprint(model_path(ref)[0]) if root else ""
        return TeacherOutputs(module, fingerprint, p.temperature, p.top_k, root,
                              autocast_for(p.dtype, self.device), p.dtype)  # fmt: skip

    def loss_step(self, model, batch):
        from scalelab.engine.precision import autocast_for
        from scalelab.methods.losses import kd_loss

        p = self.args
        x, y = (t.to(self.device) for t in batch)
        with autocast_for(p.dtype, self.device)():
            logits = model(input_ids=x, use_cache=False).logits
        taught = [teacher(x) for teacher in self.teachers]
        loss, logs = kd_loss(logits, taught, y, p.alpha, p.temperature, self.weights, p.combine)
        for k in self.terms:
            self.terms[k].append(logs[k])
        return loss, {"tokens": x.numel()}

    def finish(self, model, state):
        """`pretrain`'s metrics plus the KD terms and the teacher-output cache counts."""
        result = super().finish(model, state)
        result.metrics.update(_term_metrics(self.terms, state, self.args.grad_accum_steps))
        # train_loss means next-token CE for every method (pretrain's declaration); the
        # objective here mixes in the KD term, which train_kd reports on its own.
        result.metrics["train_loss"] = result.metrics["train_ce"]
        result.metrics["teacher_batches_computed"] = sum(t.computed for t in self.teachers)
        result.metrics["teacher_batches_cached"] = sum(t.loaded for t in self.teachers)
        return result


class ClassifierDistillRecipe(FinetuneRecipe):
    """`full` fine-tuning with teachers: each fine-tuned teacher scores every training
    example once (its own tokenizer, the task's max_length), and the loss mixes the labels'
    CE with the KD term on those logits (Hinton et al. 2015; `losses.kd_loss`)."""

    def setup(self, device):
        import torch

        from scalelab.data.classification import encode
        from scalelab.eval.classification import predict

        plan = super().setup(device)
        names = self.data.label_names
        refs = self.ctx.inputs.get("teachers", ())
        self.teacher_logits = []
        for ref in refs:
            teacher, tok, labels = _load_teacher_classifier(ref)
            if list(labels) != list(names):
                raise ScalelabError(
                    f"params.teachers: teacher {ref.name} predicts {labels}, the student "
                    f"{names}: logit distillation needs the same labels in the same order"
                )
            seqs = encode(tok, self.data.train, self.ctx.task.max_length)
            teacher = teacher.to(device).eval()
            logits = predict(teacher, seqs, tok.pad_token_id, self.args.eval_batch_size,
                             self.amp, device)  # fmt: skip
            self.teacher_logits.append(torch.from_numpy(logits).to(device))
            del teacher
        self.terms: dict[str, list[float]] = {"ce": [], "kd": []}
        return plan

    def loss_step(self, model, batch):
        import torch

        from scalelab.methods.losses import kd_loss

        p = self.args
        logits, y, idx = self.logits_and_labels(model, batch)
        at = torch.from_numpy(idx).to(self.device)
        taught = [t[at] for t in self.teacher_logits]
        loss, logs = kd_loss(logits, taught, y, p.alpha, p.temperature, p.teacher_weights,
                             p.combine)  # fmt: skip
        for k in self.terms:
            self.terms[k].append(logs[k])
        return loss, {"examples": len(batch)}

    def finish(self, model, state):
        result = super().finish(model, state)
        result.metrics.update(_term_metrics(self.terms, state, self.args.grad_accum_steps))
        return result


def _load_teacher_classifier(ref):
    """(model, tokenizer, label names) of a fine-tuned classifier run's `model/` folder."""
    import json
    from pathlib import Path

    from scalelab.methods.finetune import load_finetuned

    folder = Path(ref.path)
    info = json.loads((folder / "scalelab.json").read_text())
    model, tok = load_finetuned(folder)
    return model, tok, info["label_names"]


def _check_classifier(task, params: DistillClassifierParams) -> None:
    _check_finetune(task, params)
    _check_weights(params)


def check_classifier_run(task, params, model, inputs: dict) -> None:
    """Spec time: every teacher is a fine-tuned classifier of the same dataset (so the same
    labels; checked again, in order, when the teachers load)."""
    for up in inputs.get("teachers", ()):
        if up.method not in ("full", "lora", "distill") or up.task.kind != "classification":
            raise ScalelabError(
                f"params.teachers: run {up.run_id[:8]} ({up.model.name}, {up.method} on "
                f"{up.task.kind}) is not a fine-tuned classifier: a classifier learns from "
                "classifier runs (full, lora or distill) of its own labels"
            )
        if up.task.dataset != task.dataset:
            raise ScalelabError(
                f"params.teachers: teacher {up.model.name} (run {up.run_id[:8]}) was tuned on "
                f"{up.task.dataset!r}, the student on {task.dataset!r}: the labels must match"
            )


KD_TERMS = (
    mx.MetricDef("train_ce", None, ".4f",
                 "train CE on the labels (next token or class), last 10% of steps", "info"),
    mx.MetricDef("train_kd", None, ".4f", "train T^2 KL to the teachers, last 10% of steps",
                 "info"),
)  # fmt: skip

DISTILL_CLASSIFIER = MethodDef(
    name="distill",
    params=DistillClassifierParams,
    entry="scalelab.methods.distill:ClassifierDistillRecipe",
    task_kinds=("classification",),
    check=_check_classifier,
    check_run=check_classifier_run,
    metrics=(*CLASSIFICATION_METRICS, *KD_TERMS),  # what a classifier run reports, in order
)

register_method(
    MethodDef(
        name="distill",
        params=DistillParams,
        entry="scalelab.methods.distill:DistillRecipe",
        task_kinds=("lm", "classification"),
        description="KD from earlier stages' runs: a language model on a token budget, or "
        "a classifier fine-tuned on its labels and the teachers' soft labels",
        check=_check,
        check_run=check_run,
        variants={"classification": DISTILL_CLASSIFIER},
        products=("model", "revisions"),
        metrics=(
            *PRETRAIN_METRICS,
            *(m for m in CLASSIFICATION_METRICS if m not in PRETRAIN_METRICS),
            *KD_TERMS,
            mx.MetricDef(
                "teacher_batches_computed",
                None,
                ",d",
                "teacher forward passes (batches x teachers)",
                "info",
            ),
            mx.MetricDef(
                "teacher_batches_cached", None, ",d", "teacher outputs read from the cache", "info"
            ),
        ),
    )
)
