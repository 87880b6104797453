"""Multiple choice answered in writing (task kind `mcqa`): splits cut from one labelled
split, local files, and bad input as one line at spec time."""

from __future__ import annotations

import json
import re

import pytest
from helpers import assert_spec_error, cli, write_mcqa_file, write_spec

from scalelab.data.mcqa import CATALOG, LETTERS, McqaTask, load_mcqa_splits
from scalelab.data.tasks import parse_task


@pytest.mark.parametrize("dataset", sorted(CATALOG))
def test_catalog_splits_are_disjoint_deterministic_and_stable_in_train_size(dataset):
    task = parse_task({"kind": "mcqa", "dataset": dataset, "train_size": 30, "test_size": 20,
                       "validation_size": 10}, "tasks[0]")  # fmt: skip
    splits = load_mcqa_splits(task)
    assert {s: len(q) for s, q in splits.items()} == {"train": 30, "validation": 10, "test": 20}
    ids = [q.id for qs in splits.values() for q in qs]
    assert len(set(ids)) == 60 and len({q.question for qs in splits.values() for q in qs}) >= 59
    for q in splits["test"]:
        assert 2 <= len(q.options) <= 5 and q.answer in LETTERS[: len(q.options)]
        lines = q.question.splitlines()
        assert lines[-len(q.options) :] == [f"({LETTERS[i]}) {o}" for i, o in enumerate(q.options)]
        assert q.rationale == ""  # the catalog datasets have no explanations
    more = load_mcqa_splits(task.model_copy(update={"train_size": 40}))
    assert more["test"] == splits["test"] and more["validation"] == splits["validation"]
    assert more["train"][:30] == splits["train"]  # a bigger train split only adds
    other = load_mcqa_splits(task.model_copy(update={"data_seed": 1}))
    assert [q.id for q in other["test"]] != [q.id for q in splits["test"]]


def test_openbookqa_questions_keep_their_gold_option():
    """The letter points at the option the dataset marks correct (its answerKey)."""
    from scalelab.data import catalog

    entry = catalog.get_dataset("openbookqa")
    docs = entry.read(catalog.fetch_files(entry))["test"]
    task = McqaTask(dataset="openbookqa", test_size=50, validation_size=1, train_size=1)
    for q in load_mcqa_splits(task)["test"]:
        doc = docs[int(q.id.split("/")[1])]
        assert q.answer == doc["answerKey"]
        assert (
            q.options[LETTERS.index(q.answer)]
            == doc["choices"]["text"][doc["choices"]["label"].index(doc["answerKey"])].strip()
        )


def test_a_local_file_is_cut_and_a_folder_is_used_as_it_is(tmp_path):
    one = write_mcqa_file(tmp_path / "qa.jsonl", 30, rationale=True)
    splits = load_mcqa_splits(McqaTask(dataset=str(one), train_size=20, validation_size=4,
                                       test_size=6))  # fmt: skip
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [20, 4, 6]
    rows = [json.loads(line) for line in one.read_text().splitlines()]
    for q in splits["train"]:
        row = rows[int(q.id.split("/")[1])]
        gold = row["answer"] if isinstance(row["answer"], int) else LETTERS.index(row["answer"])
        assert q.answer == LETTERS[gold] and q.rationale == row["rationale"]
    folder = tmp_path / "f"
    folder.mkdir()
    for split, n in (("train", 7), ("test", 5)):
        write_mcqa_file(folder / f"{split}.jsonl", n)
    splits = load_mcqa_splits(McqaTask(dataset=str(folder), train_size=6))
    assert {s: len(q) for s, q in splits.items()} == {"train": 6, "test": 5}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "Q", "choices": ["a"], "answer": 0}', r"qa.jsonl:3: choices: expected 2 to 10"),
        ('{"question": "Q", "choices": ["a", "b"], "answer": "C"}',
         r"qa.jsonl:3: answer: 'C' is neither a letter A-B nor an index 0-1"),
        ('{"question": "", "choices": ["a", "b"], "answer": 1}', r"qa.jsonl:3: question:"),
        ('{"question": "Q", "choices": ["a", "b"], "answer": true}', r"qa.jsonl:3: answer:"),
        ("not json", r"qa.jsonl:3: not valid JSON"),
    ],
)  # fmt: skip
def test_a_bad_local_record_is_one_line_at_spec_time(tmp_path, capsys, line, message):
    path = write_mcqa_file(tmp_path / "qa.jsonl", 2)
    path.write_text(path.read_text() + line + "\n")
    spec = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"),
                      models=["smollm2-135m"], tasks=[{"kind": "mcqa", "dataset": str(path)}],
                      methods=[{"name": "evaluate", "prompt": "direct_mc", "shots": 0}])  # fmt: skip
    code, _, err = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("task", "method", "message"),
    [
        ({"kind": "mcqa", "dataset": "openbookqa", "train_size": 400},
         {"name": "evaluate"}, r"\(650\) exceed the 500 labelled questions of openbookqa"),
        ({"kind": "mcqa", "dataset": "wikitext2"}, {"name": "evaluate"},
         r"tasks\[0\].kind: dataset 'wikitext2' is a lm dataset, not 'mcqa'"),
        ({"kind": "mcqa", "dataset": "boolq"}, {"name": "evaluate"},
         r"'boolq' is not a multiple-choice dataset with options to write"),
        ({"kind": "mcqa", "dataset": "piqa"}, {"name": "rationale_distill", "teachers": ["gold"]},
         r"params.teachers: 'gold' learns the dataset's own rationales, but 'piqa' has no gold "
         r"rationales"),
        ({"kind": "mcqa", "dataset": "piqa"}, {"name": "evaluate", "prompt": "rationale_mc"},
         r"params.prompt: 'rationale_mc' shows each problem's own answer"),
        ({"kind": "mcqa", "dataset": "piqa", "train_size": 4},
         {"name": "evaluate", "prompt": "direct_mc", "shots": 4},
         r"params.shots: 4 examples need more than task.train_size \(4\)"),
        ({"kind": "mcqa", "dataset": "piqa"}, {"name": "evaluate", "prompt": "fewshot_cot"},
         r"params.prompt: 'fewshot_cot' is written for math tasks, not mcqa \(built-in for "
         r"mcqa: direct_mc, fewshot_mc, rationale_mc\)"),
        ({"dataset": "gsm_symbolic"}, {"name": "evaluate", "prompt": "direct_mc"},
         r"'direct_mc' is written for mcqa tasks, not math"),
        ({"dataset": "piqa", "train_size": 8}, {"name": "evaluate"},
         r"tasks\[0\].train_size: not a key of a multiple_choice task; it is one of kind "
         r"mcqa: add `kind: mcqa`"),
        ({"dataset": "piqa", "kind": "mcq"}, {"name": "evaluate"},
         r"tasks\[0\].kind: unknown task kind 'mcq' \(known: .*mcqa"),
        ({"dataset": "piqa", "kind": "lm"}, {"name": "evaluate"},
         r"is a multiple_choice dataset, not 'lm' \(leave kind out, or kind: mcqa\)"),
        ({"kind": "mcqa", "dataset": "piqa"}, {"name": "rationales", "shots": 5},
         r"params.shots: 5, but prompt 'rationale_mc' has 4 written examples"),
    ],
)  # fmt: skip
def test_bad_mcqa_experiments_are_one_line_at_spec_time(tmp_path, capsys, task, method, message):
    assert_spec_error(tmp_path, capsys, message, models=["smollm2-135m"], tasks=[task],
                      methods=[method])  # fmt: skip


def test_drawn_shots_that_show_rationales_need_data_that_has_them(tmp_path, capsys):
    """A prompt of the user's (no task_kinds) showing drawn shots' rationales, on piqa."""
    import yaml

    from scalelab.data.prompts import load_prompt

    raw = load_prompt("rationale_cot").model_dump(mode="json")
    raw.update(task_kinds=[], name="mine")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(raw))
    spec = write_spec(tmp_path / "p.yaml", name="p", output_dir=str(tmp_path / "out"),
                      models=["smollm2-135m"], tasks=[{"kind": "mcqa", "dataset": "piqa"}],
                      methods=[{"name": "rationales", "prompt": str(tmp_path / "mine.yaml")}])  # fmt: skip
    code, _, err = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert ("params.prompt: 'mine' shows worked examples drawn from the training problems, "
            "but 'piqa' has no gold rationales") in err  # fmt: skip


def test_gold_needs_a_rationale_on_every_training_record(tmp_path, capsys):
    path = write_mcqa_file(tmp_path / "qa.jsonl", 20, rationale=True)
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])
    del row["rationale"]
    path.write_text("\n".join([*lines[:3], json.dumps(row), *lines[4:]]) + "\n")
    task = {"kind": "mcqa", "dataset": str(path), "train_size": 12, "validation_size": 4,
            "test_size": 4}  # fmt: skip
    order = [q.id for q in load_mcqa_splits(McqaTask(**{k: v for k, v in task.items()
                                                        if k != "kind"}))["train"]]  # fmt: skip
    spec = write_spec(tmp_path / "g.yaml", name="g", output_dir=str(tmp_path / "out"),
                      models=["smollm2-135m"], tasks=[task],
                      methods=[{"name": "rationale_distill", "teachers": ["gold"]}])  # fmt: skip
    code, _, err = cli("run", spec, "--dry-run", capsys=capsys)
    if "qa/3" not in order:  # the record without one went to validation or test: fine
        assert code == 0, err
        return
    assert code == 2 and err.count("\n") == 1, err
    assert "params.teachers: 'gold' learns the dataset's own rationales, but 1 of 12 " in err
    assert "(the first: question qa/3, counted from 0)" in err


def test_a_catalog_multiple_choice_dataset_is_mcqa_only_when_asked():
    assert parse_task({"dataset": "openbookqa"}, "t").kind == "multiple_choice"
    assert parse_task({"dataset": "openbookqa", "kind": "mcqa"}, "t").kind == "mcqa"
