"""Training methods. Importing this package registers the built-in ones (no torch import)."""

from scalelab.methods import pretrain  # noqa: F401  (registers "pretrain")
from scalelab.methods.base import METHODS, MethodDef, RunContext, RunResult, register_method

__all__ = ["METHODS", "MethodDef", "RunContext", "RunResult", "register_method"]
