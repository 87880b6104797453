"""Active learning: `active`, pool-based rounds of fine-tuning and querying to a label budget.

    methods:
      - {name: active, strategy: random}
      - {name: active, strategy: margin}
    params: {seed_size: 100, query_size: 100, budget: 500, epochs: 5, lr: 1.0e-4}

The pool is the task's training split (after its `train_size` subsample); validation and
test are other splits and never enter it. Round 0 labels a seed set of `seed_size`
training examples drawn uniformly with numpy `default_rng([seed, data_seed, 0])` (the same
for every strategy of a seed, so all curves start from one point). Each round then

1. fine-tunes the pretrained model afresh on the labelled set (the usual protocol, e.g.
   Ein-Dor et al. 2020, "Active Learning for BERT"): `full` fine-tuning through the one
   training engine (`FinetuneRecipe`, `engine.loop.train`), its params and seeds, the
   weights with the best validation accuracy kept;
2. scores val/test accuracy and macro-F1 of those weights;
3. unless the budget is reached, queries `query_size` pool examples (`active_query.py`:
   random, least confidence, entropy, margin, core-set, embedding k-means), the random
   draws from `[seed, data_seed, round + 1]`; ties go to the lower training position.

Restarting every round from the pretrained model keeps each round's model a function of
its labelled set alone (no drift from earlier rounds' weights), so a round is as easy to
reason about as a `full` run on that set. Embeddings for the diversity strategies are the
last hidden layer mean-pooled over the real tokens.

Resumable: after each round `rounds.json` in the run folder is rewritten atomically with
every finished round (the positions it added, in order; the positions it queried; its
metrics). A rerun of an interrupted run starts after the last finished round (a round
killed midway resumes from the engine's checkpoint) and ends exactly as an uninterrupted
run: the seed set, the queries and the training are functions of (seed, data_seed, round)
and the labelled set only.

Products: `rounds.json`; the last round's `model/`, `eval.json` and `predictions.npz`
(`full`'s). Metrics: `full`'s at the budget plus `labels` and `rounds`; `steps` and
`wall_s` summed over rounds, `peak_mem_mb` their maximum (the event counts and throughput
are the last round's). The curve has one point per round: `step` = labels after
that round (also `labels`), `round`, and the val/test accuracy, macro-F1 and loss.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import Field, PositiveInt

from scalelab import metrics as mx
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, RunResult, register_method
from scalelab.methods.finetune import CLASSIFICATION_METRICS, FinetuneRecipe, FullParams
from scalelab.methods.finetune import _check as _check_finetune
from scalelab.methods.finetune import _check_run as _check_run_finetune

ROUNDS_FILE = "rounds.json"
STATE_VERSION = 1
CURVE_KEYS = ("val_accuracy", "val_macro_f1", "val_loss", "test_accuracy", "test_macro_f1",
              "test_loss")  # fmt: skip


class ActiveParams(FullParams):
    """`full` fine-tuning's params (each round) plus:

    strategy: how the next batch is chosen (`methods/active_query.py`): random,
    least_confidence, entropy, margin (breaking ties), coreset (greedy k-center on
    embeddings) or kmeans (embedding k-means); seed_size: labels of round 0, drawn at
    random; query_size: labels added per round; budget: labels after the last round
    (seed_size + a whole number of query_size)."""

    strategy: Literal["random", "least_confidence", "entropy", "margin", "coreset", "kmeans"]
    seed_size: PositiveInt = 100
    query_size: PositiveInt = 100
    budget: PositiveInt = Field(1000, le=10_000_000)


def _check(task, params: ActiveParams) -> None:
    _check_finetune(task, params)
    if params.budget < params.seed_size:
        raise ScalelabError(
            f"params.budget ({params.budget}) is smaller than params.seed_size "
            f"({params.seed_size}): the budget counts every label, the seed set's included"
        )
    if (params.budget - params.seed_size) % params.query_size:
        raise ScalelabError(
            f"params.budget ({params.budget}) must be params.seed_size ({params.seed_size}) "
            f"plus a whole number of params.query_size ({params.query_size})"
        )
    for field in ("half", "k_per_class", "augment"):  # each would change the pool
        if getattr(task, field, None) is not None:
            raise ScalelabError(
                f"task.{field}: active learning draws from the whole training split (its "
                f"pool of real examples): leave task.{field} unset"
            )
    if task.train_size is not None and params.budget > task.train_size:
        raise ScalelabError(
            f"params.budget ({params.budget}) exceeds task.train_size ({task.train_size}): "
            "the pool runs out"
        )


def rounds_of(params: ActiveParams) -> int:
    """Rounds of a run: the seed round plus one per query."""
    return 1 + (params.budget - params.seed_size) // params.query_size


def pool_of(n_train: int, labelled) -> list[int]:
    """Training positions not yet labelled, ascending: the pool a query draws from."""
    taken = set(labelled)
    return [i for i in range(n_train) if i not in taken]


def labelled_of(rounds: list[dict]) -> list[int]:
    """The labelled training positions after the given finished rounds, in the order they
    were added (the seed set, then each query)."""
    return [i for r in rounds for i in r["added"]]


class ActiveRoundRecipe(FinetuneRecipe):
    """One round: `full` fine-tuning on the labelled positions of the run's training split;
    afterwards (unless it is the last round) the pool's probabilities or embeddings."""

    def __init__(self, ctx, data, labelled: list[int], final: bool) -> None:
        super().__init__(ctx)
        self.all_data, self.labelled, self.final = data, list(labelled), final
        self.pool_probs = self.pool_emb = self.labelled_emb = None

    def load_data(self, task):
        from scalelab.data.classification import TaskData

        d = self.all_data
        self.heldout, self.heldout_index = [], []
        self.label_step, self.label_steps = 0, 0
        return TaskData([d.train[i] for i in self.labelled], d.validation, d.test,
                        d.label_names, list(self.labelled))  # fmt: skip

    def finish(self, model, state) -> RunResult:
        """The last round: `full`'s finish (products in the run folder). Others: val/test
        scores only, then the pool outputs the strategy needs."""
        if self.final:
            return super().finish(model, state)
        from scalelab.eval.classification import score

        k = self.data.num_labels
        metrics = {"train_examples": len(self.labelled), "best_step": state["best_step"],
                   "epochs_run": -(-state["step"] // self.steps_per_epoch)}  # fmt: skip
        for split, name in (("validation", "val"), ("test", "test")):
            s = score(self._logits(model, split), self.labels[split], k)
            metrics.update({f"{name}_{m}": s[m] for m in ("accuracy", "macro_f1", "loss")})
        self._pool_outputs(model)
        return RunResult(metrics=metrics, curve=state["curve"])

    def _pool_outputs(self, model) -> None:
        import numpy as np

        from scalelab.data.classification import encode
        from scalelab.methods.active_query import DIVERSITY, UNCERTAINTY

        strategy = self.args.strategy
        if strategy not in UNCERTAINTY + DIVERSITY:
            return
        pool = pool_of(len(self.all_data.train), self.labelled)
        seqs = encode(self.tok, [self.all_data.train[i] for i in pool], self.ctx.task.max_length)
        embed = strategy in DIVERSITY
        if strategy == "coreset":
            seqs = seqs + self.seqs["train"]
        logits, emb = outputs(model, seqs, self.pad, self.args.eval_batch_size, self.amp,
                              self.device, embed)  # fmt: skip
        z = logits[: len(pool)] - logits[: len(pool)].max(-1, keepdims=True)
        self.pool_probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        if embed:
            self.pool_emb, self.labelled_emb = emb[: len(pool)], emb[len(pool) :]


def outputs(model, seqs, pad_id: int, batch_size: int, amp, device, embed: bool):
    """(logits float32 [n, classes], embeddings float32 [n, hidden] or None) in input order:
    the embedding is the last hidden layer averaged over each sequence's real tokens."""
    import numpy as np
    import torch

    from scalelab.data.classification import collate

    was = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    logits, embs = [None] * len(seqs), [None] * len(seqs)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = collate([seqs[i] for i in idx], pad_id)
            ids, mask = ids.to(device), mask.to(device)
            with amp():
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=embed)
            if embed:
                h, m = out.hidden_states[-1].float(), mask.unsqueeze(-1).float()
                pooled = ((h * m).sum(1) / m.sum(1).clamp(min=1)).cpu().numpy()
            for j, i in enumerate(idx):
                logits[i] = out.logits[j].float().cpu().numpy()
                if embed:
                    embs[i] = pooled[j]
    model.train(was)
    return np.stack(logits), np.stack(embs) if embed else None


def _load_state(ctx, n_train: int) -> dict:
    """The finished rounds in `rounds.json`, or a fresh state. Raises ScalelabError for a
    file that is not this run's."""
    import json

    path = ctx.run_dir / ROUNDS_FILE
    fresh = {"version": STATE_VERSION, "run_id": ctx.run_id, "train_examples": n_train,
             "rounds": []}  # fmt: skip
    if not path.exists():
        return fresh
    where = f"runs/{ctx.run_dir.name}/{ROUNDS_FILE}"
    try:
        state = json.loads(path.read_text())
        ok = (state["version"], state["run_id"], state["train_examples"]) == (
            STATE_VERSION, ctx.run_id, n_train) and isinstance(state["rounds"], list)  # fmt: skip
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ScalelabError(f"{where} is not this run's round record: delete it to start over")
    return state


def _seed_of(ctx, round_: int) -> list[int]:
    """The ints the random draws of `round_` come from: (seed, data_seed, round)."""
    return [int(ctx.seed), int(ctx.task.data_seed), int(round_)]


def _next_query(ctx, recipe: ActiveRoundRecipe, labelled: list[int], round_: int) -> list[int]:
    """Training positions of the query made after round `round_` (for round + 1)."""
    from scalelab.methods.active_query import query

    pool = pool_of(len(recipe.all_data.train), labelled)
    picked = query(ctx.params.strategy, ctx.params.query_size, _seed_of(ctx, round_ + 1),
                   len(pool), probs=recipe.pool_probs, pool_emb=recipe.pool_emb,
                   labelled_emb=recipe.labelled_emb)  # fmt: skip
    return [pool[int(i)] for i in picked]


def _round_report(report, round_: int, total: int):
    """`report` with each step event saying its round ("round 2/5, loss 0.4121"): every
    round's steps count from 0 again."""

    def send(event: dict) -> None:
        if event.get("loss") is not None and not event.get("info"):
            event = {**event, "info": f"round {round_ + 1}/{total}, loss {event['loss']:.4f}"}
        report(event)

    return send


def run_active(ctx) -> RunResult:
    """Run (or resume) every round; returns the last round's metrics and the curve."""
    from scalelab.data.classification import load_task_data
    from scalelab.engine.loop import train
    from scalelab.io import atomic_write_json
    from scalelab.methods.active_query import random_query

    p = ctx.params
    if getattr(ctx.runtime, "nproc_per_node", 1) > 1:
        raise ScalelabError("runtime.nproc_per_node: an active run trains in one process")
    data = load_task_data(ctx.task)
    n_train = len(data.train)
    if p.budget > n_train:
        raise ScalelabError(
            f"params.budget ({p.budget}) exceeds the {n_train} training examples of task "
            f"{ctx.task.dataset}: the pool runs out"
        )
    state = _load_state(ctx, n_train)
    total = rounds_of(p)
    for r in range(len(state["rounds"]), total):
        if r == 0:
            added = random_query(n_train, p.seed_size, _seed_of(ctx, 0)).tolist()
        else:
            added = state["rounds"][-1]["queried"]
        labelled = labelled_of(state["rounds"]) + added
        round_ctx = replace(ctx, report=_round_report(ctx.report, r, total))
        recipe = ActiveRoundRecipe(round_ctx, data, labelled, final=r == total - 1)
        result = train(recipe, round_ctx)
        queried = [] if r == total - 1 else _next_query(ctx, recipe, labelled, r)
        state["rounds"].append({"round": r, "labels": len(labelled), "added": added,
                                "pool": n_train - len(labelled), "queried": queried,
                                "metrics": result.metrics})  # fmt: skip
        atomic_write_json(ctx.run_dir / ROUNDS_FILE, state)
    return result_of(state)


def result_of(state: dict) -> RunResult:
    """The run's result from its finished rounds: the last round's metrics (steps and
    wall_s summed over rounds, plus labels and rounds) and one curve point per round."""
    rounds = state["rounds"]
    metrics = dict(rounds[-1]["metrics"])
    metrics.update(
        labels=rounds[-1]["labels"], rounds=len(rounds),
        steps=sum(int(r["metrics"].get("steps", 0)) for r in rounds),
        wall_s=sum(float(r["metrics"].get("wall_s", 0.0)) for r in rounds),
        peak_mem_mb=max(float(r["metrics"].get("peak_mem_mb", 0.0)) for r in rounds),
    )  # fmt: skip
    curve = [{"step": r["labels"], "labels": r["labels"], "round": r["round"],
              **{k: r["metrics"][k] for k in CURVE_KEYS if k in r["metrics"]}}
             for r in rounds]  # fmt: skip
    return RunResult(metrics=metrics, curve=curve)


ACTIVE_METRICS = (
    *(d for d in CLASSIFICATION_METRICS if d.name != "labels_accuracy"),
    mx.MetricDef("labels", None, ",d", "labelled training examples at the end (the budget)",
                 "size"),
    mx.MetricDef("rounds", None, ",d", "rounds run: the seed round plus one per query", "info"),
)  # fmt: skip

register_method(
    MethodDef(
        name="active",
        params=ActiveParams,
        entry="scalelab.methods.active:run_active",
        task_kinds=("classification",),
        description="active learning: rounds of full fine-tuning and querying (random, "
        "least confidence, entropy, margin, core-set, k-means) to a label budget",
        check=_check,
        check_run=_check_run_finetune,
        metrics=ACTIVE_METRICS,
        products=("model", "predictions.npz", ROUNDS_FILE),
    )
)
