"""Row-wise transforms of a covariate: log, sqrt, abs, sin, cos, pow, center, scale, offset.

They keep the covariate's columns (one output column per input column) and may be nested in
other calls (``rcos(log(speed), 5)``). ``center`` and ``scale`` remember statistics of the
training rows so a fitted model applies the same transform to new data.
"""

from __future__ import annotations

import numpy as np

from ..graph import nodes
from ..terms import params as kinds
from ..terms.registry import Param, TermFunction, register

_X = Param("x", kinds.Covariate())


def build_rowwise(call, compiler):
    """Any registered function with a ``compute``: covariate arguments become inputs."""
    return compiler.rowwise(call)


def _rowwise(name: str, compute, summary: str) -> TermFunction:
    return register(TermFunction(name=name, params=(_X,), role="transform", summary=summary,
                                 example=f"{name}(speed)", compute=compute, build=build_rowwise))


def _safe_log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(x)
    return np.where(x > 0, out, np.nan)  # log of <= 0 is a missing value: the row is dropped


def _safe_sqrt(x):
    with np.errstate(invalid="ignore"):
        return np.where(x >= 0, np.sqrt(np.abs(x)), np.nan)


_rowwise("log", _safe_log, "natural logarithm (rows with x <= 0 become missing and are dropped)")
_rowwise("sqrt", _safe_sqrt, "square root (rows with x < 0 become missing and are dropped)")
_rowwise("abs", np.abs, "absolute value")
_rowwise("sin", np.sin, "sine (x in radians)")
_rowwise("cos", np.cos, "cosine (x in radians)")

register(TermFunction(
    name="pow", params=(_X, Param("n", kinds.Real())), role="transform",
    summary="x raised to the power n", example="pow(speed, 2)",
    compute=lambda x, n: np.power(x, n), build=build_rowwise))

register(TermFunction(
    name="center", params=(_X,), role="transform",
    summary="x minus its mean over the training rows (remembered for prediction)",
    example="center(speed)",
    build=lambda call, compiler: nodes.Standardise(compiler.node(call.argument("x")), False)))

register(TermFunction(
    name="scale", params=(_X,), role="transform",
    summary="x standardised by the mean and standard deviation of the training rows "
            "(remembered for prediction)",
    example="scale(speed)",
    build=lambda call, compiler: nodes.Standardise(compiler.node(call.argument("x")), True)))

register(TermFunction(
    name="offset", params=(_X,), role="offset",
    summary="added to the linear predictor with a fixed weight of 1 (no column)",
    example="offset(log_exposure)",
    build=lambda call, compiler: compiler.node(call.argument("x"))))
