"""Executors by registered name: `serial`, `processes`, `ray` (see base.py for the interface).

Importing this package registers the built-in ones; none imports torch or ray at import.
"""

from scalelab.grid.executors import processes, ray, serial  # noqa: F401  (register)
from scalelab.grid.executors.base import (
    EXECUTORS,
    Executor,
    Finished,
    OnEvent,
    check_executor,
    executor_name,
    get_executor,
    pin_threads,
)

__all__ = [
    "EXECUTORS",
    "Executor",
    "Finished",
    "OnEvent",
    "check_executor",
    "executor_name",
    "get_executor",
    "pin_threads",
]
