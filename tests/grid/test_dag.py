"""Multi-stage specs: references to earlier stages, stage order, run ids that hash inputs."""

from __future__ import annotations

import pytest
from helpers import write_spec

from scalelab.errors import ScalelabError
from scalelab.grid.spec import expand, load_spec

TASK = {"dataset": "wikitext2", "seq_len": 32, "tokenizer": {"kind": "byte"}}


def dag(tmp_path, stages, **over):
    fields = {"name": "d", "output_dir": str(tmp_path / "out"), "tasks": TASK,
              "params": {"tokens": 4096}, "stages": stages, **over}  # fmt: skip
    return expand(load_spec(write_spec(tmp_path / "s.yaml", **fields)))


TEACHER_STUDENTS = {
    "students": {"models": "@teacher", "methods": "pretrain", "params": {"lr": [1e-3, 3e-3]}},
    "teacher": {"models": ["gpt-d1", "gpt-d2"], "methods": "pretrain"},
}


def test_references_expand_per_upstream_run_and_order_stages(tmp_path):
    runs = dag(tmp_path, TEACHER_STUDENTS)
    teachers = [r for r in runs if r.stage == "teacher"]
    students = [r for r in runs if r.stage == "students"]
    assert [r.stage for r in runs] == ["teacher"] * 2 + ["students"] * 4  # deps first
    assert len(students) == 2 * 2  # one per teacher run x lr
    for s in students:
        (dep,) = s.deps
        assert dep in {t.run_id for t in teachers}
        assert s.model.kind == "run" and s.model.run_id == dep
        assert s.model.path == str(tmp_path / "out" / "runs" / dep / "model")
        assert s.config["model"] == f"run:{dep}"
    assert {s.model.name for s in students} == {"@teacher:gpt-d1", "@teacher:gpt-d2"}


def test_changing_a_teacher_changes_its_students_ids_only(tmp_path):
    a = dag(tmp_path, TEACHER_STUDENTS)
    changed = {**TEACHER_STUDENTS, "teacher": {**TEACHER_STUDENTS["teacher"], "seeds": [1]}}
    b = dag(tmp_path, changed, description="x")
    assert not {r.run_id for r in a} & {r.run_id for r in b}
    # a third, independent stage keeps its ids when the teacher changes
    other = {"models": "gpt-d1", "methods": "pretrain", "params": {"lr": 5e-3}}
    c = dag(tmp_path, {**TEACHER_STUDENTS, "other": other})
    d = dag(tmp_path, {**changed, "other": other})
    pick = lambda runs: {r.run_id for r in runs if r.stage == "other"}  # noqa: E731
    assert pick(c) == pick(d) and len(pick(c)) == 1


def test_filters_select_upstream_runs(tmp_path):
    stages = {**TEACHER_STUDENTS, "students": {"models": "@teacher[model=gpt-d2]",
                                                "methods": "pretrain"}}  # fmt: skip
    runs = dag(tmp_path, stages)
    students = [r for r in runs if r.stage == "students"]
    assert [s.model.name for s in students] == ["@teacher:gpt-d2"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ({"a": {"models": "@b", "methods": "pretrain"},
          "b": {"models": "@a", "methods": "pretrain"}}, "stages form a cycle: a -> b -> a"),
        ({"a": {"models": "@nope", "methods": "pretrain"}}, "stages.a.models[0]: unknown stage"),
        ({"a": {"models": "gpt-d1", "methods": "pretrain"},
          "b": {"models": "@a[model=gpt-d9]", "methods": "pretrain"}}, "matches no run"),
        ({"a": {"models": "gpt-d1", "methods": "pretrain"},
          "b": {"models": "@a[model]", "methods": "pretrain"}}, "bad filter"),
        ({"a": {"models": "gpt-d1"}}, "stages.a.methods: field required"),
    ],
)  # fmt: skip
def test_bad_dags_are_spec_errors(tmp_path, stages, message):
    with pytest.raises(ScalelabError, match=message.replace("[", r"\[")):
        dag(tmp_path, stages)


def test_cli_rejects_a_cycle_with_exit_2_and_writes_nothing(tmp_path, capsys):
    from helpers import cli

    spec = write_spec(
        tmp_path / "s.yaml", name="d", output_dir=str(tmp_path / "out"), tasks=TASK,
        params={"tokens": 4096},
        stages={"a": {"models": "@b", "methods": "pretrain"},
                "b": {"models": "@a", "methods": "pretrain"}},
    )  # fmt: skip
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "cycle" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
