"""`distill` end to end: a teacher stage, then students with and without the KD term."""

from __future__ import annotations

import math

from helpers import cli, run_stages, write_spec

from scalelab.grid.api import load_experiment_tables


def test_students_learn_from_a_teacher_run_and_alpha_zero_is_pretraining(tmp_path, corpus, capsys):
    budget = {"tokens": 8 * 32 * 20, "batch_size": 8, "lr": 3e-3}
    stages = {
        "teacher": {"models": "gpt-d2", "methods": "pretrain",
                    "params": {**budget, "tokens": 8 * 32 * 60}},
        "student": {"models": "gpt-d1", "methods": [
            "pretrain",
            {"name": "distill", "teachers": ["@teacher"], "alpha": [0.0, 0.7]},
        ], "params": budget},
    }  # fmt: skip
    table = run_stages(tmp_path, corpus, stages, capsys)
    rows = {
        (r["stage"], r["method"], r["params.alpha"] if r["method"] == "distill" else None): r
        for r in table.to_dict("records")
    }
    teacher = rows[("teacher", "pretrain", None)]
    plain = rows[("student", "pretrain", None)]
    a0, a7 = rows[("student", "distill", 0.0)], rows[("student", "distill", 0.7)]
    assert all(r["status"] == "done" for r in (teacher, plain, a0, a7))
    # alpha 0: the same batches, init and dropout as pretraining, the teacher only watched
    assert a0["val_loss"] == plain["val_loss"] and a0["train_ce"] == plain["train_loss"]
    assert math.isfinite(a0["train_kd"]) and a0["train_kd"] > 0
    # alpha 0.7 trains towards the teacher: its KD term ends lower than the watcher's
    assert a7["val_loss"] != plain["val_loss"] and a7["train_kd"] < a0["train_kd"]


def test_a_distilgpt2_style_student_is_cut_from_its_teacher(tmp_path, corpus, capsys):
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 1000}}  # fmt: skip
    stages = {
        "teacher": {"models": "gpt-d4", "methods": "pretrain", "params": {"tokens": 8 * 32 * 30}},
        "student": {"models": "@teacher", "methods": "distill", "params": {
            "tokens": 8 * 32 * 10, "teachers": ["@teacher"], "keep_layers": "every_other"}},
    }  # fmt: skip
    spec = write_spec(tmp_path / "cut.yaml", name="cut", output_dir=str(tmp_path / "out"),
                      tasks=task, stages=stages, params={"batch_size": 8},
                      runtime={"threads": 1})  # fmt: skip
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0, out
    table, _ = load_experiment_tables(spec)
    teacher, student = (table[table["stage"] == s].iloc[0] for s in ("teacher", "student"))
    block = 12 * 128 * 128 + 13 * 128  # one gpt-d4 block: attention, MLP, 2 LayerNorms
    assert teacher["non_embedding_params"] - student["non_embedding_params"] == 2 * block
    assert student["status"] == "done" and student["model"] == f"run:{teacher['run_id']}"


def test_cutting_blocks_from_an_untrained_ladder_model_is_a_spec_error(tmp_path, corpus, capsys):
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"}}
    spec = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"),
                      models="gpt-d2", tasks=task, methods="pretrain",
                      params={"tokens": 8 * 32 * 4, "batch_size": 8, "keep_layers": [0]})  # fmt: skip
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and err.startswith("error: params.keep_layers cuts a trained model's blocks")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_teacher_outputs_are_computed_once_and_read_back_exactly(tmp_path, corpus, capsys):
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 1000}}  # fmt: skip
    steps = 12

    def student_rows(out: str, **kd) -> dict:
        stages = {
            "teacher": {"models": "gpt-d2", "methods": "pretrain",
                        "params": {"tokens": 8 * 32 * 30}},
            "student": {"models": "gpt-d1", "params": {"tokens": 8 * 32 * steps},
                        "methods": {"name": "distill", "teachers": ["@teacher"], "top_k": 8,
                                    **kd}},
        }  # fmt: skip
        spec = write_spec(tmp_path / f"{out}.yaml", name="c", output_dir=str(tmp_path / out),
                          tasks=task, stages=stages, params={"batch_size": 8},
                          runtime={"threads": 1})  # fmt: skip
        code, text, _ = cli("run", spec, capsys=capsys)
        assert code == 0, text
        table, _ = load_experiment_tables(spec)
        return table[table["stage"] == "student"].set_index("params.alpha").to_dict("index")

    # one seed, an alpha sweep: the same batches at every step, so the second run reads all
    cached = student_rows("cached", alpha=[0.5, 0.9])
    assert (cached[0.5]["teacher_batches_computed"], cached[0.5]["teacher_batches_cached"]) == (
        steps, 0)  # fmt: skip
    assert (cached[0.9]["teacher_batches_computed"], cached[0.9]["teacher_batches_cached"]) == (
        0, steps)  # fmt: skip
    live = student_rows("live", alpha=0.9, cache_teacher_outputs=False)[0.9]
    assert (live["teacher_batches_computed"], live["teacher_batches_cached"]) == (steps, 0)
    assert live["run_id"] == cached[0.9]["run_id"]  # caching is not part of what a run is
    for metric in ("val_loss", "train_kd", "train_ce"):  # and it changes nothing
        assert live[metric] == cached[0.9][metric]


def test_a_classifier_student_learns_from_a_fine_tuned_teacher(tmp_path, capsys):
    from helpers import save_tiny, write_dataset

    teacher_model = save_tiny(tmp_path / "bert2", "bert")
    student_model = save_tiny(tmp_path / "bert1", "bert", n_layer=1)
    data = write_dataset(tmp_path / "data.jsonl", n=90)
    tune = {"epochs": 2, "batch_size": 8, "lr": 1e-3}
    stages = {
        "teacher": {"models": str(teacher_model), "methods": "full", "params": tune},
        "student": {"models": str(student_model), "params": tune, "methods": [
            "full", {"name": "distill", "teachers": ["@teacher"], "alpha": [0.0, 0.7]}]},
    }  # fmt: skip
    spec = write_spec(tmp_path / "c.yaml", name="c", output_dir=str(tmp_path / "out"),
                      tasks={"dataset": str(data), "kind": "classification", "max_length": 16},
                      stages=stages, runtime={"threads": 1})  # fmt: skip
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0, out
    table, _ = load_experiment_tables(spec)
    s = table[table["stage"] == "student"]
    plain = s[s["method"] == "full"].iloc[0]
    a0 = s[(s["method"] == "distill") & (s["params.alpha"] == 0.0)].iloc[0]
    a7 = s[(s["method"] == "distill") & (s["params.alpha"] == 0.7)].iloc[0]
    # alpha 0 is full fine-tuning exactly; the teachers' soft labels change the student
    assert a0["val_loss"] == plain["val_loss"] and a0["test_accuracy"] == plain["test_accuracy"]
    assert a7["val_loss"] != plain["val_loss"] and a7["train_kd"] < a0["train_kd"]


def test_a_classifier_cannot_learn_from_another_datasets_teacher(tmp_path, capsys):
    from helpers import save_tiny, write_dataset

    model = save_tiny(tmp_path / "bert", "bert")
    a, b = write_dataset(tmp_path / "a.jsonl"), write_dataset(tmp_path / "b.jsonl", n=63)
    stages = {
        "teacher": {"models": str(model), "methods": "full",
                    "tasks": {"dataset": str(b), "kind": "classification"}},
        "student": {"models": str(model), "methods": {"name": "distill",
                                                      "teachers": ["@teacher"]}},
    }  # fmt: skip
    spec = write_spec(tmp_path / "x.yaml", name="x", output_dir=str(tmp_path / "out"),
                      tasks={"dataset": str(a), "kind": "classification"}, stages=stages)  # fmt: skip
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "the labels must match" in err and not (tmp_path / "out").exists()
