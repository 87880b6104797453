"""Multi-stage specs: references to earlier stages, stage order, run ids that hash inputs."""

from __future__ import annotations

import re

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


def test_filters_take_lists_null_and_numbers_as_yaml_values(tmp_path):
    cut = {"models": "gpt-d2", "methods": "pretrain",
           "params": {"keep_layers": [[0, 1], None], "lr": [1e-3, 3e-3]}}  # fmt: skip

    def picked(ref: str) -> list[tuple]:
        runs = dag(tmp_path, {"teacher": TEACHER_STUDENTS["teacher"], "cut": {
            **cut, "models": "@teacher[model=gpt-d2]"}, "next": {"models": ref,
            "methods": "pretrain"}})  # fmt: skip
        ups = {r.run_id: r for r in runs}
        return sorted((ups[r.model.run_id].params.keep_layers, ups[r.model.run_id].params.lr)
                      for r in runs if r.stage == "next")  # fmt: skip

    assert picked("@cut[params.keep_layers=[0, 1]]") == [([0, 1], 1e-3), ([0, 1], 3e-3)]
    assert picked("@cut[params.keep_layers=[0,1],params.lr=0.001]") == [([0, 1], 1e-3)]
    assert picked("@cut[params.keep_layers=null]") == [(None, 1e-3), (None, 3e-3)]
    assert picked("@cut[params.lr=3e-3, params.keep_layers=null]") == [(None, 3e-3)]


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
        ({"a": {"models": "gpt-d1", "methods": "pretrain"},
          "b": {"models": "@a[lr=0.003]", "methods": "pretrain"}},
         "no run of stage 'a' has 'lr' (keys: model, method, seed, or a results column such as "
         "params.lr"),
        ({"a": {"models": "gpt-d1"}}, "stages.a.methods: field required"),
    ],
)  # fmt: skip
def test_bad_dags_are_spec_errors(tmp_path, stages, message):
    with pytest.raises(ScalelabError, match=re.escape(message)):
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


# --- references inside method params (distillation teachers) ---

TEACHERS = {"teacher": {"models": ["gpt-d1", "gpt-d2"], "methods": "pretrain"}}


def students(runs):
    return [r for r in runs if r.stage == "student"]


def test_a_list_param_takes_every_matching_run_as_one_value(tmp_path):
    student = {"models": "gpt-d1", "methods": "distill", "params": {"teachers": ["@teacher"]}}
    runs = dag(tmp_path, {**TEACHERS, "student": student})
    teacher_ids = [r.run_id for r in runs if r.stage == "teacher"]
    (s,) = students(runs)  # a list-typed field: both teachers in one run, not an axis
    assert s.config["params"]["teachers"] == [f"run:{i}" for i in teacher_ids]
    assert [r.run_id for r in s.inputs["teachers"]] == teacher_ids and s.deps == tuple(teacher_ids)
    assert [r.name for r in s.inputs["teachers"]] == ["@teacher:gpt-d1", "@teacher:gpt-d2"]


def test_a_list_of_lists_is_an_axis_of_teacher_sets(tmp_path):
    sets = [["@teacher[model=gpt-d1]"], ["@teacher[model=gpt-d2]"], ["@teacher"]]
    student = {"models": "gpt-d1", "methods": "distill", "params": {"teachers": sets}}
    runs = dag(tmp_path, {**TEACHERS, "student": student})
    by_model = {r.model.name: r.run_id for r in runs if r.stage == "teacher"}
    got = sorted(tuple(x.name for x in s.inputs["teachers"]) for s in students(runs))
    assert got == sorted([("@teacher:gpt-d1",), ("@teacher:gpt-d2",),
                          ("@teacher:gpt-d1", "@teacher:gpt-d2")])  # fmt: skip
    for s in students(runs):
        assert set(s.deps) == {by_model[x.name.split(":")[1]] for x in s.inputs["teachers"]}


def test_changing_a_teacher_changes_the_students_that_learn_from_it(tmp_path):
    student = {"models": "gpt-d1", "methods": "distill",
               "params": {"teachers": [["@teacher[model=gpt-d1]"], ["@teacher[model=gpt-d2]"]]}}  # fmt: skip
    before = {r.inputs["teachers"][0].name: r.run_id for r in students(
        dag(tmp_path, {**TEACHERS, "student": student}))}  # fmt: skip
    teachers = {"teacher": {"models": ["gpt-d1", "gpt-d2"], "methods": "pretrain",
                            "params": {"lr": 1e-3}}}  # fmt: skip
    (tmp_path / "s.yaml").unlink()
    after = {r.inputs["teachers"][0].name: r.run_id for r in students(
        dag(tmp_path, {**teachers, "student": student}))}  # fmt: skip
    assert set(before) == set(after) and all(before[k] != after[k] for k in before)


GPT2_TEACHER = {"models": "gpt-d1", "methods": "pretrain", "params": {"tokens": 4096},
                "tasks": {**TASK, "tokenizer": {"kind": "gpt2"}}}  # fmt: skip
CLASSIFIER_TEACHER = {"models": "gpt-d1", "methods": "full",
                      "tasks": {"dataset": "trec", "max_length": 32}}  # fmt: skip


@pytest.mark.parametrize(
    ("teacher", "message"),
    [(GPT2_TEACHER, "uses tokenizer {'kind': 'gpt2'}"),
     (CLASSIFIER_TEACHER, "is a classification run")],
)  # fmt: skip
def test_distilling_across_vocabularies_is_a_spec_error(tmp_path, capsys, teacher, message):
    from helpers import cli

    student = {"models": "gpt-d1", "methods": "distill",
               "params": {"tokens": 4096, "teachers": ["@teacher"]}}  # fmt: skip
    fields = {"name": "d", "output_dir": str(tmp_path / "out"), "tasks": TASK,
              "stages": {"teacher": teacher, "student": student}}  # fmt: skip
    code, _, err = cli("run", write_spec(tmp_path / "s.yaml", **fields), capsys=capsys)
    assert code == 2 and message in err and "rationale" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# --- method labels and the report's reference cell ---

LABELLED = {
    **TEACHERS,
    "student": {
        "models": "gpt-d1",
        "params": {"lr": 5e-3},  # the `pretrain` entry is not the teacher run again
        "methods": [
            "pretrain",
            {"name": "distill", "label": "kd-d1", "teachers": ["@teacher[model=gpt-d1]"]},
            {"name": "distill", "label": "kd-both", "teachers": ["@teacher"]},
        ],
    },
}


def test_a_label_names_a_method_entry_in_tables_but_not_in_run_ids(tmp_path):
    from scalelab.grid.api import label, open_experiment, with_variants

    runs = dag(tmp_path, LABELLED)
    planned = open_experiment(tmp_path / "s.yaml").planned()
    plain = {**LABELLED["student"], "methods": [LABELLED["student"]["methods"][0]] + [
        {k: v for k, v in m.items() if k != "label"} for m in LABELLED["student"]["methods"][1:]]}  # fmt: skip
    unlabelled = dag(tmp_path, {**LABELLED, "student": plain})
    assert [r.run_id for r in runs] == [r.run_id for r in unlabelled]  # presentation only
    assert [r.variant for r in students(runs)] == ["pretrain", "kd-d1", "kd-both"]
    assert "distill:kd-both seed=0" in label(students(runs)[2])
    assert list(planned.columns[:5]) == ["run_id", "stage", "model", "method", "variant"]
    assert list(planned["variant"][-3:]) == ["pretrain", "kd-d1", "kd-both"]
    # without labels the table keeps its columns
    assert "variant" not in with_variants(planned.drop(columns="variant"), unlabelled)


@pytest.mark.parametrize(
    ("entry", "report", "message"),
    [
        ({"name": "distill", "label": "a b", "teachers": ["@teacher"]}, {},
         r"stages.student.methods\[0\].label: 'a b' is not a label"),
        ({"name": "distill", "label": "pretrain", "teachers": ["@teacher"]}, {},
         r"methods\[0\].label: 'pretrain' is another method's name"),
        ({"name": "distill", "label": "kd", "teachers": ["@teacher"]}, {"beats": "gpt-d1/kd2"},
         r"report.beats: no method or label 'kd2' in the grid \(it has: kd, pretrain\)"),
        ({"name": "distill", "label": "kd", "teachers": ["@teacher"]}, {"beats": "gpt-d9/pretrain"},
         r"report.beats: pretrain runs have no model 'gpt-d9' \(they have: gpt-d1, gpt-d2\)"),
    ],
)  # fmt: skip
def test_bad_labels_and_references_are_spec_errors(tmp_path, entry, report, message):
    with pytest.raises(ScalelabError, match=message):
        dag(tmp_path, {**TEACHERS, "student": {"models": "gpt-d1", "methods": [entry]}},
            report=report)  # fmt: skip


def test_a_reference_may_name_a_product_as_the_report_shows_it(tmp_path):
    stages = {**TEACHERS, "cut": {"models": "@teacher[model=gpt-d2]", "methods": "pretrain"}}
    for name in ("@teacher:gpt-d2", "gpt-d2 (stage teacher)", "gpt-d2"):
        assert dag(tmp_path, stages, report={"beats": f"{name}/pretrain"})
    with pytest.raises(ScalelabError, match=r"b.yaml: report.beats: write MODEL/METHOD, e.g. "
                       r"gpt-d6/pretrain \(got 'gpt-d1'\)$"):  # fmt: skip
        load_spec(write_spec(tmp_path / "b.yaml", name="b", models="gpt-d1", tasks=TASK,
                             methods="pretrain", report={"beats": "gpt-d1"}))  # fmt: skip


def test_a_label_names_one_method_and_a_twice_listed_run_is_located(tmp_path):
    reuse = {"models": "gpt-d1", "params": {"lr": 5e-3},
             "methods": [{"name": "pretrain", "label": "base"},
                         {"name": "distill", "label": "base", "teachers": ["@teacher"]}]}  # fmt: skip
    with pytest.raises(ScalelabError, match=r"label 'base' names entries of 2 methods "
                       r"\(distill, pretrain\): give each method its own labels"):  # fmt: skip
        dag(tmp_path, {**TEACHERS, "student": reuse})
    twice = {"models": "gpt-d1", "params": {"lr": 5e-3}, "methods": [
        {"name": "distill", "label": "a", "teachers": ["@teacher"]},
        {"name": "distill", "label": "b", "teachers": ["@teacher"]}]}  # fmt: skip
    with pytest.raises(ScalelabError, match=r"the grid lists the same run twice: \w{8} gpt-d1 "
                       r"distill:b seed=0 \(stage student\) is \w{8} gpt-d1 distill:a seed=0"):  # fmt: skip
        dag(tmp_path, {**TEACHERS, "student": twice})
    with pytest.raises(ScalelabError, match=r"report.metric: 'val_accuracy' is not a quality "
                       r"metric of pretrain"):  # fmt: skip
        dag(tmp_path, TEACHERS, report={"metric": "val_accuracy"})
    hidden = {**TEACHERS, "student": {**reuse, "methods": reuse["methods"][1:]}}
    with pytest.raises(ScalelabError, match=r"no method or label 'distill' in the grid \(its "
                       r"entries have labels: base; name one\)"):  # fmt: skip
        dag(tmp_path, hidden, report={"beats": "gpt-d1/distill"})


def test_references_in_an_axis_of_teacher_sets_order_the_stages(tmp_path):
    """A list of lists (`teachers: [["@t[model=a]"], ["@t[model=b]"]]`) names stage t too:
    the student stage runs after it whatever order the file lists them in."""
    sets = [["@teacher[model=gpt-d1]"], ["@teacher[model=gpt-d2]"]]
    student = {"models": "gpt-d1", "methods": {"name": "distill", "teachers": sets}}
    runs = dag(tmp_path, {"student": student, **TEACHERS})  # student listed first
    assert [r.stage for r in runs] == ["teacher", "teacher", "student", "student"]
