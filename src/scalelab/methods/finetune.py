"""Fine-tuning pretrained models for classification: `full` and `lora` (one recipe).

Both train `AutoModelForSequenceClassification` (an encoder's classifier head, or a
decoder's `score` head on the last non-pad token) with AdamW, linear warmup then linear
decay, and keep the weights with the best validation accuracy for the test evaluation.
Determinism: the head (and LoRA) initialisation comes from `torch.manual_seed(seed)`; the
example order of epoch e from a generator seeded by (seed, e); dropout from (seed, step).
Products: `model/` (the full model, or the LoRA adapter plus head, with the tokenizer and
`scalelab.json` naming the base), `eval.json` (per-class reports, confusion matrices),
`predictions.npz` (test probabilities, for analyses that resample test examples) and, for a
run on one half of the training split (task `half`), `labels.npz`: its soft labels on the
other half, with their accuracy as the metric `labels_accuracy` (`label_files.py`; the weak
labels of weak-to-strong experiments, `methods/w2s.py`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from scalelab import metrics as mx
from scalelab.engine.args import TrainArgs
from scalelab.engine.recipe import Phase, Plan, Recipe
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, RunResult, register_method


class FullParams(TrainArgs):
    """Full fine-tuning: every weight trains.

    lr: peak learning rate; weight_decay: AdamW decay on matrices only (biases, LayerNorm
    weights excluded); epochs: passes over the training set; warmup_frac: fraction of the
    steps of a phase spent warming up linearly, then linear decay to 0; grad_clip: max
    gradient L2 norm (0 = off); head_only_epochs: the first N of `epochs` train only the
    newly initialised head (a separate warmup/decay schedule), the rest train everything;
    layerwise_lr: blocks in the lower/middle/top third of the transformer at 0.1x/0.5x/1x lr
    (embeddings with the lower third, the head and final norms at 1x);
    early_stopping_patience: validation evaluations without improvement before stopping
    (0 = off); eval_every: steps between validation evaluations (0 = once per epoch);
    dtype: autocast dtype for forward passes (weights stay fp32); class_weights: "balanced"
    weighs each class's loss by n / (classes x its training examples), as scikit-learn's
    class_weight="balanced" (rare classes count more); "none" weighs every example alike;
    keep_layers: fine-tune the model cut to these transformer blocks, in order, embeddings
    kept (DistilBERT-style students, `models/surgery.py`): indices or "every_other";
    packing: lay each training batch's examples end to end in rows as wide as its longest,
    each attending only to itself (`models/packing.py`): the same per-example logits up to
    float rounding without the padding (MiniLM / TREC-6 on 2 CPU threads: 1.40x
    transformers.Trainer's examples/s, against 1.09x padded), but other rounding and dropout
    draws than padded batches, so off by default (stored runs keep their results); BERT,
    RoBERTa, XLM-RoBERTa, MPNet, GPT-2 and Llama classifiers.
    """

    # Added after results existed: left out of run ids at their defaults.
    ID_OMIT_DEFAULTS: ClassVar[frozenset[str]] = TrainArgs.ID_OMIT_DEFAULTS | {
        "beta1", "beta2", "min_lr_ratio", "class_weights", "keep_layers", "packing",
    }  # fmt: skip

    lr: PositiveFloat = 5e-5
    weight_decay: float = Field(0.01, ge=0)
    epochs: PositiveInt = Field(3, le=10_000)
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    head_only_epochs: int = Field(0, ge=0)
    layerwise_lr: bool = False
    early_stopping_patience: int = Field(0, ge=0)
    eval_every: int = Field(0, ge=0)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    class_weights: Literal["none", "balanced"] = "none"
    keep_layers: list[int] | Literal["every_other"] | None = None
    packing: bool = False

    @field_validator("keep_layers")
    @classmethod
    def _layer_list(cls, v):
        from scalelab.models.surgery import check_layer_list

        return check_layer_list(v)


class LoraParams(FullParams):
    """LoRA (peft): frozen base, rank-r adapters on `target_modules`, trained new head.

    target_modules: None = peft's default for the model type (attention query/value, e.g.
    `query`/`value` for BERT, `c_attn` for GPT-2), a list of module-name suffixes, or
    "all-linear". Every module missing from the pretrained checkpoint (the new head) is
    trained in full and saved with the adapter (`modules_to_save`).
    """

    lr: PositiveFloat = 1e-3
    r: PositiveInt = 8
    lora_alpha: PositiveFloat = 16
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] | None = None

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and (not v or not all(v)):
            raise ValueError("target_modules must name at least one module (or 'all-linear')")
        return v


def _check(task, params: FullParams) -> None:
    if params.head_only_epochs >= params.epochs:
        raise ScalelabError(
            f"params.head_only_epochs ({params.head_only_epochs}) must be smaller than "
            f"params.epochs ({params.epochs}): it counts the first epochs of the run"
        )


def _check_length(config, max_length: int, name: str) -> None:
    """A clear error when task.max_length exceeds the model's position table."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and max_length > limit:
        raise ScalelabError(
            f"task.max_length ({max_length}) exceeds the {limit} positions of model {name!r}"
        )


def _length_chunks(lengths: list[int], cost: float) -> list[int]:
    """Cut points [0, ..., n] that split ascending `lengths` into consecutive chunks, each
    padded to its own longest, minimising the padded tokens plus `cost` per chunk (dynamic
    programming over the ends of runs of equal length: cutting inside a run never helps)."""
    n = len(lengths)
    ends = [i for i in range(1, n + 1) if i == n or lengths[i - 1] != lengths[i]]
    best, cut = {0: 0.0}, {0: 0}
    for i in ends:
        top = lengths[i - 1]
        best[i], cut[i] = min((best[j] + (i - j) * top + cost, j) for j in best)
    out = [n]
    while out[-1]:
        out.append(cut[out[-1]])
    return out[::-1]


class FinetuneRecipe(Recipe):
    """`full` and `lora`: a sequence classifier, optionally a head-only phase first."""

    def setup(self, device) -> Plan:
        import numpy as np
        import torch
        from transformers.utils import logging as hf_logging

        from scalelab.data.classification import encode
        from scalelab.engine.precision import autocast_for
        from scalelab.models.pretrained import apply_lora, layer_multipliers, load_classifier

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the load report lists the new head: expected
        ctx, p, task = self.ctx, self.args, self.ctx.task
        self.device, self.amp = device, autocast_for(p.dtype, device)
        self.data = self.load_data(task)
        torch.manual_seed(ctx.seed)  # the new head's (and LoRA's) initialisation
        model, self.tok, self.new_modules = load_classifier(ctx.model, self.data.label_names)
        if p.keep_layers is not None:
            from scalelab.models.surgery import cut_blocks

            cut_blocks(model, p.keep_layers)
        self.lora = isinstance(p, LoraParams)
        if self.lora:
            model = apply_lora(model, p, self.new_modules)
        self.model = model = model.to(device)
        _check_length(model.config, task.max_length, ctx.model.name)
        self.main_names = [n for n, q in model.named_parameters() if q.requires_grad]
        self.head_names = [n for n in self.main_names if self._is_head(n)]
        self.pad = self.tok.pad_token_id
        splits = ("train", "validation", "test")
        self.seqs = {s: encode(self.tok, getattr(self.data, s), task.max_length) for s in splits}
        self.labels = {
            s: np.array([e["label"] for e in getattr(self.data, s)], dtype=np.int64) for s in splits
        }
        # The training set pre-collated once (ids right-padded to the longest example, and
        # lengths): loss_step slices its batches out instead of building tensors every step.
        train = self.seqs["train"]
        self.train_len = np.array([len(s) for s in train], dtype=np.int64)
        ids = np.full((len(train), max(1, int(self.train_len.max()))), self.pad, dtype=np.int64)
        for i, s in enumerate(train):
            ids[i, : len(s)] = s
        self.train_ids = torch.from_numpy(ids)
        self.train_y = torch.from_numpy(self.labels["train"])
        self.class_weight = None
        if p.class_weights == "balanced":
            counts = np.bincount(self.labels["train"], minlength=self.data.num_labels)
            w = len(self.labels["train"]) / (len(counts) * np.maximum(counts, 1))
            self.class_weight = torch.tensor(w, dtype=torch.float32, device=device)
        self.embed = model.get_input_embeddings()
        if p.packing:  # refuse a model whose packed logits are not its padded ones
            from scalelab.models.packing import check_packing

            few = torch.arange(min(8, len(train)))
            lens = self.train_len[few.numpy()].tolist()
            check_packing(model, self.train_ids[few, : max(lens)].to(device), lens)
        spe = self.steps_per_epoch = -(-len(self.seqs["train"]) // p.batch_size)
        h = p.head_only_epochs
        phases = [Phase("head", h * spe, tuple(self.head_names), early_stopping=False)] * bool(h)
        phases.append(Phase("main", (p.epochs - h) * spe, tuple(self.main_names)))
        self._order: tuple[int, np.ndarray] | None = None
        return Plan(model=model, phases=phases, eval_every=p.eval_every, epoch_steps=spe,
                    eval_at_start=True,
                    select=("val_accuracy", True), patience=p.early_stopping_patience,
                    lr_mults=layer_multipliers(model) if p.layerwise_lr else None)  # fmt: skip

    def load_data(self, task):
        """The run's examples (`data.classification.TaskData`); a subclass may narrow or
        relabel its training set. Also sets what `finish` labels: the held-out examples
        (`heldout`, `heldout_index`; the other half of a `half` task) and the run's place in
        a bootstrap chain (`label_step`, `label_steps`; 0 and 0 on ground truth)."""
        from scalelab.data.classification import load_task_data

        data = load_task_data(task)
        self.heldout, self.heldout_index = data.heldout, data.heldout_index
        self.label_step, self.label_steps = 0, 0
        return data

    def _is_head(self, name: str) -> bool:
        if self.lora:
            return ".modules_to_save." in name
        return any(name == m or name.startswith(m + ".") for m in self.new_modules)

    def batch(self, step: int):
        """Example indices of step `step`: epoch e's order is a permutation seeded by (seed, e)."""
        import torch

        epoch, b = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.seqs["train"]), generator=g).numpy())
        B = self.args.batch_size
        return self._order[1][b * B : (b + 1) * B]

    # Padding costs as much as real tokens. On the CPU a batch is cut, after sorting it by
    # length, into consecutive chunks each padded to its own longest example, wherever that
    # saves more padded tokens than CHUNK_COST per extra forward pass (its fixed overhead,
    # in token-equivalents). Same examples, same mean loss: the logits of each example are
    # the same up to float rounding (the padded positions are masked out either way).
    # Measured (MiniLM-L6, TREC-6 batches of 32, bf16, 2 threads, 2-core host with AMX):
    # seconds per 40 steps 8.55 never cutting, 10.1 at 64, 8.7 at 128, 7.95 at 256, 8.1 at
    # 512; on an idle 16-core Xeon 64 was the better value. It stays 64: the cuts change
    # bf16 rounding, so another value would change the results of stored run ids (LoRA
    # test accuracy of one seed moved by up to 2 points between 64 and 256). `packing: true`
    # removes the padding instead (models/packing.py) and replaces the cuts.
    CHUNK_COST = 64

    def loss_step(self, model, batch):
        import torch.nn.functional as F

        logits, y, _ = self.logits_and_labels(model, batch)
        loss = F.cross_entropy(logits.float(), y, weight=self.class_weight,
                               label_smoothing=self.args.label_smoothing)  # fmt: skip
        return loss, {"examples": len(batch)}

    def logits_and_labels(self, model, batch):
        """(logits [b, classes], labels [b], example indices [b] in the logits' order) of a
        batch of training-example indices (sorted by length when it is cut into chunks)."""
        import numpy as np
        import torch

        idx = np.asarray(batch)
        lens = self.train_len[idx]
        if self.args.packing:
            from scalelab.models.packing import packed_logits

            ids = self.train_ids[torch.from_numpy(idx), : max(1, int(lens.max()))]
            with self.amp():
                logits = packed_logits(model, ids.to(self.device), lens.tolist())
            return logits, self.train_y[torch.from_numpy(idx)].to(self.device), idx
        order = np.argsort(lens, kind="stable")
        cuts = [0, len(idx)]
        if self.device.type == "cpu":
            cuts = _length_chunks(lens[order].tolist(), self.CHUNK_COST)
        if len(cuts) > 2:
            idx, lens = idx[order], lens[order]
        width = max(1, int(lens.max()))
        ids = self.train_ids[torch.from_numpy(idx), :width].to(self.device)
        mask = (torch.arange(width) < torch.from_numpy(lens)[:, None]).long().to(self.device)
        with self.amp():
            if len(cuts) == 2:
                logits = model(input_ids=ids, attention_mask=mask).logits
            else:
                logits = self._chunked_logits(model, ids, mask, lens, cuts)
        y = self.train_y[torch.from_numpy(idx)].to(self.device)
        return logits, y, idx

    def _chunked_logits(self, model, ids, mask, lens, cuts):
        """Logits of a length-sorted batch, one forward per chunk `cuts[k]:cuts[k+1]`, each
        cut to its own longest example. The input embeddings are looked up once for the
        whole batch and a forward hook hands each chunk its slice, so the backward pass
        builds one dense embedding gradient rather than one per chunk. The hook only
        replaces a lookup of exactly that chunk's ids (same values either way)."""
        import torch

        table = self.embed(ids)
        parts = []
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            w = max(1, int(lens[hi - 1]))
            cid, sub = ids[lo:hi, :w].contiguous(), table[lo:hi, :w]

            def swap(module, args, out, cid=cid, sub=sub):
                x = args[0] if args else None
                same = isinstance(x, torch.Tensor) and x.shape == cid.shape
                return sub if same and x.data_ptr() == cid.data_ptr() else None

            handle = self.embed.register_forward_hook(swap)
            try:
                out = model(input_ids=cid, attention_mask=mask[lo:hi, :w].contiguous())
            finally:
                handle.remove()
            parts.append(out.logits)
        return torch.cat(parts)

    def _logits(self, model, split: str):
        from scalelab.eval.classification import predict

        return predict(model, self.seqs[split], self.pad, self.args.eval_batch_size, self.amp,
                       self.device)  # fmt: skip

    def evaluate(self, model) -> dict[str, float]:
        from scalelab.eval.classification import score

        val = score(self._logits(model, "validation"), self.labels["validation"],
                    self.data.num_labels)  # fmt: skip
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    def finish(self, model, state) -> RunResult:
        """Test the kept weights; save model and eval.json; metrics and curve."""
        from scalelab.eval.classification import classification_report, score
        from scalelab.io import atomic_write_json
        from scalelab.methods.label_files import softmax, write_predictions
        from scalelab.models.build import count_params

        k, names = self.data.num_labels, self.data.label_names
        logits = {s: self._logits(model, s) for s in ("validation", "test")}
        scores = {s: score(logits[s], self.labels[s], k) for s in logits}
        report = {
            s: classification_report(self.labels[s], logits[s].argmax(-1), names) for s in logits
        }
        atomic_write_json(self.ctx.run_dir / "eval.json", report)
        write_predictions(self.ctx.run_dir, softmax(logits["test"]), self.labels["test"])
        labels_accuracy = self.write_heldout_labels(model)
        self.save_model(model)
        non_embedding, total = count_params(model)
        params = dict(model.named_parameters())
        trainable = sum(params[n].numel() for n in self.main_names)
        metrics = {
            "test_accuracy": scores["test"]["accuracy"], "test_macro_f1": scores["test"]["macro_f1"],
            "test_loss": scores["test"]["loss"], "val_accuracy": scores["validation"]["accuracy"],
            "val_macro_f1": scores["validation"]["macro_f1"], "val_loss": scores["validation"]["loss"],
            "trainable_params": trainable, "total_params": total,
            "non_embedding_params": non_embedding,
            "trainable_frac": trainable / total, "best_step": state["best_step"],
            "epochs_run": -(-state["step"] // self.steps_per_epoch),
            **training_examples(len(self.seqs["train"]), self.data.train_index),
        }  # fmt: skip
        if labels_accuracy is not None:
            metrics["labels_accuracy"] = labels_accuracy
        return RunResult(metrics=metrics, curve=state["curve"])

    def write_heldout_labels(self, model) -> float | None:
        """Soft labels on the held-out training examples as `labels.npz` (a product);
        returns their accuracy against the ground truth, or None when nothing is held out."""
        import numpy as np

        from scalelab.data.classification import encode
        from scalelab.eval.classification import predict
        from scalelab.methods.label_files import SoftLabels, softmax, write_labels

        if not self.heldout:
            return None
        seqs = encode(self.tok, self.heldout, self.ctx.task.max_length)
        logits = predict(model, seqs, self.pad, self.args.eval_batch_size, self.amp, self.device)
        labels = SoftLabels(np.asarray(self.heldout_index), softmax(logits),
                            np.array([e["label"] for e in self.heldout]), self.data.label_names,
                            self.label_step, self.label_steps)  # fmt: skip
        write_labels(self.ctx.run_dir, labels)
        return labels.accuracy

    def save_model(self, model) -> None:
        """run_dir/model: the full model (or the LoRA adapter + head) and the tokenizer,
        plus scalelab.json naming the base model, so `load_finetuned` can rebuild it."""
        from scalelab.engine.checkpoint import save_pretrained_atomic
        from scalelab.models.registry import model_path

        ref = self.ctx.model
        info = {
            "base_model": model_path(ref)[0] if ref.kind in ("local", "run") else ref.name,
            "method": "lora" if self.lora else "full",
            "label_names": self.data.label_names,
            "lora": self.lora,
        }
        save_pretrained_atomic(self.ctx.run_dir / "model", model, self.tok,
                               json_files={"scalelab.json": info})  # fmt: skip


def load_finetuned(folder):
    """(model in eval mode, tokenizer) from a run's `model/` folder (full or LoRA)."""
    import json
    import warnings
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from scalelab.models.pretrained import load_classifier

    hf_logging.set_verbosity_error()  # the base's load report lists the head the adapter restores
    folder = Path(folder)
    info = json.loads((folder / "scalelab.json").read_text())
    tok = AutoTokenizer.from_pretrained(folder)
    if not info["lora"]:
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        return model.eval(), tok
    from peft import PeftModel

    base, _, _ = load_classifier(info["base_model"], info["label_names"])
    with warnings.catch_warnings():  # a transformers deprecation warning raised inside peft
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(base, folder)
    return model.eval(), tok


# Both methods report the same metrics; val_* use the best-validation weights kept for test.
UNIT = (0.0, 1.0)  # accuracies and F1 scores: intervals stay inside
CLASSIFICATION_METRICS = (
    mx.MetricDef(
        "test_accuracy", True, ".4f", "test accuracy, best-validation weights", bounds=UNIT
    ),
    mx.MetricDef(
        "test_macro_f1", True, ".4f", "test macro-averaged F1 over the labels", bounds=UNIT
    ),
    mx.TEST_LOSS,
    mx.MetricDef(
        "val_accuracy", True, ".4f", "validation accuracy of the kept weights", bounds=UNIT
    ),
    mx.MetricDef("val_macro_f1", True, ".4f", "validation macro-averaged F1", bounds=UNIT),
    mx.VAL_LOSS,
    mx.MetricDef(
        "labels_accuracy",
        True,
        ".4f",
        "accuracy of the soft labels written on the "
        "held-out training examples (the other half; labels.npz)",
        bounds=UNIT,
    ),
    mx.NON_EMBEDDING_PARAMS,
    mx.TRAINABLE_PARAMS,
    mx.TOTAL_PARAMS,
    mx.TRAINABLE_FRAC,
    mx.MetricDef("best_step", None, ",d", "step whose weights were kept", "info"),
    mx.MetricDef("epochs_run", None, ",d", "epochs run (fewer after early stopping)", "info"),
    mx.STEPS,
    *mx.EVENT_COUNTS,
    mx.TRAIN_EXAMPLES,
    mx.TRAIN_AUGMENTED,
    mx.EXAMPLES_PER_S,
    mx.WALL_S,
    mx.PEAK_MEM_MB,
)

PRODUCTS = ("model", "labels.npz", "predictions.npz")  # listed where a run wrote them


def training_examples(n_train: int, positions: list[int]) -> dict[str, int]:
    """{"train_examples": the labelled examples (distinct positions: an augmented copy
    carries its source's), "train_augmented": the copies beside them, where there are any}:
    a data-scaling curve counts labels, not EDA's copies of them."""
    labelled = len(set(positions)) if positions else n_train
    out = {"train_examples": labelled}
    if n_train > labelled:
        out["train_augmented"] = n_train - labelled
    return out


def _check_run(task, params, model, inputs) -> None:
    """Spec time: a cut names blocks the model has (when its depth is known)."""
    from scalelab.models.surgery import check_blocks_exist

    check_blocks_exist(params.keep_layers, model)


register_method(
    MethodDef(
        name="full",
        params=FullParams,
        entry="scalelab.methods.finetune:FinetuneRecipe",
        task_kinds=("classification",),
        description="full fine-tuning of a pretrained model for text classification",
        check=_check,
        check_run=_check_run,
        metrics=CLASSIFICATION_METRICS,
        products=PRODUCTS,
    )
)

register_method(
    MethodDef(
        name="lora",
        params=LoraParams,
        entry="scalelab.methods.finetune:FinetuneRecipe",
        task_kinds=("classification",),
        description="LoRA adapters (peft) plus a trained head, for text classification",
        check=_check,
        check_run=_check_run,
        metrics=CLASSIFICATION_METRICS,
        products=PRODUCTS,
    )
)
