"""`scalelab eval --models models.yaml --tasks tasks.yaml` (llm-line's format, read as is)."""

from __future__ import annotations

import pytest
import yaml
from helpers import cli, save_tiny, write_mc_task

from scalelab.grid.api import load_experiment_tables


@pytest.fixture
def files(tmp_path):
    model = save_tiny(tmp_path / "tiny", "gpt2")
    task = write_mc_task(tmp_path / "tasks", "words", n=12)
    corpus = tmp_path / "val.txt"
    corpus.write_text("\n".join("the cat sat on the mat" for _ in range(200)))
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": [{
        "name": str(model), "cls": "hf", "batch_size": 4, "device": "cpu",
        "architecture": "GPT", "dataset": "toy", "dataset_version": "v1",
        "dataset_size": "0 tokens"}]}))  # fmt: skip
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({
        "task_configs": {str(task): {"shots": [0, 2]}},
        "validation_configs": {"toyval": {"path": str(corpus), "batch_size": 2,
                                          "max_seq_len": 32, "max_steps": 5}},
    }))  # fmt: skip
    return models, tasks, tmp_path / "out"


def test_every_model_task_and_shot_count_once_then_skipped(files, capsys):
    models, tasks, out = files
    code, text, err = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                          "--quiet", capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert "3 done, 0 failed" in text and "words" in text and "toyval" in text
    runs = load_experiment_tables(out / "eval.yaml")[0]  # the written spec reads back
    assert len(runs) == 3 and set(runs.status) == {"done"}
    mc = runs[runs["task.kind"] == "multiple_choice"]
    assert sorted(mc["params.shots"]) == [0, 2] and (mc.n_questions == 12).all()
    lm = runs[runs["task.kind"] == "lm"].iloc[0]
    assert 0 < lm.val_loss < 10 and lm.val_loss == lm.test_loss  # the whole file, scored once
    assert "architecture=GPT" in (out / "eval.yaml").read_text()  # labels kept, as words
    code, text, _ = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                        "--quiet", capsys=capsys)  # fmt: skip
    assert code == 0 and "0 done" in text and "3 already done" in text


@pytest.mark.parametrize(
    ("which", "content", "field"),
    [
        ("models", {"models": [{"name": "x", "batch_sz": 4}]}, "batch_sz"),
        ("models", {"models": []}, "models"),
        ("models", {"models": [{"name": "no-such-model-anywhere"}]}, "no-such-model-anywhere"),
        ("tasks", {"task_configs": {"no_such_task": {"shots": [0]}}}, "no_such_task"),
        ("tasks", {"task_configs": {"piqa": {"shots": [-1]}}}, "shots"),
        ("tasks", {"tasks": {"piqa": {}}}, "tasks"),
    ],
)
def test_bad_files_are_one_line_and_write_nothing(files, capsys, which, content, field):
    models, tasks, out = files
    (models if which == "models" else tasks).write_text(yaml.safe_dump(content))
    code, _, err = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                       capsys=capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and field in err, err
    assert not out.exists()


def test_dry_run_lists_the_runs_and_writes_nothing(files, capsys):
    models, tasks, out = files
    code, text, _ = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                        "--dry-run", capsys=capsys)  # fmt: skip
    assert code == 0 and text.count("pending") == 3 and "3 to run" in text
    assert not out.exists()


def test_llm_line_task_names_and_all_unknown_ones_at_once(files, capsys):
    models, tasks, out = files
    tasks.write_text(yaml.safe_dump({"task_configs": {
        "social_iqa": {"shots": [0]}, "hellaswag": {}, "winogrande": {}}}))  # fmt: skip
    code, _, err = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                       capsys=capsys)  # fmt: skip
    assert code == 2 and "'hellaswag', 'winogrande'" in err and "social_iqa" not in err
    assert err.startswith("error: tasks file: task_configs")


def test_a_failed_run_stays_failed_exits_1_until_retried(files, tmp_path, capsys):
    models, tasks, out = files
    broken = save_tiny(tmp_path / "broken", "gpt2")
    (broken / "model.safetensors").write_bytes(b"not weights")
    models.write_text(yaml.safe_dump({"models": [{"name": str(broken)}]}))
    tasks.write_text(yaml.safe_dump({"task_configs": {str(tmp_path / "tasks" / "words.yaml"): {}}}))
    args = ("eval", "--models", models, "--tasks", tasks, "--output-dir", out, "--quiet")
    code, text, _ = cli(*args, capsys=capsys)
    assert code == 1 and "1 failed" in text
    code, text, _ = cli(*args, capsys=capsys)  # a rerun says so and exits 1 again
    assert code == 1 and "1 failed before (kept; --retry-failed reruns)" in text
    code, text, _ = cli(*args, "--retry-failed", capsys=capsys)
    assert code == 1 and "1 failed," in text and "failed before" not in text


def test_another_evaluation_under_the_same_name_is_refused(files, tmp_path, capsys):
    models, tasks, out = files
    assert cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out, "--quiet",
               capsys=capsys)[0] == 0  # fmt: skip
    other = save_tiny(tmp_path / "other", "gpt2", n_layer=1)
    models.write_text(yaml.safe_dump({"models": [{"name": str(other)}]}))
    code, _, err = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                       capsys=capsys)  # fmt: skip
    assert code == 2 and "holds another evaluation" in err and "--name" in err
    code, _, _ = cli("eval", "--models", models, "--tasks", tasks, "--output-dir", out,
                     "--name", "other", "--quiet", capsys=capsys)  # fmt: skip
    assert code == 0 and (out / "other.yaml").exists()
