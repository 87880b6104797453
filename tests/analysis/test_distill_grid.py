"""The distillation law on an experiment's own runs table: teachers found by run id, the
runs the law does not describe left out with a note, and the fit answering (c)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from test_distill_law import TEACHERS, synthetic_table

from scalelab.analysis.distill_grid import law_answer, law_rows


def experiment_table(sigma: float = 0.0) -> pd.DataFrame:
    """`synthetic_table` as `scalelab results` has it: teachers are `pretrain` runs with
    ids, each distilled run names its teacher in params.teachers (JSON text)."""
    df = synthetic_table(0, sigma)
    ids = {n: f"{i:016x}" for i, n in enumerate(TEACHERS, start=1)}
    rows = []
    for k, r in df.iterrows():
        base = {"run_id": f"{1000 + k:016x}", "status": "done", "task.seq_len": 128,
                "non_embedding_params": r["non_embedding_params"], "tokens": r["tokens"],
                "val_loss": r["val_loss"], "seed": 0}  # fmt: skip
        if np.isnan(r["teacher_loss"]):
            n = r["non_embedding_params"]
            is_teacher = n in ids and r["tokens"] == 20 * n
            rows.append({**base, "method": "pretrain",
                         **({"run_id": ids[n]} if is_teacher else {})})  # fmt: skip
        else:
            ref = json.dumps([f"run:{ids[r['teacher_n']]}"])
            rows.append({**base, "method": "distill", "params.teachers": ref})
    return pd.DataFrame(rows)


def test_teachers_are_read_from_their_own_rows_and_other_runs_are_left_out():
    runs = experiment_table()
    ensemble = runs[runs["method"] == "distill"].iloc[:2].assign(
        **{"params.teachers": json.dumps([f"run:{1:016x}", f"run:{2:016x}"])})  # fmt: skip
    cut = runs[runs["method"] == "pretrain"].iloc[:1].assign(**{"params.keep_layers": "[0]"})
    clf = runs[runs["method"] == "distill"].iloc[:1].assign(**{"task.seq_len": np.nan})
    rows, notes = law_rows(pd.concat([runs, ensemble, cut, clf], ignore_index=True), "val_loss")
    want = synthetic_table(0, 0.0)
    got = rows[rows["teacher_loss"].notna()]
    assert len(got) == want["teacher_loss"].notna().sum() == 60
    np.testing.assert_allclose(
        sorted(got["teacher_loss"]), sorted(want["teacher_loss"].dropna())
    )  # the teacher's own loss
    assert set(got["teacher_d"] / got["teacher_n"]) == {20.0}
    assert (rows["teacher_loss"].isna()).sum() == 19  # 15 students + 4 teachers, not the cut
    assert notes == ["2 distill run(s) left out: several teachers (the law takes one teacher loss)"]


def test_the_law_answers_the_smallest_student_per_teacher_or_says_why_not():
    runs = experiment_table(sigma=0.001)
    law = law_answer(runs, "val_loss", target=3.3, bootstrap=0)
    assert law.report is not None and law.why == ""
    assert law.report.holdout is not None and "largest student" in law.report.held_out
    smallest = law.report.answers["smallest"]
    assert smallest["target"] == 3.3 and len(smallest["rows"]) == len(TEACHERS)
    assert [row["N_S"]["value"] > 0 for row in smallest["rows"]] == [True] * len(TEACHERS)
    few = runs[~runs["params.teachers"].fillna("").str.contains(f"{3:016x}|{4:016x}")]
    law = law_answer(few, "val_loss", target=3.3, bootstrap=0)
    assert law.report is None and "too few teachers" in law.why and "2, need at least 3" in law.why


def test_results_files_carry_the_teacher_columns_the_fit_reads():
    from scalelab.analysis.distill_grid import with_teacher_columns

    runs = experiment_table()
    out = with_teacher_columns(runs)
    distilled = out["method"] == "distill"
    assert out.loc[distilled, "teacher_loss"].notna().all()
    assert out.loc[~distilled, ["teacher_loss", "teacher_n", "teacher_d"]].isna().all().all()
    scratch_only = runs[runs["method"] == "pretrain"]
    assert list(with_teacher_columns(scratch_only).columns) == list(scratch_only.columns)
