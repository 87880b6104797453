"""Input checks for the fitters: every user mistake becomes one `ScalelabError` line.

The fitters themselves take clean numpy arrays; these helpers turn a results table (one row
per run) into such arrays and say precisely which column or law is the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.errors import ScalelabError

# Parameters per law; a fit needs strictly more points than parameters.
MIN_POINTS = {
    "power": 4,
    "pure-power": 3,
    "chinchilla": 6,
    "loss-to-loss": 3,
    "loss-to-loss-free": 5,
}

COMPUTE_COL = "compute"
N_CANDIDATES = ("non_embedding_params", "Size", "Model Size", "N")
D_CANDIDATES = ("tokens", "Tokens", "D")


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a results CSV; rows with an empty `Name` (flag rows in some published tables) go."""
    path = Path(path)
    if not path.is_file():
        raise ScalelabError(f"cannot read CSV {str(path)!r}: no such file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ScalelabError(f"cannot read CSV {str(path)!r}: {first}") from None
    if "Name" in df.columns:
        df = df[df["Name"].notna() & (df["Name"].astype(str).str.strip() != "")]
    return df.reset_index(drop=True)


def name_list(names: Sequence[Any], max_chars: int = 150) -> str:
    """`names` joined by commas, as many as fit in `max_chars` characters; a cut list ends
    in "... and K more (N in all)", so an error line (at most 299 characters) never hides
    that it is cut."""
    names = [str(n) for n in names]
    shown_, size = [], 0
    for n in names:
        if shown_ and size + len(n) + 2 > max_chars:
            break
        shown_.append(n)
        size += len(n) + 2
    if len(shown_) == len(names):
        return ", ".join(names)
    return f"{', '.join(shown_)}, ... and {len(names) - len(shown_)} more ({len(names)} in all)"


def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str = "") -> None:
    """Raise naming the first missing column (and what the table has instead: `name_list`,
    which says how many more when the list is cut)."""
    for col in cols:
        if col not in df.columns:
            ctx = f" for {what}" if what else ""
            raise ScalelabError(
                f"missing column {col!r}{ctx} (table has: {name_list(list(df.columns))})"
            )


def as_text(values: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Values as strings with missing ones as "nan", for grouping and comparing: pandas 3's
    `astype(str)` keeps missing values missing, and `groupby` then drops their rows."""
    return values.astype(object).fillna("nan").astype(str)


def drop_implied(
    keyed: pd.DataFrame, base: Sequence[str], kept: Sequence[str], order: Sequence[str]
) -> list[str]:
    """`kept` less every column of `order` (tried in that order) whose removal leaves as
    many distinct rows of `keyed[base + kept]`: a setting the others already tell apart
    (EDA's alphas beside its ratio) names nothing. keyed: values as text (`as_text`)."""
    kept = list(kept)

    def groups(cols: list[str]) -> int:
        return len(keyed[[*base, *cols]].drop_duplicates())

    for c in order:
        rest = [k for k in kept if k != c]
        if groups(rest) == groups(kept):
            kept = rest
    return kept


def model_names(runs: pd.DataFrame) -> dict[str, str]:
    """Each run of the table as a model ("run:<id>", how its product is named where a later
    run uses it: as its model or as a teacher) -> "<model> (stage <stage>)" of that run."""
    if "run_id" not in runs or "model" not in runs:
        return {}
    out = {}
    for _, r in runs.iterrows():
        stage = f" (stage {r['stage']})" if "stage" in r and pd.notna(r["stage"]) else ""
        out[f"run:{r['run_id']}"] = f"{_named(str(r['model']), out)}{stage}"
    return out


def _named(model: str, names: Mapping[str, str]) -> str:
    """`names[model]`; a run's kept revision (`run:<id>@<tokens>`) as its run's name with
    `@<tokens>`; anything else as it is."""
    base, at, revision = model.partition("@") if model.startswith("run:") else (model, "", "")
    return names.get(base, base) + (f"@{revision}" if at else "")


def shown_models(table: pd.DataFrame, names: Mapping[str, str] | None = None) -> pd.Series:
    """Per row, the model as a person names it: a run product as "<model> (stage S)"
    (`names`, default `model_names(table)`: pass the whole table's when `table` is a part
    of it), a cut model with its kept blocks ("gpt-d8 (stage teacher) blocks [0, 7]")."""
    names = model_names(table) if names is None else names
    shown = as_text(table["model"]).map(lambda m: _named(m, names))
    if "params.keep_layers" in table:
        cut = table["params.keep_layers"].map(lambda v: "" if pd.isna(v) else f" blocks {v}")
        shown = shown + cut
    return shown


_RUN_REF = re.compile(r"run:[0-9a-f]{16}")


def number_text(value: float) -> str:
    """A config value as `:g` writes it, but below 0.001 always in short e-notation, so a
    sweep's learning rates read alike: 3e-5, 1e-4, 3e-4 (not 3e-05, 0.0001, 0.0003)."""
    if value == 0 or not np.isfinite(value) or abs(value) >= 1e-3:
        return f"{value:g}"
    mantissa, exp = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def field_text(column: str, value: Any, models: Mapping[str, str]) -> str | None:
    """`name=value` for a config field (`params.lr` -> "lr=0.001"); other runs' products
    named by their model (`run:<id>` -> "gpt-d8 (stage teachers)"), never a hash; None
    for an empty value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float):
        text = number_text(value)
    else:
        text = _RUN_REF.sub(lambda m: models.get(m.group(0), m.group(0)[:12]), str(value))
    return f"{column.split('.')[-1]}={text}"


def run_name(r: pd.Series, extra: Sequence[str], models: Mapping[str, str]) -> str:
    """A run (or configuration) as a reader names it: its model, its method's label (or
    name), then `field_text` for each of `extra`."""
    parts = [models.get(str(r.get("model")), str(r.get("model"))),
             str(r.get("variant", r.get("method")))]  # fmt: skip
    parts += [t for c in extra if (t := field_text(c, r.get(c), models)) is not None]
    return " ".join(parts)


def first_present(df: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    """The first of `candidates` that is a column of `df`, else None."""
    return next((c for c in candidates if c in df.columns), None)


def with_compute(
    df: pd.DataFrame, n_col: str | None = None, d_col: str | None = None
) -> pd.DataFrame:
    """Add `compute` = 6 N D (FLOP) when the table has N and D but no compute column."""
    if COMPUTE_COL in df.columns:
        return df
    n_col = n_col or first_present(df, N_CANDIDATES)
    d_col = d_col or first_present(df, D_CANDIDATES)
    if n_col is None or d_col is None or n_col not in df or d_col not in df:
        raise ScalelabError(
            "column 'compute' is absent and cannot be derived as 6*N*D: need an N column "
            f"({', '.join(N_CANDIDATES)}) and a D column ({', '.join(D_CANDIDATES)})"
        )
    out = df.copy()
    out[COMPUTE_COL] = 6.0 * numeric(df, n_col) * numeric(df, d_col)
    return out


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    """Column `col` as floats; blanks become NaN, a column with no numbers at all is an error."""
    require_columns(df, [col])
    values = pd.to_numeric(df[col], errors="coerce").astype(float)
    if len(values) and values.isna().all() and df[col].notna().any():
        raise ScalelabError(f"column {col!r} is not numeric")
    return values


@dataclass(frozen=True)
class CleanTable:
    """Numeric columns with NaN rows dropped; `dropped` counts rows removed for NaN."""

    columns: dict[str, np.ndarray]
    dropped: int
    index: pd.Index


def clean_columns(df: pd.DataFrame, cols: Sequence[str], what: str = "") -> CleanTable:
    """Coerce `cols` to float and drop rows where any of them is NaN/inf."""
    require_columns(df, cols, what)
    frame = pd.DataFrame({c: numeric(df, c) for c in dict.fromkeys(cols)}, index=df.index)
    frame = frame.replace([np.inf, -np.inf], np.nan)
    keep = frame.notna().all(axis=1)
    kept = frame[keep]
    return CleanTable(
        columns={c: kept[c].to_numpy() for c in frame.columns},
        dropped=int((~keep).sum()),
        index=kept.index,
    )


def require_positive(values: np.ndarray, col: str, law: str) -> None:
    """Logs are taken of these values: zero or negative entries are a user error."""
    bad = values <= 0
    if bad.any():
        raise ScalelabError(
            f"column {col!r} has {int(bad.sum())} non-positive value(s) (min {values.min():.4g}); "
            f"the {law} fit takes logs of it"
        )


def require_points(n: int, law: str, group: str | None = None, need: int | None = None) -> None:
    """A fit of `law` needs at least MIN_POINTS[law] rows (or `need`, where that depends on
    which parameters are fixed)."""
    need = MIN_POINTS[law] if need is None else need
    if n < need:
        where = f" in group {group!r}" if group is not None else ""
        raise ScalelabError(
            f"too few points for the {law} law{where}: {n} usable row(s), need at least {need}"
        )


def require_holdout_points(
    n: int, k: int, law: str, group: str | None = None, need: int | None = None
) -> None:
    """The refit without the `k` held-out points needs MIN_POINTS[law] rows too.

    With fewer, the refit interpolates its points exactly (or cannot be fitted), and its
    extrapolation error would be judged on a fit that was never determined by the data.
    Raises ScalelabError ("too few ...", so grouped fits skip the group like `require_points`).
    """
    need = MIN_POINTS[law] if need is None else need
    if 0 < k < n and n - k < need:
        where = f" in group {group!r}" if group is not None else ""
        raise ScalelabError(
            f"too few points for --holdout {k}{where}: the refit keeps {n - k} of {n} row(s), "
            f"the {law} law needs at least {need}"
        )


def require_distinct(
    values: np.ndarray, col: str, law: str, need: int, group: str | None = None
) -> None:
    """A law cannot be identified from one repeated x value (e.g. every model the same size)."""
    k = len(np.unique(values))
    if k < need:
        where = f" in group {group!r}" if group is not None else ""
        raise ScalelabError(
            f"too few distinct values in column {col!r}{where}: {k}, the {law} law needs {need}"
        )
