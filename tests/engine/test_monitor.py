"""What the engine records inside a run (engine/monitor.py): monitor points in the curve
(lr per group, grad/weight norms per layer, memory, throughput) and events."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
import torch
from helpers import cli, save_tiny, tiny_lm_spec, write_dataset, write_spec

from scalelab.engine.monitor import layer_groups, layer_of, loss_spike, merge_points
from scalelab.grid.store import ResultsStore

STEPS = 30


def _pretrain(tmp_path, corpus, capsys, name: str, **runtime):
    spec = tiny_lm_spec(tmp_path / f"{name}.yaml", corpus, tmp_path / name, models=["gpt-d2"],
                        params={"tokens": 8 * 32 * STEPS, "batch_size": 8, "lr": 3e-3,
                                "eval_every": 10},
                        runtime={"threads": 1, **runtime})  # fmt: skip
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0, out + err
    store = ResultsStore(tmp_path / name / "results.sqlite")
    return spec, store.table().iloc[0], store.curves()


def test_layer_of_names_blocks_embeddings_and_head_of_gpt2_bert_and_lora(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel.from_pretrained(save_tiny(tmp_path / "g", "gpt2"))
    names = [n for n, _ in gpt2.named_parameters()]
    assert list(layer_groups(names)) == ["embed", "block.0", "block.1", "head"]
    assert layer_of("transformer.h.1.mlp.c_fc.weight") == "block.1"
    assert layer_of("transformer.wpe.weight") == "embed"
    assert layer_of("transformer.ln_f.bias") == "head"

    bert = AutoModelForSequenceClassification.from_pretrained(
        save_tiny(tmp_path / "b", "bert", n_layer=12), num_labels=3
    )
    by = {n: layer_of(n) for n, _ in bert.named_parameters()}
    assert by["bert.embeddings.LayerNorm.weight"] == "embed"
    assert by["bert.encoder.layer.11.output.dense.weight"] == "block.11"
    assert by["bert.pooler.dense.weight"] == by["classifier.weight"] == "head"
    order = list(layer_groups(by))  # block.10 after block.9, not after block.1
    assert order == ["embed", *(f"block.{i}" for i in range(12)), "head"]

    lora = get_peft_model(bert, LoraConfig(r=2, target_modules=["query", "value"],
                                           modules_to_save=["classifier"]))  # fmt: skip
    trained = {n: layer_of(n) for n, q in lora.named_parameters() if q.requires_grad}
    assert any("lora_A" in n for n in trained) and "other" not in trained.values()
    assert trained["base_model.model.bert.encoder.layer.3.attention.self.query.lora_B.default"
                   ".weight"] == "block.3"  # fmt: skip
    assert {v for n, v in trained.items() if "classifier" in n} == {"head"}


def test_monitor_points_hold_the_schedule_and_norms_and_change_no_result(tmp_path, corpus, capsys):
    from scalelab.engine.schedules import lr_at
    from scalelab.methods.pretrain import PretrainParams

    spec, row, curves = _pretrain(tmp_path, corpus, capsys, "on", monitor_every=4)
    pts = curves[curves["lr/0"].notna()]
    # every 4th step and the last one
    assert pts["step"].tolist() == [*range(4, STEPS + 1, 4), STEPS]
    args = PretrainParams(tokens=8 * 32 * STEPS, batch_size=8, lr=3e-3)
    for _, p in pts.iterrows():  # the rate step s (1-based) used, in both AdamW groups
        want = lr_at(args, int(p["step"]) - 1, STEPS, 3e-3)
        assert p["lr/0"] == pytest.approx(want, rel=1e-12) and p["lr/1"] == p["lr/0"]
    layers = ["embed", "block.0", "block.1", "head"]
    squares = sum(pts[f"grad_norm/{k}"] ** 2 for k in layers)
    assert squares.to_numpy() == pytest.approx((pts["grad_norm"] ** 2).to_numpy(), rel=1e-5)
    assert (pts["clipped"] == (pts["grad_norm"] > 1.0 - 1e-6)).all()  # grad_clip 1.0
    assert pts["clipped"].any() and not pts["clipped"].all()  # both happen in this run
    for col in ["weight_norm/block.0", "mem/rss_mb", "mem/peak_rss_mb", "tokens_per_s"]:
        assert (pts[col] > 0).all(), col
    assert row["loss_spikes"] == 0 and row["nonfinite_grad_norms"] == 0

    # `results --curves --format csv` exports the same table, each row naming its run.
    code, out, _ = cli("results", spec, "--curves", "--format", "csv", capsys=capsys)
    exported = pd.read_csv(io.StringIO(out))
    assert code == 0 and len(exported) == len(curves)
    assert set(curves.columns) <= set(exported.columns)
    assert (exported["model"] == "gpt-d2").all() and (exported["method"] == "pretrain").all()
    assert exported["grad_norm/block.1"].tolist() == pytest.approx(
        curves["grad_norm/block.1"].tolist(), nan_ok=True
    )
    code, out, _ = cli("results", spec, "--curves", capsys=capsys)  # a table to read
    head = out.splitlines()[0].split()
    assert code == 0 and head[:5] == ["run_id", "stage", "model", "method", "seed"]
    assert "val_loss" in head and "grad_norm/block.1" not in head
    assert len(out.splitlines()) == len(curves) + 1

    # Monitoring reads the gradients and weights only: the same run without it (runtime is
    # not part of the run id) ends on exactly the same numbers, and its curve has no points.
    _, off, off_curves = _pretrain(tmp_path, corpus, capsys, "off", monitor_every=0)
    assert off["run_id"] == row["run_id"]
    for m in ("train_loss", "val_loss", "test_loss"):
        assert off[m] == row[m], m
    assert "grad_norm" not in off_curves and off_curves["step"].tolist() == [0, 10, 20, 30]


def test_a_frozen_block_has_zero_gradient_in_the_head_only_phase(tmp_path, capsys):
    model = save_tiny(tmp_path / "bert", "bert")
    spec = write_spec(
        tmp_path / "ft.yaml", name="ft", output_dir=str(tmp_path / "out"), models=[str(model)],
        tasks={"dataset": str(write_dataset(tmp_path / "d.jsonl")), "kind": "classification",
               "max_length": 16},
        methods=["full"], params={"epochs": 2, "head_only_epochs": 1, "batch_size": 8,
                                  "lr": 1e-3},
        seeds=[0], runtime={"threads": 1, "monitor_every": 1},
    )  # fmt: skip
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0, out + err
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    curves = store.curves().set_index("step")
    epoch = int(store.table().iloc[0]["steps"]) // 2
    head, main = curves.loc[1:epoch], curves.loc[epoch + 1 :]
    assert (head["grad_norm/block.0"] == 0).all() and (head["grad_norm/embed"] == 0).all()
    assert (head["grad_norm/head"] > 0).all()
    assert (main["grad_norm/block.0"] > 0).all() and (main["grad_norm/embed"] > 0).all()
    assert (head["weight_norm/block.0"] == head["weight_norm/block.0"].iloc[0]).all()  # frozen
    assert curves["epoch_s"].dropna().index.tolist() == [epoch, 2 * epoch]
    assert curves.loc[[epoch, 2 * epoch], "val_accuracy"].notna().all()  # same rows
    assert (curves.loc[1:, "examples_per_s"].dropna() > 0).all()


def test_a_forced_nan_is_an_event_and_a_failed_run(tmp_path, corpus, capsys):
    """lr 1e30: step 1's update ruins the weights, so step 2's gradient norm (and loss) is
    NaN. The event is in events.json, in the stored error and printed as a warning."""
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d1"],
                        params={"tokens": 8 * 32 * 10, "batch_size": 8, "lr": 1e30,
                                "eval_every": 50},
                        runtime={"threads": 1, "monitor_every": 1})  # fmt: skip
    code, out, err = cli("run", spec, capsys=capsys)
    row = ResultsStore(tmp_path / "out" / "results.sqlite").table().iloc[0]
    assert code == 1 and row["status"] == "failed"
    events = json.loads((tmp_path / "out" / "runs" / row["run_id"] / "events.json").read_text())
    assert events[0]["kind"] == "nonfinite_grad_norm" and events[0]["step"] == 2
    assert "the loss is nan at step 2 (events: non-finite grad norm at step 2" in row["error"]
    assert "warning: run" in err and "non-finite grad norm at step 2" in err
    # The failed run keeps its curve up to the fault: the untrained model's evaluation and
    # the monitor point of step 1 (finite), and the NaN gradient norm of step 2.
    curve = ResultsStore(tmp_path / "out" / "results.sqlite").curves([row["run_id"]])
    assert curve["step"].tolist()[:1] == [0] and 1 in curve["step"].tolist()
    at1 = curve[curve["step"] == 1].iloc[0]
    assert at1["grad_norm"] > 0 and at1["lr/0"] > 0


class _Spiky:
    """A toy recipe: a linear model fitting y = x.sum(); the batch of step `spike` is
    scaled x30 (a loss spike), and from step `nan` on the batch is NaN."""

    def __init__(self, ctx, spike: int, nan: int | None) -> None:
        from scalelab.engine.args import TrainArgs

        self.ctx, self.args, self.spike, self.nan = ctx, TrainArgs(lr=0.05), spike, nan

    def setup(self, device):
        from scalelab.engine.recipe import Phase, Plan

        torch.manual_seed(0)
        return Plan(model=torch.nn.Linear(4, 1), phases=[Phase("train", 40)])

    def batch(self, step: int):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        if self.nan is not None and step + 1 >= self.nan:
            return x * math.nan
        return x * 30 if step + 1 == self.spike else x

    def loss_step(self, model, x):
        return ((model(x).squeeze(-1) - x.sum(-1)) ** 2).mean(), {"examples": len(x)}

    def evaluate(self, model):
        return {}

    def finish(self, model, state):
        from scalelab.methods.base import RunResult

        return RunResult(metrics={}, curve=state["curve"])


def _ctx(tmp_path):
    from scalelab.grid.spec import Runtime
    from scalelab.methods.base import RunContext

    reports: list[dict] = []
    run_dir = tmp_path / "runs" / "toy"
    run_dir.mkdir(parents=True)
    ctx = RunContext(run_id="toy", model=None, task=None, params=None, seed=0, run_dir=run_dir,
                     runtime=Runtime(threads=1, monitor_every=10), report=reports.append)  # fmt: skip
    return ctx, reports


def test_a_loss_spike_is_an_event_of_a_done_run(tmp_path):
    from scalelab.engine.loop import train
    from scalelab.errors import ScalelabError

    ctx, reports = _ctx(tmp_path)
    result = train(_Spiky(ctx, spike=30, nan=None), ctx)
    assert result.metrics["loss_spikes"] == 1 and result.metrics["nonfinite_grad_norms"] == 0
    (spike,) = json.loads((ctx.run_dir / "events.json").read_text())
    assert spike["kind"] == "loss_spike" and spike["step"] == 30
    assert spike["value"] > 2 * spike["median"]
    assert [r["warning"] for r in reports if "warning" in r] == [
        f"loss spike at step 30 ({spike['value']:.4g} vs median {spike['median']:.4g}) "
        "(all events: runs/toy/events.json)"
    ]
    assert [p["step"] for p in result.curve] == [10, 20, 30, 40]  # the monitor points
    assert result.curve[2]["step_loss"] == spike["value"]

    ctx, _ = _ctx(tmp_path / "nan")
    with pytest.raises(ScalelabError, match=r"the loss is nan at step 35 \(events: loss spike"):
        train(_Spiky(ctx, spike=30, nan=35), ctx)
    kinds = [(e["kind"], e["step"]) for e in json.loads((ctx.run_dir / "events.json").read_text())]
    assert kinds == [("loss_spike", 30), ("nonfinite_grad_norm", 35)]


def test_loss_spike_rule_and_merging_points_into_the_curve():
    flat = [2.0] * 20
    assert loss_spike(4.1, flat) == 2.0 and loss_spike(3.9, flat) is None  # > 2 x median
    assert loss_spike(0.25, [0.1] * 20) is None  # 2.5 x, but less than 0.5 nats above
    assert loss_spike(9.0, flat[:2]) is None  # too little history
    assert loss_spike(248.8, [5.5, 5.4, 5.3]) == 5.4  # a blow-up in the first steps (lr too high)
    merged = merge_points([{"step": 0, "val_loss": 3.0}, {"step": 4, "val_loss": 2.0}],
                          [{"step": 2, "lr/0": 0.1}, {"step": 4, "lr/0": 0.2}])  # fmt: skip
    assert merged == [{"step": 0, "val_loss": 3.0}, {"step": 2, "lr/0": 0.1},
                      {"step": 4, "lr/0": 0.2, "val_loss": 2.0}]  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_monitor_points_on_cuda_hold_gpu_memory_and_the_clipping_norm(tmp_path, corpus, capsys):
    """On a GPU clipping runs torch's own clip_grad_norm_ (its norm is read after the
    optimizer step is queued); memory is the allocator's."""
    _, row, curves = _pretrain(tmp_path, corpus, capsys, "gpu", monitor_every=5, device="cuda")
    pts = curves[curves["grad_norm"].notna()]
    assert pts["step"].tolist() == [5, 10, 15, 20, 25, 30]
    squares = sum(pts[f"grad_norm/{k}"] ** 2 for k in ["embed", "block.0", "block.1", "head"])
    assert squares.to_numpy() == pytest.approx((pts["grad_norm"] ** 2).to_numpy(), rel=1e-4)
    assert (pts["mem/allocated_mb"] > 0).all() and (pts["mem/reserved_mb"] > 0).all()
    assert (pts["mem/peak_allocated_mb"] >= pts["mem/allocated_mb"]).all()
    assert "mem/rss_mb" not in pts and row["nonfinite_grad_norms"] == 0
