"""The fine-tuning loop behind `full` and `lora` (params in finetune.py).

Determinism: the head (and LoRA) initialisation comes from `torch.manual_seed(seed)`; the
example order of epoch e from a generator seeded by (seed, e); dropout is reseeded from
(seed, step) before every step. So a run resumed from an end-of-epoch checkpoint replays
exactly what an uninterrupted run does. Checkpoints are taken at epoch ends only: a run
killed mid-epoch restarts that epoch.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scalelab.data.classification import load_task_data
from scalelab.engine.devices import prepare_device
from scalelab.engine.optim import decay_groups
from scalelab.errors import ScalelabError
from scalelab.eval.classification import classification_report, score
from scalelab.io import atomic_write_json
from scalelab.methods.base import RunContext, RunResult
from scalelab.methods.finetune import LoraParams
from scalelab.models.build import count_params
from scalelab.models.pretrained import apply_lora, layer_multipliers, load_classifier

from .checkpoint_v0 import save_pretrained_atomic

# --- optimisation --------------------------------------------------------------------------


def make_optimizer(model, p, mults: dict[str, float] | None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; `mults` are layer-wise lr multipliers by name."""
    return torch.optim.AdamW(decay_groups(model, p.weight_decay, mults), lr=p.lr, foreach=True)


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """Linear warmup over warmup_frac of `total` steps, then linear decay to 0 at `total`."""
    warmup = int(warmup_frac * total)
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# --- data ----------------------------------------------------------------------------------


def encode(tok, examples: list[dict], max_length: int) -> list[list[int]]:
    """Token ids per example, truncated to max_length (no padding here)."""
    texts = [e["text"] for e in examples]
    return tok(texts, truncation=True, max_length=max_length)["input_ids"]


def collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) int64 [batch, longest]: right-padded to the longest."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def autocast_for(dtype: str, device: torch.device):
    """A context-manager factory for the forward pass in `dtype` (fp32: no autocast)."""
    if dtype == "fp32":
        return nullcontext
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    try:
        with torch.autocast(device.type, dtype=want):
            torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ScalelabError(
            f"params.dtype {dtype} is not supported on {device.type}: {err}"
        ) from None
    return lambda: torch.autocast(device.type, dtype=want)


@torch.no_grad()
def predict(model, seqs: list[list[int]], pad_id: int, batch_size: int, amp, device) -> np.ndarray:
    """Logits float32 [n, num_labels] in input order. Batches are sorted by length (pure
    speed: less padding); results go back to the original order."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = collate([seqs[i] for i in idx], pad_id)
        with amp():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for i, row in zip(idx, logits.float().cpu(), strict=True):
            out[i] = row
    model.train(was_training)
    return torch.stack(out).numpy()


# --- the run -------------------------------------------------------------------------------


def _check_length(config, max_length: int, name: str) -> None:
    """A clear error when task.max_length exceeds the model's position table."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and max_length > limit:
        raise ScalelabError(
            f"task.max_length ({max_length}) exceeds the {limit} positions of model {name!r}"
        )


class _Trainer:
    """One run's mutable training state (model, data, best weights, curve)."""

    def __init__(self, ctx: RunContext) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the load report lists the new head: expected
        self.ctx, self.p, task = ctx, ctx.params, ctx.task
        self.device = prepare_device(ctx.runtime)
        self.amp = autocast_for(self.p.dtype, self.device)
        self.data = load_task_data(task)
        torch.manual_seed(ctx.seed)  # the new head's (and LoRA's) initialisation
        model, self.tok, self.new_modules = load_classifier(ctx.model, self.data.label_names)
        self.lora = isinstance(ctx.params, LoraParams)
        if self.lora:
            model = apply_lora(model, self.p, self.new_modules)
        self.model = model.to(self.device)
        _check_length(model.config, task.max_length, ctx.model.name)
        self.main_names = [n for n, q in model.named_parameters() if q.requires_grad]
        self.head_names = [n for n in self.main_names if self._is_head(n)]
        self.mults = layer_multipliers(model) if self.p.layerwise_lr else None
        self.pad = self.tok.pad_token_id
        self.seqs = {
            s: encode(self.tok, getattr(self.data, s), task.max_length)
            for s in ("train", "validation", "test")
        }
        self.labels = {
            s: np.array([e["label"] for e in getattr(self.data, s)], dtype=np.int64)
            for s in self.seqs
        }
        self.steps_per_epoch = -(-len(self.seqs["train"]) // self.p.batch_size)
        self.best: dict[str, torch.Tensor] = {}
        self.state = {
            "epoch": 0,
            "step": 0,
            "curve": [],
            "best_acc": -1.0,
            "best_step": 0,
            "bad_evals": 0,
            "stopped": False,
            "train_s": 0.0,
            "examples": 0,
            "wall_s": 0.0,
            "losses": [],
        }

    def _is_head(self, name: str) -> bool:
        if self.lora:
            return ".modules_to_save." in name
        return any(name == m or name.startswith(m + ".") for m in self.new_modules)

    def phase_of(self, epoch: int) -> tuple[str, int, int]:
        """(phase, first step of the phase, steps in the phase) for an epoch."""
        spe, h = self.steps_per_epoch, self.p.head_only_epochs
        if epoch < h:
            return "head", 0, h * spe
        return "main", h * spe, (self.p.epochs - h) * spe

    def set_phase(self, phase: str) -> torch.optim.Optimizer:
        names = set(self.head_names if phase == "head" else self.main_names)
        for n, q in self.model.named_parameters():
            q.requires_grad_(n in names)
        return make_optimizer(self.model, self.p, self.mults)

    def evaluate(self) -> dict[str, float]:
        logits = predict(
            self.model,
            self.seqs["validation"],
            self.pad,
            self.p.eval_batch_size,
            self.amp,
            self.device,
        )
        return score(logits, self.labels["validation"], self.data.num_labels)

    def on_eval(self, phase: str) -> None:
        """Validate, log a curve point, keep the best weights, update early stopping."""
        st = self.state
        val = self.evaluate()
        recent = st["losses"] or [float("nan")]
        st["curve"].append(
            {
                "step": st["step"],
                "tokens": st["examples"],
                "train_loss": float(np.mean(recent)),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
            }
        )
        st["losses"] = []
        if val["accuracy"] > st["best_acc"]:  # ties keep the earlier (cheaper) weights
            st.update(best_acc=val["accuracy"], best_step=st["step"], bad_evals=0)
            params = dict(self.model.named_parameters())
            self.best = {n: params[n].detach().clone() for n in self.main_names}
        elif phase == "main":
            st["bad_evals"] += 1
            patience = self.p.early_stopping_patience
            st["stopped"] = bool(patience and st["bad_evals"] >= patience)

    def train_step(self, opt, scaler, batch: list[int], phase_step: int, phase_total: int) -> float:
        p, st = self.p, self.state
        torch.manual_seed(self.ctx.seed * 7919 + st["step"])  # dropout, replayable on resume
        factor = lr_factor(phase_step, phase_total, p.warmup_frac)
        for group in opt.param_groups:
            group["lr"] = p.lr * group["lr_mult"] * factor
        ids, mask = collate([self.seqs["train"][i] for i in batch], self.pad)
        y = torch.from_numpy(self.labels["train"][batch]).to(self.device)
        with self.amp():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits
        loss = F.cross_entropy(logits.float(), y, label_smoothing=p.label_smoothing)
        scaler.scale(loss).backward()
        if p.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(
                [q for q in self.model.parameters() if q.requires_grad], p.grad_clip
            )
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    # --- checkpoints (end of epoch) ---

    def save_checkpoint(self, opt, phase: str) -> None:
        from safetensors.torch import save_file

        path = self.ctx.run_dir / "checkpoint"
        tmp, old = path.with_name("checkpoint.tmp"), path.with_name("checkpoint.old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        params = dict(self.model.named_parameters())
        save_file(
            {n: params[n].detach().contiguous() for n in self.main_names},
            str(tmp / "trainable.safetensors"),
        )
        save_file({n: t.contiguous() for n, t in self.best.items()}, str(tmp / "best.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**self.state, "phase": phase}))
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)  # a kill at any point leaves the old or the new checkpoint whole
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> tuple[dict | None, str | None]:
        """Restore weights, best weights and state; returns (optimizer state, its phase)."""
        from safetensors.torch import load_file

        path = self.ctx.run_dir / "checkpoint"
        if not path.exists() and path.with_name("checkpoint.old").exists():
            path = path.with_name("checkpoint.old")
        if not (path / "state.json").exists():
            return None, None
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, t in load_file(str(path / "trainable.safetensors")).items():
                params[n].copy_(t)
        self.best = load_file(str(path / "best.safetensors"))
        state = json.loads((path / "state.json").read_text())
        phase = state.pop("phase")
        self.state.update(state)
        return torch.load(path / "optimizer.pt", weights_only=True), phase

    # --- the loop ---

    def fit(self) -> None:
        p, st, rt = self.p, self.state, self.ctx.runtime
        opt_state, ckpt_phase = self.load_checkpoint()
        t_seg, last_ckpt = time.perf_counter(), time.perf_counter()
        scaler = torch.amp.GradScaler(self.device.type, enabled=p.dtype == "fp16")
        total, opt, cur = p.epochs * self.steps_per_epoch, None, None
        n = len(self.seqs["train"])
        self.model.train()
        for epoch in range(st["epoch"], p.epochs):
            phase, first, phase_total = self.phase_of(epoch)
            if phase != cur:
                opt, cur = self.set_phase(phase), phase
                if opt_state is not None and ckpt_phase == phase:
                    opt.load_state_dict(opt_state)
            g = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=g).numpy()
            for b in range(self.steps_per_epoch):
                t0 = time.perf_counter()
                batch = order[b * p.batch_size : (b + 1) * p.batch_size]
                loss = self.train_step(opt, scaler, batch, st["step"] - first, phase_total)
                st["train_s"] += time.perf_counter() - t0
                st["step"] += 1
                st["examples"] += len(batch)
                st["losses"].append(loss)
                self.ctx.report({"step": st["step"], "total": total, "loss": loss})
                if p.eval_every and st["step"] % p.eval_every == 0:
                    self.on_eval(phase)
                    if st["stopped"]:
                        break
            if not st["stopped"] and (not p.eval_every or st["step"] % p.eval_every):
                self.on_eval(phase)  # every epoch ends with a validation pass
            st["epoch"] = epoch + 1
            if st["stopped"]:
                break
            due = (
                time.perf_counter() - last_ckpt > rt.checkpoint_every_s or rt.checkpoint_every_steps
            )
            if due and epoch + 1 < p.epochs:
                st["wall_s"] += time.perf_counter() - t_seg
                t_seg = last_ckpt = time.perf_counter()
                self.save_checkpoint(opt, phase)
        st["wall_s"] += time.perf_counter() - t_seg

    def finish(self) -> RunResult:
        """Restore the best weights, test, save model and eval.json; metrics and curve."""
        t0, st = time.perf_counter(), self.state
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, t in self.best.items():
                params[n].copy_(t)
        for q in self.model.parameters():  # trainable count of the main phase
            q.requires_grad_(False)
        for n in self.main_names:
            params[n].requires_grad_(True)
        k, names = self.data.num_labels, self.data.label_names
        logits = {
            s: predict(
                self.model, self.seqs[s], self.pad, self.p.eval_batch_size, self.amp, self.device
            )
            for s in ("validation", "test")
        }
        scores = {s: score(logits[s], self.labels[s], k) for s in logits}
        report = {
            s: classification_report(self.labels[s], logits[s].argmax(-1), names) for s in logits
        }
        atomic_write_json(self.ctx.run_dir / "eval.json", report)
        self.save_model()
        _, total = count_params(self.model)
        trainable = sum(params[n].numel() for n in self.main_names)
        metrics = {
            "test_accuracy": scores["test"]["accuracy"], "test_macro_f1": scores["test"]["macro_f1"],
            "test_loss": scores["test"]["loss"], "val_accuracy": scores["validation"]["accuracy"],
            "val_macro_f1": scores["validation"]["macro_f1"], "val_loss": scores["validation"]["loss"],
            "trainable_params": trainable, "total_params": total,
            "trainable_frac": trainable / total, "best_step": st["best_step"],
            "epochs_run": st["epoch"], "steps": st["step"], "train_examples": len(self.seqs["train"]),
            "examples_per_s": st["examples"] / max(st["train_s"], 1e-9),
            "wall_s": st["wall_s"] + time.perf_counter() - t0,
        }  # fmt: skip
        curve = [dict(r) for r in st["curve"]]  # every key (val_accuracy too) reaches the store
        shutil.rmtree(self.ctx.run_dir / "checkpoint", ignore_errors=True)
        return RunResult(metrics=metrics, curve=curve)

    def save_model(self) -> None:
        """run_dir/model: the full model (or the LoRA adapter + head) and the tokenizer,
        plus scalelab.json naming the base model, so `load_finetuned` can rebuild it."""
        info = {
            "base_model": self.ctx.model.path or self.ctx.model.name,
            "method": "lora" if self.lora else "full",
            "label_names": self.data.label_names,
            "lora": self.lora,
        }
        save_pretrained_atomic(
            self.ctx.run_dir / "model", self.model, self.tok, json_files={"scalelab.json": info}
        )


def run(ctx: RunContext) -> RunResult:
    """Fine-tune ctx.model on the classification task; returns metrics and the curve."""
    t0 = time.perf_counter()
    trainer = _Trainer(ctx)
    trainer.state["wall_s"] = time.perf_counter() - t0  # loading and tokenising count too
    trainer.fit()
    return trainer.finish()


def load_finetuned(folder: str | Path):
    """(model in eval mode, tokenizer) from a run's `model/` folder (full or LoRA)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

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
