"""Registering a method: its params model must refuse NaN and infinity."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from scalelab.config import Strict
from scalelab.methods.base import METHODS, MethodDef, register_method


class Loose(BaseModel):
    temperature: float = 1.0


class Checked(Strict):
    temperature: float = 1.0


def test_a_params_model_that_accepts_nan_cannot_be_registered():
    with pytest.raises(ValueError, match="params model Loose accepts NaN and inf"):
        register_method(MethodDef("loose-kd", Loose, "x:y", ("lm",)))
    assert "loose-kd" not in METHODS


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_strict_params_model_names_the_non_finite_field(bad):
    with pytest.raises(ValidationError, match="temperature"):
        Checked(temperature=bad)
    assert Checked(temperature=2.5).temperature == 2.5


def test_variants_are_checked_like_the_method_and_chosen_by_task_kind():
    lm = MethodDef("kd-x", Checked, "x:lm", ("lm", "classification"))
    loose = MethodDef("kd-x", Loose, "x:cls", ("classification",))
    with pytest.raises(ValueError, match="params model Loose accepts NaN"):
        register_method(MethodDef(**{**lm.__dict__, "variants": {"classification": loose}}))
    cls = MethodDef("kd-x", Checked, "x:cls", ("classification",))
    with pytest.raises(ValueError, match="variants for kinds it does not list"):
        register_method(MethodDef(**{**lm.__dict__, "task_kinds": ("lm",),
                                     "variants": {"classification": cls}}))  # fmt: skip
    assert "kd-x" not in METHODS
    both = MethodDef(**{**lm.__dict__, "variants": {"classification": cls}})
    assert both.for_kind("lm") is both and both.for_kind("classification") is cls
    distill = METHODS.get("distill")  # the built-in one: its classifier variant
    assert distill.for_kind("classification").params.__name__ == "DistillClassifierParams"
    assert distill.for_kind("lm").params.__name__ == "DistillParams"
