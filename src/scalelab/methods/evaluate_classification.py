"""evaluate on classification tasks: zero-shot and in-context accuracy, no training.

`methods: evaluate` on a `classification` task scores a model on the validation and test
splits by its labels' names (verbalisers, `data/zero_shot.py`) and reports the metric names
fine-tuning reports (`test_accuracy`, `test_macro_f1`, `val_accuracy`, ...), so `compare`,
`smallest` and the report put zero-shot beside fine-tuned accuracy.

* A decoder (a causal LM: a ladder run's model, smollm2-135m, a local folder, an
  OpenAI-compatible endpoint with logprobs) scores each label's verbaliser as a
  continuation of the prompt (the example after `shots` in-context examples from the
  training split), all of an example's labels sharing its context (`eval/
  multiple_choice.py`, lm-evaluation-harness's multiple-choice scoring). The prediction
  is the label of the highest summed log-likelihood, or per character / byte with `norm`
  (lm-eval's acc_norm); `probs` are the softmax of those scores over the labels (for
  single-token verbalisers and norm none: the model's next-token distribution
  renormalised over the labels) and `*_loss` their cross-entropy. Texts are cut to the
  task's `max_length` tokens of the model's tokenizer (local models), as fine-tuning cuts
  them. Product `scores.parquet`: per example and label the log-likelihood and tokens.
* An encoder (minilm-l6, mpnet-base, a local sentence-embedding folder) embeds each text
  and each verbaliser with its own pooling, unit length (`models/embedding.py`), and
  predicts the label whose verbaliser is most cosine-similar (Yin et al. 2019's
  label-name entailment baseline in its embedding form; Reimers and Gurevych 2019).
  `probs` are softmax(20 x cosine), 20 the scale of sentence-transformers' in-batch
  ranking loss; no loss is reported (a cosine has no likelihood). Shots are refused: an
  encoder has no prompt to put them in.

Products, both: `predictions.npz` (test probabilities and truth, as fine-tuning writes it)
and `eval.json` (per split the classification report; the verbalisers, the positions of
the shots in the training split, and the first test prompt). Decoder scores are saved
chunk by chunk (`scores.<split>.partial.jsonl`), so a killed run resumes.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from scalelab import metrics as mx
from scalelab.errors import ScalelabError, shown
from scalelab.methods.base import MethodDef, RunContext, RunResult, register_variant
from scalelab.methods.evaluate import _DESCRIPTION, EvaluateParams

SCORES = "scores.parquet"
EVAL = "eval.json"
PREDICTIONS = "predictions.npz"
COSINE_SCALE = 20.0
SPLITS = (("validation", "val"), ("test", "test"))


class EvaluateClassificationParams(EvaluateParams):
    """`evaluate`'s params for classification tasks. shots: in-context examples from the
    training split (decoders only); shot_seed: which ones (with the task's data_seed);
    limit: score only the first `limit` validation and test examples; verbalizers:
    {label name: word(s)} (default: the dataset's, `data/verbalizers.yaml`, else the label
    names); template: the prompt of one example, holding {text}; target_delimiter:
    between a prompt and its label; fewshot_delimiter: after each shot; description:
    before the shots ({labels}: the verbalisers joined by ", "); norm: a decoder's label
    score is its log-likelihood summed ("none"), or per character or UTF-8 byte of the
    verbaliser; dtype, batch_size: as for every evaluation. Encoders read only limit,
    verbalizers, dtype and batch_size."""

    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    shot_seed: int = Field(0, ge=0, le=2**32 - 1)
    verbalizers: dict[str, str] | None = None
    template: str = Field("Text: {text}\nLabel:", max_length=2000)
    target_delimiter: str = Field(" ", max_length=100)
    fewshot_delimiter: str = Field("\n\n", max_length=100)
    description: str = Field("", max_length=4000)
    norm: Literal["none", "chars", "bytes"] = "none"

    @field_validator("template")
    @classmethod
    def _has_text(cls, v: str) -> str:
        from scalelab.data.zero_shot import check_template

        return check_template(v)


def check(task, params: EvaluateClassificationParams) -> None:
    """Spec time: the verbalisers name the task's labels (when they are known now)."""
    from scalelab.data.classification import known_label_names
    from scalelab.data.zero_shot import resolve_verbalizers

    names = known_label_names(task)
    if names is not None:
        resolve_verbalizers(names, task.dataset, params.verbalizers)


def _refuse(family: str | None, model, shots: int) -> None:
    """One line for a model zero-shot scoring cannot use (see `check_run`)."""
    name = shown(model.name)
    if family == "ladder":
        raise ScalelabError(
            f"model {name} is an untrained ladder config: evaluate a trained one (`@stage` "
            "of a pretraining stage, or a run's model folder)"
        )
    if family == "classifier":
        raise ScalelabError(
            f"model {name} is a sequence classifier with a trained head (its own run reports "
            "its accuracy): zero-shot evaluate takes a language model (decoder) or a text "
            "encoder"
        )
    if family == "encoder" and shots:
        raise ScalelabError(
            f"params.shots: model {name} is an encoder, which scores by similarity to the "
            "label names and has no prompt for in-context examples: give it shots: 0 (in a "
            "stage of its own when decoders take shots)"
        )


def check_run(task, params, model, inputs) -> None:
    """Spec time: the model is a decoder or an encoder (an untrained ladder config and a
    fine-tuned classifier are neither); an encoder takes no shots."""
    from scalelab.models.registry import model_family

    producer = (inputs.get("model") or (None,))[0]
    kind = producer.task.kind if producer is not None else None
    _refuse(model_family(model, kind), model, params.shots)


def _family(ref) -> str:
    """The run's model family, reading a Hub model's config when the spec could not."""
    from scalelab.models.registry import config_family, model_family, model_path

    family = model_family(ref)
    if family is None:
        from transformers import AutoConfig

        path, kwargs = model_path(ref)
        try:
            config = AutoConfig.from_pretrained(path, **kwargs).to_dict()
        except (OSError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ScalelabError(
                f"model {shown(ref.name)}: cannot read its config: {first}"
            ) from None
        family = config_family(config)
    return family


def run_classification(ctx: RunContext) -> RunResult:
    """Score the validation and test examples; write the products; the metrics. Raises
    ScalelabError for a model that is neither decoder nor encoder, or a non-finite score."""
    import numpy as np

    from scalelab.data.classification import load_task_data
    from scalelab.data.zero_shot import resolve_verbalizers
    from scalelab.eval.classification import classification_report, score
    from scalelab.io import atomic_write_json
    from scalelab.methods.label_files import softmax, write_predictions

    t0 = time.perf_counter()
    p = ctx.params
    family = _family(ctx.model)
    _refuse(family, ctx.model, p.shots)
    data = load_task_data(ctx.task)
    verbal = resolve_verbalizers(data.label_names, ctx.task.dataset, p.verbalizers)
    splits = {s: getattr(data, s)[: p.limit] for s, _ in SPLITS}
    run = _encoder_logits if family == "encoder" else _decoder_logits
    logits, info, metrics = run(ctx, data, splits, verbal)
    reports = {}
    for split, prefix in SPLITS:
        y = np.array([e["label"] for e in splits[split]], dtype=np.int64)
        if not len(y) or not np.isfinite(logits[split]).all():
            raise ScalelabError(f"{split}: no examples, or non-finite label scores: not stored")
        got = score(logits[split], y, data.num_labels)
        metrics[f"{prefix}_accuracy"], metrics[f"{prefix}_macro_f1"] = (
            got["accuracy"], got["macro_f1"])  # fmt: skip
        if family == "decoder":
            metrics[f"{prefix}_loss"] = got["loss"]
        reports[split] = classification_report(y, logits[split].argmax(-1), data.label_names)
    truth = np.array([e["label"] for e in splits["test"]], dtype=np.int64)
    write_predictions(ctx.run_dir, softmax(logits["test"]), truth)
    atomic_write_json(ctx.run_dir / EVAL, {
        "family": family, "verbalizers": dict(zip(data.label_names, verbal, strict=True)),
        **info, **reports})  # fmt: skip
    metrics.update(shots=p.shots, test_n=len(splits["test"]), val_n=len(splits["validation"]),
                   wall_s=time.perf_counter() - t0)  # fmt: skip
    return RunResult(metrics)


def _encoder_logits(ctx: RunContext, data, splits, verbal):
    """{split: COSINE_SCALE x cosine [n, K]}, info, size metrics."""
    from scalelab.engine.devices import prepare_device
    from scalelab.models.build import count_params
    from scalelab.models.embedding import embed, load_encoder

    p, n = ctx.params, sum(len(v) for v in splits.values())
    device = prepare_device(ctx.runtime)
    encoder = load_encoder(ctx.model, device=str(device), dtype=p.dtype)
    labels = embed(encoder, verbal, ctx.task.max_length, p.batch_size)
    out, done = {}, 0
    for split, examples in splits.items():
        vecs = embed(encoder, [e["text"] for e in examples], ctx.task.max_length, p.batch_size)
        out[split] = COSINE_SCALE * (vecs @ labels.T)
        done += len(examples)
        ctx.report({"step": done, "total": n, "info": "examples embedded"})
    non_embedding, total = count_params(encoder.module)
    info = {"pooling": list(encoder.pooling), "shots": []}
    return out, info, {"non_embedding_params": non_embedding, "total_params": total}


def _clipper(backend, max_length: int):
    """text -> its first `max_length` tokens of a local model's (fast) tokenizer, cut by
    character offsets so the text itself is kept; other models' texts stay whole."""
    tok = getattr(backend, "tokenizer", None) if backend.kind == "local" else None
    if tok is None or not getattr(tok, "is_fast", False):
        return lambda text: text

    def clip(text: str) -> str:
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text if len(offsets) <= max_length else text[: offsets[max_length - 1][1]]

    return clip


def _decoder_logits(ctx: RunContext, data, splits, verbal):
    """{split: label scores [n, K]} (log-likelihoods, per char/byte with norm), info, sizes."""
    import numpy as np

    from scalelab.data.multiple_choice import McQuestion
    from scalelab.data.zero_shot import build_prefix, draw_shots, render
    from scalelab.methods.evaluate import _open
    from scalelab.methods.evaluate_math import _sizes

    p = ctx.params
    positions = draw_shots([e["label"] for e in data.train], p.shots, ctx.task.data_seed,
                           p.shot_seed)  # fmt: skip
    out, rows = {}, []
    with _open(ctx) as backend:
        clip = _clipper(backend, ctx.task.max_length)
        shots = [{"text": clip(data.train[i]["text"]), "label": data.train[i]["label"]}
                 for i in positions]  # fmt: skip
        prefix = build_prefix(shots, verbal, p.template, p.target_delimiter,
                              p.fewshot_delimiter, p.description)  # fmt: skip
        questions = {
            split: [McQuestion(i, prefix + render(p.template, clip(e["text"])), tuple(verbal),
                               e["label"], p.target_delimiter) for i, e in enumerate(examples)]
            for split, examples in splits.items()
        }  # fmt: skip
        for split, qs in questions.items():
            scores = _score_split(ctx, backend, split, qs)
            out[split] = np.array([label_scores(s, p.norm) for s in scores], dtype=np.float64)
            rows += [{"split": split, **s.as_row()} for s in scores]
        sizes = _sizes(backend)
    _write_scores(ctx, rows)
    first = questions["test"][0].context if questions["test"] else ""
    return out, {"shots": positions, "prompt": first}, sizes


def _score_split(ctx: RunContext, backend, split: str, questions: list):
    """The QuestionScores of one split's questions, resuming from its saved chunks."""
    from scalelab.eval.multiple_choice import QuestionScore, score_questions
    from scalelab.io import PartialRows
    from scalelab.methods.evaluate import _warn_window, window_fit

    kept, n_cut, skipped = window_fit(backend, questions)
    _warn_window(ctx, backend, len(questions), n_cut, skipped)
    if skipped:
        raise ScalelabError(
            f"{split}: {len(skipped)} examples do not fit the model's window of "
            f"{backend.max_length} tokens even cut: use a model with a longer context"
        )
    saved = PartialRows(ctx.run_dir / f"scores.{split}.partial.jsonl", "doc_id",
                        [q.doc_id for q in questions])  # fmt: skip
    total = len(questions)

    def keep(chunk):
        saved.add([s.as_row() for s in chunk])
        ctx.report({"step": len(saved), "total": total, "info": f"{split} examples scored"})

    score_questions(backend, [q for q in questions if q.doc_id not in saved], done=keep)
    return [QuestionScore.from_row(saved.rows[q.doc_id]) for q in questions]


def label_scores(s, norm: str = "none") -> list[float]:
    """A scored example's label scores: summed log-likelihoods (nats), or divided by the
    verbaliser's characters ("chars", lm-eval's acc_norm) or UTF-8 bytes ("bytes")."""
    if norm == "none":
        return list(s.ll)
    size = (len(c) if norm == "chars" else len(c.encode("utf-8")) for c in s.choices)
    return [ll / d if d else -math.inf for ll, d in zip(s.ll, size, strict=True)]


def _write_scores(ctx: RunContext, rows: list[dict]) -> None:
    import pandas as pd

    from scalelab.io import atomic_write

    frame = pd.DataFrame(rows)
    atomic_write(ctx.run_dir / SCORES, lambda tmp: frame.to_parquet(tmp, index=False))
    for split, _ in SPLITS:
        (ctx.run_dir / f"scores.{split}.partial.jsonl").unlink(missing_ok=True)


UNIT = (0.0, 1.0)
# The names, directions, formats and bounds of fine-tuning's (methods/finetune.py), so a
# table of both methods has one column per metric; a test checks that they stay equal.
METRICS = (
    mx.MetricDef("test_accuracy", True, ".4f", "test accuracy", bounds=UNIT),
    mx.MetricDef("test_macro_f1", True, ".4f", "test macro-averaged F1 over the labels",
                 bounds=UNIT),
    mx.MetricDef("test_loss", False, ".4f", "test cross-entropy (nats) of the label "
                 "distribution, softmax of a decoder's label scores"),
    mx.MetricDef("val_accuracy", True, ".4f", "validation accuracy", bounds=UNIT),
    mx.MetricDef("val_macro_f1", True, ".4f", "validation macro-averaged F1", bounds=UNIT),
    mx.MetricDef("val_loss", False, ".4f", "validation cross-entropy (nats) of the label "
                 "distribution (decoders)"),
    mx.MetricDef("shots", None, ",d", "in-context examples before each example", "info"),
    mx.MetricDef("test_n", None, ",d", "test examples scored", "info"),
    mx.MetricDef("val_n", None, ",d", "validation examples scored", "info"),
    mx.NON_EMBEDDING_PARAMS,
    mx.TOTAL_PARAMS,
    mx.WALL_S,
)  # fmt: skip

register_variant(
    "evaluate",
    "classification",
    MethodDef("evaluate", EvaluateClassificationParams,
              "scalelab.methods.evaluate_classification:run_classification",
              ("classification",), _DESCRIPTION, check=check, check_run=check_run,
              metrics=METRICS, products=(PREDICTIONS, EVAL, SCORES)),
)  # fmt: skip
