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
