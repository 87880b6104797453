"""Small helpers the command modules share: input-file and output-folder checks, and
JSON-safe numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scalelab.errors import ScalelabError, shown


def jsonable(obj: Any) -> Any:
    """JSON has no NaN/inf: NaN -> null, inf -> "inf"/"-inf"; numpy scalars -> floats."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def g(v: Any, spec: str = ".4g") -> str:
    """Format a number that `jsonable` may have turned into None (NaN) or "inf"."""
    return format(v, spec) if isinstance(v, (int, float)) else ("n/a" if v is None else str(v))


def input_file(path: Path, what: str) -> Path:
    """`path`, if it names a regular file. Raises ScalelabError naming `what` and the path
    for anything else: a FIFO would block the read forever, and a NUL byte or an over-long
    name would raise from the OS."""
    import stat

    from scalelab.config import check_path_text, stat_or_none

    try:
        info = stat_or_none(check_path_text(str(path)))
    except ValueError as err:
        raise ScalelabError(f"{what} {shown(str(path))}: {err}") from None
    if info is None:
        raise ScalelabError(f"{what} {shown(str(path))} not found")
    if not stat.S_ISREG(info.st_mode):
        raise ScalelabError(f"{what} {shown(str(path))} is not a regular file")
    return path


def output_folder(path: Path, what: str = "--out") -> Path:
    """`path`, if files can be written there (the checks of a spec's output_dir: no NUL,
    no over-long name, not in a system folder, not a file, writable). Raises ScalelabError
    naming `what`."""
    from scalelab.grid.spec import check_output_dir

    try:
        check_output_dir(str(path))
    except ValueError as err:
        raise ScalelabError(f"{what}: {err} (got {shown(str(path))})") from None
    return path


def stored_tables(exp: Any, spec: Path) -> tuple[Any, Any]:
    """(runs, curves) of an opened experiment (`grid.api.open_experiment`). Raises
    ScalelabError when nothing is stored yet (never run, or run with another output_dir:
    a relative one is relative to where scalelab runs)."""
    runs, curves = exp.tables()
    if runs.empty:
        raise ScalelabError(f"no results yet for {spec} (run `scalelab run {spec}` first)")
    return runs, curves
