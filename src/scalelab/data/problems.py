"""Problems with answers and rationales, whatever their task kind: one entry point.

The rationale methods (`rationales`, `rationale_distill`, `evaluate` with a prompt) read
`Problem`s (`data/math_data.py`) of two task kinds: `math` (word problems, a number as the
answer) and `mcqa` (multiple choice, an option letter as the answer; `data/mcqa.py`).
"""

from __future__ import annotations

from scalelab.data.math_data import Problem


def load_problems(task) -> dict[str, list[Problem]]:
    """split -> problems of a math or mcqa task (`load_math_splits` / `load_mcqa_splits`)."""
    if task.kind == "mcqa":
        from scalelab.data.mcqa import load_mcqa_splits

        return load_mcqa_splits(task)
    from scalelab.data.math_data import load_math_splits

    return load_math_splits(task)


def problem_splits(task) -> list[str]:
    """The splits the task's runs will have, known at spec time (no data read)."""
    if task.kind == "mcqa":
        from scalelab.data.mcqa import task_splits
    else:
        from scalelab.data.math_data import task_splits
    return task_splits(task)


def train_size(task) -> int | None:
    """Training problems the task will have, when known at spec time (else None)."""
    if task.kind == "mcqa":
        from scalelab.data.mcqa import one_split_size

        cut = one_split_size(task.dataset) is not None  # a folder's splits: a cap only
        return task.size("train") if cut else task.train_size
    from scalelab.data.math_data import DEFAULT_SIZES

    if task.dataset == "gsm_symbolic":
        return task.train_size or DEFAULT_SIZES["train"]
    return task.train_size


def gold_rationale_gap(task) -> str | None:
    """Why the task's training problems lack gold rationales; None when each has one (math:
    always)."""
    if task.kind == "mcqa":
        from scalelab.data.mcqa import gold_rationale_gap as mcqa_gap

        return mcqa_gap(task)
    return None
