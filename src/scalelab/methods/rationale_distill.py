"""rationale_distill: a decoder student learns to answer and to explain, from several teachers.

Distilling step by step (Hsieh et al. 2023) trains a small model on two tasks at once:
`predict: x -> answer` and `explain: x -> rationale` (the teacher's). TinyLLM (Tian et
al. 2024, Eq. 5) has one explain task per teacher. The loss of a batch is

    L = gamma * CE(answer) + sum_k alpha_k * CE(rationale_k)

where each CE is the mean token cross-entropy of that task's targets in the batch (the
prompt's tokens are not scored). At test time only the predict task runs: the student
writes the answer directly (greedy, a few tokens), scored by exact match of the final
number (`eval/math.py`) or, on multiple choice (task kind `mcqa`, `data/mcqa.py`), of the
option letter it writes (`eval/choice.py`), so a rationale-trained student costs no more
to run than an answer-only one.

    stages:
      teach: {models: [smollm2-135m, gemma-3-270m], tasks: *math, methods: rationales}
      students:
        models: smollm2-135m
        tasks: *math
        methods:
          - {name: rationale_distill, label: answers_only, teachers: []}
          - {name: rationale_distill, label: gold, teachers: [gold]}
          - {name: rationale_distill, label: tinyllm, teachers: ["@teach", gold]}

`teachers` lists `@stage` references to `rationales` runs (a reference matching several
runs names them all, in the stage's order) and `gold` (the dataset's own worked
solutions: a perfect teacher). An empty list is the answers-only baseline; `[gold]` the
student fine-tuned on gold rationales. Each teacher's rationales come from the same task
(same problems); a problem whose rationale a teacher's filter dropped has no explain
example for that teacher.

Inputs: `[answer] {question}\\nAnswer:` -> ` {answer}<eos>`; `[explain k] {question}
\\nExplanation:` -> ` {rationale}<eos>` (k = the teacher's position, from 1). Full
fine-tuning, or LoRA (`lora: true`, peft) merged into the saved model. Students are any
local decoder: a registered model (SmolLM2-135M), its layer-truncated variants
(`keep_layers`, DistilGPT2-style), a Hub or local folder, or a run product.

Products: `model/` (the full student, LoRA merged; a from_pretrained folder) and
`predictions.jsonl` (per test problem: the generated answer, the number found, gold,
correct).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from scalelab import metrics as mx
from scalelab.engine.args import TrainArgs
from scalelab.engine.recipe import Phase, Plan, Recipe
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, RunResult, is_run_reference, register_method

GOLD = "gold"
PREDICTIONS = "predictions.jsonl"


def predict_prompt(question: str) -> str:
    return f"[answer] {question}\nAnswer:"


def explain_prompt(question: str, k: int) -> str:
    return f"[explain {k}] {question}\nExplanation:"


class RationaleDistillParams(TrainArgs):
    """teachers: `@stage` references to `rationales` runs and/or `gold`, in order (empty:
    answers only); gamma: weight of the answer loss; alpha: the weight of every teacher's
    rationale loss, or one weight per teacher (after references expand); epochs, batch_size
    (problems per optimizer step; each brings its answer and every teacher's rationale);
    max_length: tokens per training sequence (prompt + target; longer targets are cut);
    select_by: whose weights `finish` tests: the best `val_loss` (answer cross-entropy on
    validation), the best `val_exact_match`, or the `last`; answer_tokens: the most tokens
    generated for an answer at evaluation; eval_batch_size: sequences per generation
    batch; lora: LoRA adapters (rank r, lora_alpha, lora_dropout, target_modules: None =
    peft's default for the model type) instead of full fine-tuning, merged when saved;
    keep_layers: cut the student to these transformer blocks first (indices or
    "every_other"; `models/surgery.py`).
    """

    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"eval_batch_size"})

    teachers: list[str] = Field(default_factory=list)
    gamma: float = Field(1.0, ge=0)
    alpha: float | list[float] = 1.0
    lr: PositiveFloat = 5e-5
    weight_decay: float = Field(0.0, ge=0)
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    epochs: PositiveInt = Field(3, le=1000)
    batch_size: PositiveInt = 8
    max_length: PositiveInt = Field(384, le=8192)
    select_by: Literal["val_loss", "val_exact_match", "last"] = "val_loss"
    answer_tokens: PositiveInt = Field(16, le=256)
    eval_batch_size: PositiveInt = 16
    lora: bool = False
    r: PositiveInt = 8
    lora_alpha: PositiveFloat = 16
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] | None = None
    keep_layers: list[int] | Literal["every_other"] | None = None

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t != GOLD and not is_run_reference(t)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is neither {GOLD!r} nor a reference to a rationales stage "
                "(@stage or @stage[model=...])"
            )
        if len(set(v)) != len(v):
            raise ValueError("a teacher is listed twice")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v):
        if isinstance(v, list) and any(a < 0 for a in v):
            raise ValueError("alpha weights must be >= 0")
        if isinstance(v, float) and v < 0:
            raise ValueError("alpha must be >= 0")
        return v

    @field_validator("keep_layers")
    @classmethod
    def _layer_list(cls, v):
        from scalelab.models.surgery import check_layer_list

        return check_layer_list(v)

    def alphas(self) -> list[float]:
        """One weight per teacher (a single alpha applies to every teacher)."""
        if isinstance(self.alpha, list):
            return list(self.alpha)
        return [self.alpha] * len(self.teachers)


def _check(task, params: RationaleDistillParams) -> None:
    from scalelab.data.problems import gold_rationale_gap
    from scalelab.methods.rationales import check_problem_task

    check_problem_task(task, ("train", "validation", "test"))
    gap = gold_rationale_gap(task) if GOLD in params.teachers else None
    if gap:
        raise ScalelabError(
            f"params.teachers: {GOLD!r} learns the dataset's own rationales, but {gap} (drop "
            f"{GOLD!r}, or give every training record a rationale)"
        )
    if isinstance(params.alpha, list) and len(params.alpha) != len(params.teachers):
        raise ScalelabError(
            f"params.alpha has {len(params.alpha)} weights for {len(params.teachers)} "
            "teacher(s) (after @stage references expand)"
        )
    if params.gamma == 0 and not any(params.alphas()):
        raise ScalelabError("params.gamma and params.alpha are all 0: nothing to learn")


def check_run(task, params, model, inputs: dict) -> None:
    """Spec time: every teacher is a `rationales` run of the same task; the student is a
    local decoder (not an endpoint, not an untrained ladder config)."""
    from scalelab.engine.args import identity

    if model.kind in ("http", "ladder"):
        what = "an HTTP endpoint" if model.kind == "http" else "an untrained ladder config"
        raise ScalelabError(
            f"models: {model.name!r} is {what}: a student needs local weights (a registered "
            "or Hub model, a local folder, or @stage of a run that saved one)"
        )
    from scalelab.models.surgery import check_blocks_exist

    check_blocks_exist(params.keep_layers, model)
    for up in inputs.get("teachers", ()):
        who = f"params.teachers: run {up.run_id[:8]} ({up.model.name}, {up.method})"
        if up.method != "rationales":
            raise ScalelabError(f"{who} is not a rationales run")
        if identity(up.task) != identity(task):
            raise ScalelabError(f"{who} explained another task: teachers and student share it")


class RationaleDistillRecipe(Recipe):
    """Multi-task fine-tuning of a causal LM on answers and teachers' rationales."""

    def setup(self, device) -> Plan:
        import torch
        from transformers.utils import logging as hf_logging

        from scalelab.data.problems import load_problems
        from scalelab.engine.precision import autocast_for

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        ctx, p = self.ctx, self.args
        _check(ctx.task, p)
        self.device, self.amp = device, autocast_for(p.dtype, device)
        self.splits = load_problems(ctx.task)
        torch.manual_seed(ctx.seed)  # LoRA's initialisation
        self.model, self.tok = self._load_student()
        self.model.to(device)
        self.eos = self.tok.eos_token_id
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos
        rationales = self._teacher_rationales()
        self.examples = self._encode(self.splits["train"], rationales)
        self.n_explain = [
            sum(any(t == k + 1 for t, _, _ in ex) for ex in self.examples)
            for k in range(len(p.teachers))
        ]
        self.val = self._encode(self.splits["validation"], [])
        spe = self.steps_per_epoch = -(-len(self.examples) // p.batch_size)
        self._order: tuple[int, Any] | None = None
        names = tuple(n for n, q in self.model.named_parameters() if q.requires_grad)
        select = None if p.select_by == "last" else (p.select_by, p.select_by != "val_loss")
        return Plan(model=self.model, phases=[Phase("main", p.epochs * spe, names)],
                    epoch_steps=spe, select=select, eval_at_start=False)  # fmt: skip

    def _load_student(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from scalelab.models.registry import model_path, quiet_gguf

        p = self.args
        path, kwargs = model_path(self.ctx.model)
        with quiet_gguf():
            tok = AutoTokenizer.from_pretrained(path, **kwargs)
        if tok.eos_token_id is None:
            raise ScalelabError(f"model {self.ctx.model.name!r}: its tokenizer has no EOS token")
        # Weights train in fp32 whatever the checkpoint holds (bf16, or GGUF blocks, which
        # transformers dequantizes into plain fp32 tensors on load).
        with quiet_gguf():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        if kwargs.get("gguf_file"):  # nothing is quantized any more: let it train and save
            model.hf_quantizer = None
            model.config.__dict__.pop("quantization_config", None)
        if p.keep_layers is not None:
            from scalelab.models.surgery import cut_blocks

            cut_blocks(model, p.keep_layers)
        if p.lora:
            model = _apply_lora(model, p)
        return model, tok

    def _teacher_rationales(self) -> list[dict[str, str]]:
        """Per teacher (in `teachers` order): problem id -> rationale (kept rows only)."""
        from pathlib import Path

        from scalelab.methods.rationales import read_rationales

        refs = iter(self.ctx.inputs.get("teachers", ()))
        out = []
        for t in self.args.teachers:
            if t == GOLD:
                out.append({q.id: q.rationale for q in self.splits["train"] if q.rationale})
                continue
            ref = next(refs)
            rows = read_rationales(Path(ref.path).parent)
            out.append({i: r["rationale"] for i, r in rows.items() if r["kept"]})
        return out

    def _encode(self, problems: list, rationales: list[dict[str, str]]) -> list[list]:
        """Per problem: [(task, ids, n_prompt), ...]: task 0 is the answer, k a teacher's
        rationale; ids are prompt + target + EOS, cut to max_length."""
        tok, limit = self.tok, self.args.max_length
        out = []
        for q in problems:
            items = [(0, predict_prompt(q.question), " " + q.answer)]
            for k, by_id in enumerate(rationales, 1):
                if q.id in by_id:
                    items.append((k, explain_prompt(q.question, k), " " + by_id[q.id]))
            seqs = []
            for task, prompt, target in items:
                a = tok(prompt)["input_ids"]
                b = tok(target, add_special_tokens=False)["input_ids"] + [self.eos]
                if len(a) >= limit:
                    raise ScalelabError(
                        f"problem {q.id}: its prompt is {len(a)} tokens, params.max_length "
                        f"{limit}: raise max_length"
                    )
                seqs.append((task, (a + b)[:limit], len(a)))
            out.append(seqs)
        return out

    def batch(self, step: int):
        """Problem indices of step `step`: epoch e's order is seeded by (seed, e)."""
        import torch

        epoch, b = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.examples), generator=g).numpy())
        B = self.args.batch_size
        return self._order[1][b * B : (b + 1) * B]

    def task_sums(self, model, problems: list[list]) -> tuple[Any, Any]:
        """(summed target-token cross-entropy [1 + K], target tokens [1 + K]) per task over
        the problems' sequences, from length-sorted chunks padded to their own longest."""
        import torch
        import torch.nn.functional as F

        from scalelab.methods.finetune import _length_chunks

        seqs = sorted((s for ex in problems for s in ex), key=lambda s: len(s[1]))
        n_tasks = 1 + len(self.args.teachers)
        sums = torch.zeros(n_tasks, device=self.device)
        counts = torch.zeros(n_tasks, device=self.device)
        cuts = _length_chunks([len(s[1]) for s in seqs], 64)
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            chunk = seqs[lo:hi]
            width = len(chunk[-1][1])
            ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            target = torch.full_like(ids, -100)
            for i, (_, s, n_prompt) in enumerate(chunk):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
                target[i, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
            ids, mask, target = ids.to(self.device), mask.to(self.device), target.to(self.device)
            with self.amp():
                logits = model(input_ids=ids, attention_mask=mask).logits
            tgt = target[:, 1:]
            ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), tgt, reduction="none",
                                 ignore_index=-100)  # fmt: skip
            task = torch.tensor([t for t, _, _ in chunk], device=self.device)
            sums = sums.index_add(0, task, ce.sum(1))
            counts = counts.index_add(0, task, (tgt != -100).sum(1).float())
        return sums, counts

    def weights(self):
        import torch

        return torch.tensor([self.args.gamma, *self.args.alphas()], device=self.device)

    def loss_step(self, model, batch):
        """gamma * CE(answer) + sum_k alpha_k * CE(rationale_k), each a token mean over the
        micro-batch (a task with no target here adds nothing)."""
        sums, counts = self.task_sums(model, [self.examples[i] for i in batch])
        means = sums / counts.clamp(min=1)
        loss = (self.weights() * means).sum()
        logs = {"examples": len(batch), "tokens": float(counts.sum())}
        return loss, logs

    def _answers(self, model, problems: list) -> list[dict]:
        """Greedy answers of the predict task, with the number found and whether it is right."""
        from scalelab.eval.choice import answer_of, is_correct
        from scalelab.models.backends import GenRequest
        from scalelab.models.backends.local import LocalBackend

        backend = LocalBackend.from_module(model, self.tok, batch_size=self.args.eval_batch_size,
                                           fingerprint="training")  # fmt: skip
        reqs = [GenRequest(predict_prompt(q.question), self.args.answer_tokens, stop=("\n",))
                for q in problems]  # fmt: skip
        was = model.training
        model.eval()
        try:
            texts = backend.generate(reqs)
        finally:
            model.train(was)
        rows = []
        for q, text in zip(problems, texts, strict=True):
            found = answer_of(q, text)
            rows.append({"id": q.id, "output": text, "found": found, "gold": q.answer,
                         "correct": is_correct(q, found)})  # fmt: skip
        return rows

    def evaluate(self, model) -> dict[str, float]:
        import torch

        from scalelab.eval.choice import score_rows

        with torch.no_grad(), self.amp():
            sums, counts = self.task_sums(model, self.val)
        problems = self.splits["validation"]
        em = score_rows(problems, [r["found"] for r in self._answers(model, problems)])
        return {"val_loss": float(sums[0] / counts[0]), "val_exact_match": em["exact_match"]}

    def finish(self, model, state) -> RunResult:
        """Test the kept weights on test (and GSM8K's held-out questions); save products."""
        import json

        from scalelab.eval.choice import score_rows
        from scalelab.io import atomic_write_text
        from scalelab.models.build import count_params

        metrics: dict[str, Any] = {}
        lines = []
        for split in ("test", "gsm8k"):
            problems = self.splits.get(split) or []
            if not problems:
                continue
            rows = self._answers(model, problems)
            em = score_rows(problems, [r["found"] for r in rows])
            prefix = "test" if split == "test" else "gsm8k"
            metrics[f"{prefix}_exact_match"] = em["exact_match"]
            metrics[f"{prefix}_exact_match_stderr"] = em["exact_match_stderr"]
            metrics[f"{prefix}_n"] = em["n_questions"]
            metrics[f"{prefix}_no_answer"] = em["n_no_answer"]
            lines += [json.dumps({"split": split, **r}) + "\n" for r in rows]
        metrics.update(self.evaluate(model))
        atomic_write_text(self.ctx.run_dir / PREDICTIONS, "".join(lines))
        trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
        saved = self.save_model(model)
        non_embedding, total = count_params(saved)
        metrics.update({
            "non_embedding_params": non_embedding, "total_params": total,
            "trainable_params": trainable, "train_examples": len(self.examples),
            "rationale_examples": sum(self.n_explain), "best_step": state["best_step"],
        })  # fmt: skip
        return RunResult(metrics=metrics, curve=state["curve"])

    def save_model(self, model):
        """run_dir/model: the student (LoRA merged in) and its tokenizer; returns the saved
        module."""
        from scalelab.engine.checkpoint import save_pretrained_atomic

        if self.args.lora:
            model = model.merge_and_unload()
        info = {"base_model": self.ctx.model.name, "method": "rationale_distill",
                "teachers": list(self.args.teachers)}  # fmt: skip
        save_pretrained_atomic(self.ctx.run_dir / "model", model, self.tok,
                               json_files={"scalelab.json": info})  # fmt: skip
        return model


def _apply_lora(model, p: RationaleDistillParams):
    from peft import LoraConfig, TaskType, get_peft_model

    target = p.target_modules
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=p.r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
        target_modules=list(target) if isinstance(target, list) else target,
    )  # fmt: skip
    try:
        import warnings

        with warnings.catch_warnings():  # transformers' deprecation notes, reached from peft
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as err:  # e.g. target_modules matching nothing in this model
        raise ScalelabError(f"params.target_modules: {err}".splitlines()[0]) from None


def _em(name: str, what: str) -> mx.MetricDef:
    return mx.MetricDef(name, True, ".1%", what, bounds=(0.0, 1.0))


METRICS = (
    _em("test_exact_match", "exact match of the final answer (number, or option letter) on the "
        "test problems (greedy)"),
    mx.MetricDef("test_exact_match_stderr", None, ".4f", "standard error of test_exact_match",
                 kind="info"),
    _em("gsm8k_exact_match", "exact match on GSM8K test questions no training template came from"),
    mx.MetricDef("gsm8k_exact_match_stderr", None, ".4f", "its standard error", kind="info"),
    _em("val_exact_match", "exact match on the validation problems"),
    mx.VAL_LOSS,
    mx.MetricDef("test_n", None, ",d", "test problems", kind="info"),
    mx.MetricDef("gsm8k_n", None, ",d", "GSM8K questions tested", kind="info"),
    mx.MetricDef("test_no_answer", None, ",d", "test answers with no number (option letter) in "
                 "them", kind="info"),
    mx.MetricDef("gsm8k_no_answer", None, ",d", "GSM8K answers with no number", kind="info"),
    mx.TRAIN_EXAMPLES,
    mx.MetricDef("rationale_examples", None, ",d", "teacher rationales trained on", kind="info"),
    mx.MetricDef("best_step", None, ",d", "step of the weights tested", kind="info"),
    mx.NON_EMBEDDING_PARAMS, mx.TOTAL_PARAMS, mx.TRAINABLE_PARAMS,
    mx.STEPS, *mx.EVENT_COUNTS, mx.TOKENS_PER_S, mx.EXAMPLES_PER_S, mx.WALL_S, mx.PEAK_MEM_MB,
)  # fmt: skip

register_method(
    MethodDef(
        name="rationale_distill",
        params=RationaleDistillParams,
        entry="scalelab.methods.rationale_distill:RationaleDistillRecipe",
        task_kinds=("math", "mcqa"),
        description="student learns answers and teachers' rationales (distilling step by "
        "step, TinyLLM)",
        check=_check,
        check_run=check_run,
        metrics=METRICS,
        products=("model", PREDICTIONS),
    )
)
