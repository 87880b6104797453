"""Math word problems with worked rationales (GSM8K style).

Each problem is `{"question": str, "rationale": str, "answer": str}`: GSM8K's answer field
is the rationale (with `<<a=b>>` calculator marks kept) then `#### <final answer>`.
"""

from __future__ import annotations

import json
from pathlib import Path

from scalelab.data import catalog
from scalelab.data.loaders import not_found_error, split_files
from scalelab.errors import ScalelabError

Problem = dict[str, str]


def parse_gsm8k(record: dict, where: str) -> Problem:
    """Split a GSM8K `answer` into rationale and final answer (commas dropped)."""
    try:
        question, full = record["question"], record["answer"]
        rationale, _, final = full.rpartition("####")
    except (KeyError, TypeError, AttributeError):
        raise ScalelabError(f"{where}: expected fields question and answer") from None
    if not rationale:
        raise ScalelabError(f"{where}: answer has no '#### <final answer>' line")
    return {
        "question": question.strip(),
        "rationale": rationale.strip(),
        "answer": final.strip().replace(",", ""),
    }


def _read(path: Path) -> list[Problem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScalelabError(f"cannot read {path}: {exc}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ScalelabError(f"{path}:{i}: not valid JSON") from None
            out.append(parse_gsm8k(record, f"{path}:{i}"))
    return out


def load_math(name_or_path: str) -> dict[str, list[Problem]]:
    """Problems per split, only the splits that exist (GSM8K offline: `test` only).

    A local `.jsonl` file counts as `test`; a local folder may hold train/validation/test
    `.jsonl` files.
    """
    if name_or_path in catalog.DATASETS:
        entry = catalog.get_dataset(name_or_path)
        if entry.kind != "math":
            raise ScalelabError(f"dataset {entry.name!r} is a {entry.kind} dataset, not math")
        files = catalog.fetch_files(entry)
        if "hub" in files:
            files = split_files(files["hub"], (".jsonl",))
        return {split: _read(path) for split, path in files.items()}
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return {s: _read(p) for s, p in split_files(path, (".jsonl",)).items()}
    if path.is_file():
        return {"test": _read(path)}
    raise not_found_error(name_or_path)
