"""Rationale distillation: teachers' rationales (`rationales`), their filters, cache and
resume; the student's multi-task loss (`rationale_distill`) against a hand computation;
and the whole chain through the grid with a `scalelab serve` teacher over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    assert_spec_error,
    cli,
    save_tiny_math_lm,
    write_math_dataset,
    write_spec,
)

from scalelab.data.math_data import MathTask, Problem, load_math_splits
from scalelab.grid.api import load_experiment_tables
from scalelab.grid.spec import Runtime
from scalelab.methods.base import RunContext
from scalelab.methods.rationale_distill import (
    RationaleDistillParams,
    RationaleDistillRecipe,
    explain_prompt,
    predict_prompt,
)
from scalelab.methods.rationales import RationalesParams, judge, read_rationales, run_rationales
from scalelab.models.registry import ModelRef, resolve_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("math")
    return save_tiny_math_lm(root / "model"), write_math_dataset(root / "data")


OPTIONS = ("a tree", "a robot", "a house", "a car")


@pytest.mark.parametrize(
    ("text", "gold", "options", "consistent", "restates"),
    [
        ("Tom has 3 + 4 = 7 apples. The answer is 7.", "7", (), True, False),
        ("The answer is 7.", "7", (), True, True),
        ("3 + 4 = 8, so 8.", "7", (), False, False),
        ("He has some apples.", "7", (), False, True),
        ("1,200 - 200 = 1,000 #### 1,000", "1000", (), True, False),
        # multiple choice: the letter the rationale settles on, not the first one it names
        (
            "Poison harms living things and only (A) is alive, not (B) or (D). So the answer "
            "is (A).",
            "A",
            OPTIONS,
            True,
            False,
        ),
        ("So the answer is (A).", "A", OPTIONS, True, True),
        ("(A) a tree. So the answer is (A).", "A", OPTIONS, True, True),  # the option's text
        ("Trees are alive. So the answer is (A).", "A", OPTIONS, True, False),  # short, its own
        (
            "A robot is not alive, so poison cannot harm it; neither can it harm a house. So "
            "the answer is (B).",
            "A",
            OPTIONS,
            False,
            False,
        ),
        (
            "A tree is a living thing that poison can harm, unlike machines and buildings.",
            "A",
            OPTIONS,
            False,
            False,
        ),  # no letter stated: nothing shows it agrees
        ("The answer is (E) because it is the fifth.", "A", OPTIONS, False, True),  # past D
        ("It is (E): the fifth. So the answer is (E).", "A", OPTIONS, False, False),
    ],
)
def test_the_consistency_filter_and_the_restatement_flag(text, gold, options, consistent,
                                                         restates):  # fmt: skip
    problem = Problem(id="p", question="Q", rationale="", answer=gold, options=options)
    verdict = judge(text, problem)
    assert verdict["consistent"] is consistent
    assert verdict["restates"] is restates


def _ctx(run_dir: Path, model: str, task, params, inputs=None) -> RunContext:
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext("r", resolve_model(model), task, params, 0, run_dir, Runtime(threads=1),
                      inputs=inputs or {})  # fmt: skip


def test_a_killed_generation_resumes_without_asking_again(setup, tmp_path):
    model, data = setup
    task = MathTask(dataset=str(data))
    params = RationalesParams(shots=1, max_tokens=8, consistency="flag")

    class Killed(Exception):
        pass

    def die_after_first_chunk(event):
        if event.get("step", 0) >= 16:
            raise Killed

    ctx = _ctx(tmp_path / "run", str(model), task, params)
    ctx.report = die_after_first_chunk
    with pytest.raises(Killed):
        run_rationales(ctx)
    saved = (ctx.run_dir / "rationales.partial.jsonl").read_text().splitlines()
    assert len(saved) == 16
    ctx.report = lambda event: None
    metrics = run_rationales(ctx).metrics
    # Only the 8 problems not saved were asked for at all (cached or not).
    assert metrics["requests"] + metrics["cached_requests"] == 8
    rows = read_rationales(ctx.run_dir)
    assert [r["id"] for r in rows.values()] == [q.id for q in load_math_splits(task)["train"]]
    assert not (ctx.run_dir / "rationales.partial.jsonl").exists()
    # Another run asking the same teacher the same things is answered from the cache.
    again = run_rationales(_ctx(tmp_path / "run2", str(model), task, params)).metrics
    assert (again["requests"], again["cached_requests"]) == (0, 24)
    assert [r["rationale"] for r in read_rationales(tmp_path / "run2").values()] == [
        r["rationale"] for r in rows.values()
    ]


def _hand_loss(recipe, model, problems, rationales, weights) -> float:
    """Each sequence alone (no padding): token CE of its target, token means per task."""
    tok = recipe.tok
    sums, counts = [0.0] * len(weights), [0] * len(weights)
    for q in problems:
        items = [(0, predict_prompt(q.question), " " + q.answer)]
        items += [(k, explain_prompt(q.question, k), " " + r[q.id])
                  for k, r in enumerate(rationales, 1) if q.id in r]  # fmt: skip
        for task, prompt, target in items:
            a = tok(prompt)["input_ids"]
            b = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([a + b])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0]
            ce = F.cross_entropy(logits[len(a) - 1 : -1], ids[0, len(a) :], reduction="sum")
            sums[task] += float(ce)
            counts[task] += len(b)
    return sum(w * s / c for w, s, c in zip(weights, sums, counts, strict=True) if c)


def test_the_loss_is_gamma_answer_ce_plus_alpha_weighted_rationale_ces(setup, tmp_path):
    model, data = setup
    task = MathTask(dataset=str(data))
    train = load_math_splits(task)["train"]
    runs = tmp_path / "runs"
    teacher = {q.id: f"{q.question.split()[0]} counts {q.answer}." for q in train}
    dropped = {train[1].id, train[2].id}  # the filter dropped two of the teacher's rationales
    (runs / "abc").mkdir(parents=True)
    (runs / "abc" / "rationales.jsonl").write_text("".join(
        json.dumps({"id": i, "rationale": r, "found": None, "consistent": i not in dropped,
                    "restates": False, "kept": i not in dropped, "finish_reason": "stop"}) + "\n"
        for i, r in teacher.items()))  # fmt: skip
    params = RationaleDistillParams(teachers=["run:abc", "gold"], gamma=0.7, alpha=[0.2, 0.5],
                                    max_length=256)  # fmt: skip
    ctx = _ctx(tmp_path / "run", str(model), task, params,
               {"teachers": (ModelRef.for_run("abc", runs),)})  # fmt: skip
    recipe = RationaleDistillRecipe(ctx)
    plan = recipe.setup(torch.device("cpu"))
    plan.model.eval()  # no dropout: the two computations must see the same network
    batch = [0, 1, 2, 3, 5]
    loss, logs = recipe.loss_step(plan.model, batch)
    kept = {i: r for i, r in teacher.items() if i not in dropped}
    gold = {q.id: q.rationale for q in train}
    expected = _hand_loss(recipe, plan.model, [train[i] for i in batch], [kept, gold],
                          [0.7, 0.2, 0.5])  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["examples"] == 5
    assert recipe.n_explain == [len(train) - 2, len(train)]


def test_rationale_distillation_through_the_grid_with_an_http_teacher(setup, tmp_path, capsys):
    from scalelab.testing import ServeProcess

    model, data = setup
    task = {"dataset": str(data), "kind": "math"}
    server = ServeProcess(model, tmp_path / "serve.log", name="tiny", home=tmp_path / "h")
    try:
        server.wait(600)
        teacher = f"{server.url}#tiny"
        stages = {
            "teach": {"models": [teacher], "methods": {"name": "rationales", "shots": 1,
                      "max_tokens": 12, "consistency": "flag"}},
            "base": {"models": [str(model)], "methods": {"name": "evaluate", "shots": 1,
                     "max_tokens": 12}},
            "students": {"models": [str(model)], "methods": [
                {"name": "rationale_distill", "label": "answers_only", "teachers": [],
                 "epochs": 1, "batch_size": 8, "max_length": 200},
                {"name": "rationale_distill", "label": "tinyllm", "teachers": ["@teach", "gold"],
                 "epochs": 1, "batch_size": 8, "max_length": 200}]},
        }  # fmt: skip
        spec = write_spec(tmp_path / "r.yaml", name="r", output_dir=str(tmp_path / "out"),
                          tasks=[task], stages=stages, runtime={"threads": 1})  # fmt: skip
        code, out, err = cli("run", spec, capsys=capsys)
        assert code == 0, err
        runs = load_experiment_tables(spec)[0].set_index("stage", append=True)
        served = server.get_json("/metrics", timeout=30)["requests"]
        # A second experiment asking the same teacher the same things makes no requests.
        spec2 = write_spec(tmp_path / "r2.yaml", name="r2", output_dir=str(tmp_path / "out2"),
                           tasks=[task], stages={"teach": stages["teach"]},
                           runtime={"threads": 1})  # fmt: skip
        assert cli("run", spec2, capsys=capsys)[0] == 0
        after = server.get_json("/metrics", timeout=30)["requests"]
        assert after.get("completions", 0) == served.get("completions", 0)
    finally:
        server.stop()
    runs = runs.reset_index("stage")
    teach = runs[runs.stage == "teach"].iloc[0]
    assert (teach.rationales_total, teach.rationales_kept, teach.requests) == (24, 24, 24)
    again = load_experiment_tables(spec2)[0].iloc[0]
    assert (again.requests, again.cached_requests) == (0, 24)
    students = runs[runs.stage == "students"]
    assert sorted(students.variant) == ["answers_only", "tinyllm"]
    for _, row in students.iterrows():
        assert 0 <= row.test_exact_match <= 1 and row.test_n == 8
        folder = Path(tmp_path / "out" / "runs" / row.run_id)
        assert len((folder / "predictions.jsonl").read_text().splitlines()) == 8
        assert (folder / "model" / "config.json").exists()
    tiny = students[students.variant == "tinyllm"].iloc[0]
    assert tiny.rationale_examples == 48  # 24 from the HTTP teacher, 24 gold
    base = runs[runs.stage == "base"].iloc[0]
    assert base.test_n == 8 and 0 <= base.test_exact_match <= 1


@pytest.mark.parametrize(
    ("task", "method", "message"),
    [
        ({"dataset": "gsm8k"}, {"name": "rationales"},
         "tasks.dataset: 'gsm8k' has no train split .it has: test.; this method needs train"),
        ({"dataset": "gsm8k"}, {"name": "rationale_distill", "teachers": []},
         "'gsm8k' has no train split"),
        ({"dataset": "gsm_symbolic"}, {"name": "evaluate", "prompt": "rationale_cot"},
         "params.prompt: 'rationale_cot' shows each problem's own answer"),
        ({"dataset": "gsm_symbolic", "train_size": 3}, {"name": "rationales", "shots": 3},
         "params.shots: 3 examples need more than task.train_size .3."),
        ({"dataset": "gsm_symbolic"}, {"name": "rationales", "prompt": "nope"},
         "params.prompt: unknown prompt 'nope'"),
        ({"dataset": "gsm_symbolic"}, {"name": "rationale_distill", "teachers": ["gold"],
                                       "alpha": [0.5, 0.5]},
         "params.alpha has 2 weights for 1 teacher"),
        ({"dataset": "gsm_symbolic"}, {"name": "rationale_distill", "keep_layers": [0, 30]},
         r"params.keep_layers \[0, 30\]: model smollm2-135m has blocks 0..29"),
    ],
)  # fmt: skip
def test_bad_math_experiments_are_one_line_at_spec_time(tmp_path, capsys, task, method, message):
    assert_spec_error(tmp_path, capsys, message, models=["smollm2-135m"], tasks=[task],
                      methods=[method])  # fmt: skip


def test_multiple_choice_rationale_distillation_through_the_grid(setup, tmp_path, capsys):
    """mcqa: an HTTP teacher explains the gold option, students learn letters and
    rationales, the base model answers few-shot; every answer is a letter of its options."""
    from helpers import write_mcqa_file

    from scalelab.data.mcqa import McqaTask, load_mcqa_splits
    from scalelab.testing import ServeProcess

    model, _ = setup
    data = write_mcqa_file(tmp_path / "qa.jsonl", 30, rationale=True)
    task = {"kind": "mcqa", "dataset": str(data), "train_size": 16, "validation_size": 4,
            "test_size": 6}  # fmt: skip
    server = ServeProcess(model, tmp_path / "serve.log", name="tiny", home=tmp_path / "h")
    try:
        server.wait(600)
        stages = {
            "teach": {"models": [f"{server.url}#tiny"], "methods": {
                "name": "rationales", "shots": 0, "max_tokens": 10, "consistency": "flag"}},
            "base": {"models": [str(model)], "methods": {"name": "evaluate", "prompt": "direct_mc",
                                                         "shots": 1}},
            "students": {"models": [str(model)], "methods": [
                {"name": "rationale_distill", "label": "tinyllm", "teachers": ["@teach", "gold"],
                 "epochs": 1, "batch_size": 8, "max_length": 200, "answer_tokens": 3}]},
        }  # fmt: skip
        spec = write_spec(tmp_path / "r.yaml", name="r", output_dir=str(tmp_path / "out"),
                          tasks=[task], stages=stages, runtime={"threads": 1})  # fmt: skip
        code, out, err = cli("run", spec, capsys=capsys)
        assert code == 0, err
    finally:
        server.stop()
    runs = load_experiment_tables(spec)[0]
    teach = runs[runs.stage == "teach"].iloc[0]
    assert (teach.rationales_total, teach.rationales_kept, teach.requests) == (16, 16, 16)
    teacher_rows = read_rationales(tmp_path / "out" / "runs" / teach.run_id).values()
    assert all(r["gold"] in "ABCD" and r["consistent"] == (r["found"] == r["gold"])
               for r in teacher_rows)  # fmt: skip
    splits = load_mcqa_splits(McqaTask(**{k: v for k, v in task.items() if k != "kind"}))
    gold = {q.id: q for q in splits["test"]}
    student = runs[runs.stage == "students"].iloc[0]
    assert student.test_n == 6 and student.rationale_examples == 32
    folder = tmp_path / "out" / "runs" / student.run_id
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows} == set(gold)
    for r in rows:
        q = gold[r["id"]]
        assert r["gold"] == q.answer and r["found"] in (None, *"ABCD"[: len(q.options)])
        assert r["correct"] == (r["found"] == q.answer)
    assert student.test_exact_match == pytest.approx(sum(r["correct"] for r in rows) / 6)
    assert student.test_no_answer == sum(r["found"] is None for r in rows)
    base = runs[runs.stage == "base"].iloc[0]
    assert base.test_n == 6 and base.shots == 1 and 0 <= base.test_exact_match <= 1


def test_a_prompt_edit_gives_new_run_ids(tmp_path):
    """The prompt's fingerprint is in the run id: a new version reruns, a description edit
    does not."""
    import yaml

    from scalelab.data.prompts import load_prompt
    from scalelab.grid.spec import expand, load_spec

    prompt = load_prompt("fewshot_cot").model_dump(mode="json")
    path = tmp_path / "p.yaml"

    def run_id(**change):
        path.write_text(yaml.safe_dump({**prompt, **change}))
        spec = write_spec(tmp_path / "s.yaml", name="s", output_dir=str(tmp_path / "out"),
                          models=["smollm2-135m"], tasks=[{"dataset": "gsm_symbolic"}],
                          methods=[{"name": "evaluate", "prompt": str(path)}])  # fmt: skip
        return expand(load_spec(spec))[0].run_id

    first = run_id()
    assert run_id(description="said otherwise") == first
    assert run_id(version=2) != first
    assert run_id(template=prompt["template"] + " ") != first
