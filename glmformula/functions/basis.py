"""Basis expansions of a covariate: rcos, bspline, cyclic, onehot.

Each evaluates a small family of smooth (or indicator) functions on the covariate's values,
giving k columns: a non-linear tuning curve with k weights.
"""

from __future__ import annotations

import math

from ..errors import TermArgumentError
from ..graph import nodes
from ..terms import params as kinds
from ..terms.registry import Param, TermFunction, register

_X = Param("x", kinds.Covariate())
_K = Param("k", kinds.Count(minimum=1))
_RANGE = Param("range", kinds.Interval(), None, keyword=True)
#: Every basis term's roughness penalty: chosen from the data, none, or a fixed strength.
SMOOTH = Param("smooth", kinds.Smooth(), "auto", keyword=True, keyword_only=True)


def _order_fits(call) -> str | None:
    if call.argument("k") < call.argument("order"):
        return (f"k={call.argument('k')} basis functions cannot be fewer than the spline "
                f"order={call.argument('order')}")
    return None


def _cyclic_fits(call) -> str | None:
    if call.argument("k") < max(call.argument("order"), 3):
        return (f"k={call.argument('k')} is too few for a periodic spline of "
                f"order={call.argument('order')}; use k >= {max(call.argument('order'), 3)}")
    return None


def _build_basis(call, compiler):
    args = call.kwargs
    if call.function == "cyclic":
        x = compiler.node(args["x"], period=args["period"])
        options = (("order", args["order"]), ("period", args["period"]))
    else:
        x = compiler.node(args["x"])
        options = {"rcos": (("log", args.get("log")),), "bspline": (("order", args.get("order")),),
                   "onehot": ()}[call.function]
    k = args["bins"] if call.function == "onehot" else args["k"]
    if call.function == "rcos" and k < 2:
        raise TermArgumentError(  # raised cosines are spaced by their peaks: one is undefined
            f"rcos(): k={k} bump is too few; raised cosines need k >= 2",
            formula=str(compiler.formula), hint="write e.g. rcos(position, 7)")
    return nodes.Basis(call.function, x, k, options, args.get("range"))


register(TermFunction(
    name="rcos", role="basis", build=_build_basis, example="rcos(position, 7)",
    summary="raised-cosine bumps evaluated on the covariate (linearly or log spaced)",
    params=(_X, _K, Param("log", kinds.Flag(), False, keyword=True), _RANGE, SMOOTH)))

register(TermFunction(
    name="bspline", role="basis", build=_build_basis, example="bspline(speed, 6)",
    summary="B-spline basis evaluated on the covariate",
    params=(_X, _K, Param("order", kinds.Count(minimum=1), 4, keyword=True), _RANGE, SMOOTH),
    check=_order_fits))

register(TermFunction(
    name="cyclic", role="basis", build=_build_basis, example="cyclic(head_direction, 12)",
    summary="periodic B-spline basis, for angles and phases",
    params=(_X, _K, Param("order", kinds.Count(minimum=1), 4, keyword=True),
            Param("period", kinds.Real(positive=True, angle=True), 2 * math.pi, keyword=True),
            SMOOTH),
    check=_cyclic_fits))

register(TermFunction(
    name="onehot", role="basis", build=_build_basis, example="onehot(position, 7, range=(0, 100))",
    summary="indicator of which of `bins` equal bins the covariate falls in",
    params=(_X, Param("bins", kinds.Count(minimum=1)), _RANGE, SMOOTH)))
