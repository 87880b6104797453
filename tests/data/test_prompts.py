"""Versioned prompt files: rendering, fingerprints, strict loading, few-shot draws."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from scalelab.data.math_data import Problem
from scalelab.data.prompts import (
    PROMPTS_DIR,
    PromptTemplate,
    choose_shots,
    list_prompts,
    load_prompt,
)
from scalelab.errors import ScalelabError

SHOTS = [
    Problem("s1", "Tom has 2 cats and gets 3 more. How many?", "2 + 3 = 5.", "5"),
    Problem("s2", "A pen costs $4. What do 3 pens cost?", "3 * 4 = 12 dollars.", "12"),
]
PROBLEM = Problem("p1", "Ann has 10 eggs and uses 4. How many are left?", "10 - 4 = 6.", "6")


def test_rationale_cot_renders_exactly():
    prompt = load_prompt("rationale_cot")
    assert (prompt.stop, prompt.shots, prompt.max_tokens) == (("\n\nQuestion:",), 4, 256)
    assert prompt.render(PROBLEM) == (
        "Question: Ann has 10 eggs and uses 4. How many are left?\n"
        "Answer: 6\n"
        "Explanation: Let's think step by step."
    )
    assert prompt.render(PROBLEM, SHOTS) == (
        "Question: Tom has 2 cats and gets 3 more. How many?\n"
        "Answer: 5\n"
        "Explanation: Let's think step by step. 2 + 3 = 5.\n\n"
        "Question: A pen costs $4. What do 3 pens cost?\n"
        "Answer: 12\n"
        "Explanation: Let's think step by step. 3 * 4 = 12 dollars.\n\n"
        "Question: Ann has 10 eggs and uses 4. How many are left?\n"
        "Answer: 6\n"
        "Explanation: Let's think step by step."
    )


def test_fewshot_cot_renders_exactly():
    prompt = load_prompt("fewshot_cot")
    assert (prompt.stop, prompt.shots, prompt.max_tokens) == (("\n\nQuestion:",), 4, 256)
    question = SimpleNamespace(question=PROBLEM.question)  # no answer needed to ask
    assert prompt.render(question) == (
        "Question: Ann has 10 eggs and uses 4. How many are left?\nAnswer:"
    )
    shots = [{"question": s.question, "rationale": s.rationale, "answer": s.answer} for s in SHOTS]
    assert prompt.render(PROBLEM, shots) == (
        "Question: Tom has 2 cats and gets 3 more. How many?\n"
        "Answer: 2 + 3 = 5. The answer is 5.\n\n"
        "Question: A pen costs $4. What do 3 pens cost?\n"
        "Answer: 3 * 4 = 12 dollars. The answer is 12.\n\n"
        "Question: Ann has 10 eggs and uses 4. How many are left?\n"
        "Answer:"
    )


def test_render_names_a_missing_field():
    prompt = load_prompt("rationale_cot")
    with pytest.raises(ScalelabError, match="rationale_cot.*answer"):
        prompt.render(SimpleNamespace(question="q"))
    with pytest.raises(ScalelabError, match="rationale"):
        prompt.render(PROBLEM, [SimpleNamespace(question="q", answer="1")])


def test_every_builtin_loads_under_its_file_name():
    names = list_prompts()
    assert {"rationale_cot", "fewshot_cot"} <= set(names)
    for name in names:
        prompt = load_prompt(name)
        assert prompt.name == name and prompt.version >= 1 and prompt.stop
        assert len(prompt.fingerprint) == 64
        assert load_prompt(str(PROMPTS_DIR / f"{name}.yaml")) == prompt


def test_fingerprint_follows_what_changes_output():
    base = load_prompt("fewshot_cot")
    print_same = base.model_copy(update={"description": "other words"})
    assert print_same.fingerprint == base.fingerprint
    for change in (
        {"version": 2},
        {"template": base.template + " "},
        {"stop": ("\n\n",)},
        {"max_tokens": 128},
        {"shots": 8},
        {"name": "other"},
    ):
        assert base.model_copy(update=change).fingerprint != base.fingerprint, change


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


GOOD = 'name: mine\nversion: 1\ntemplate: "Q: {{ question }}\\nA:"\nstop: ["\\n"]\n'


def test_a_prompt_file_loads_from_a_path(tmp_path):
    prompt = load_prompt(str(_write(tmp_path, GOOD)))
    assert isinstance(prompt, PromptTemplate)
    assert prompt.render(PROBLEM) == f"Q: {PROBLEM.question}\nA:"
    assert (prompt.shots, prompt.max_tokens, prompt.description) == (4, 256, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "temperature: 0.7\n", r"mine\.yaml: temperature: unknown key"),
        (GOOD.replace("version: 1\n", ""), r"mine\.yaml: version: Field required"),
        (GOOD.replace("version: 1", "version: 0"), r"mine\.yaml: version"),
        (GOOD.replace("version: 1", "version: true"), r"mine\.yaml: version"),
        (GOOD + "shots: -1\n", r"mine\.yaml: shots"),
        (GOOD.replace("{{ question }}", "{{ questoin }}"), r"mine\.yaml: template: .*questoin"),
        (GOOD.replace("{{ question }}", "{% if %}"), r"mine\.yaml: template: template error"),
        (GOOD.replace('["\\n"]', '[""]'), r"mine\.yaml: stop: .*empty"),
        ("- just\n- a list\n", r"mine\.yaml: expected a mapping"),
        (GOOD + "name: again\n", r"mine\.yaml: invalid YAML.*duplicate key"),
    ],
)
def test_bad_prompt_files_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ScalelabError, match=message):
        load_prompt(str(_write(tmp_path, text)))


def test_unknown_names_and_missing_files():
    with pytest.raises(ScalelabError, match="unknown prompt 'nope'.*rationale_cot"):
        load_prompt("nope")
    with pytest.raises(ScalelabError, match="cannot read prompt file .*absent.yaml"):
        load_prompt("/no/such/absent.yaml")


def test_choose_shots_is_deterministic_and_never_the_problem():
    pool = [Problem(f"q{i}", f"question {i}", "r", str(i)) for i in range(20)]
    first = choose_shots(pool, 4, seed=1234)
    assert first == choose_shots(pool, 4, seed=1234)
    assert len({p.id for p in first}) == 4
    assert choose_shots(pool, 4, seed=99) != first
    assert choose_shots(pool, 0, seed=1) == []
    # the problem itself is never a shot; a problem that is not drawn gets the same shots
    outside = next(p for p in pool if p not in first)
    assert choose_shots(pool, 4, seed=1234, exclude_id=outside.id) == first
    for p in pool:
        shots = choose_shots(pool, 4, seed=1234, exclude_id=p.id)
        assert len(shots) == 4 and p.id not in {s.id for s in shots}
    dup = [*pool[:3], pool[0], pool[0]]  # the excluded id several times
    assert pool[0] not in choose_shots(dup, 2, seed=0, exclude_id="q0")


def test_choose_shots_refuses_a_small_pool():
    pool = SHOTS + [PROBLEM]
    assert len(choose_shots(pool, 3, seed=0)) == 3
    with pytest.raises(ScalelabError, match="3 shots.*only 2 problems besides 'p1'"):
        choose_shots(pool, 3, seed=0, exclude_id="p1")
    with pytest.raises(ScalelabError, match=">= 0"):
        choose_shots(pool, -1, seed=0)


MC = Problem("m1", "What do plants need to grow?\n(A) light\n(B) noise", "", "A",
             options=("light", "noise"))  # fmt: skip


def test_written_examples_are_the_shots_in_order_whatever_the_pool():
    prompt = load_prompt("rationale_mc")
    assert len(prompt.examples) == 4 and prompt.shows_answer and prompt.uses_rationales
    shots = prompt.shots_for(2, pool=[], seed=7, exclude_id=None)
    assert [s["answer"] for s in shots] == ["A", "B"]
    assert prompt.shots_for(2, pool=SHOTS, seed=99, exclude_id="s1") == shots
    text = prompt.render(MC, shots)
    assert text.endswith("Question: What do plants need to grow?\n(A) light\n(B) noise\n"
                         "Answer: (A)\nExplanation: Let's think step by step.")  # fmt: skip
    assert text.count("So the answer is (") == 2
    with pytest.raises(ScalelabError, match="5 shots asked for, but it has 4 examples"):
        prompt.shots_for(5, pool=[], seed=0, exclude_id=None)


def test_examples_are_part_of_the_fingerprint_and_checked_against_shots():
    prompt = load_prompt("fewshot_mc")
    assert not prompt.shows_answer
    edited = [*prompt.examples]
    edited[0] = edited[0].model_copy(update={"rationale": "Another explanation."})
    assert prompt.model_copy(update={"examples": tuple(edited)}).fingerprint != prompt.fingerprint
    raw = prompt.model_dump()
    with pytest.raises(ValueError, match="shots: 5 but only 4 examples"):
        PromptTemplate(**{**raw, "shots": 5})
