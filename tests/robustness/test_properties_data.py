"""Property tests over random formulas *and* random pynapple data (hypothesis).

What ``gf.design_matrix`` and ``gf.fit`` promise for any input a user can pass (SPEC section 3,
docs/robustness.md):

* they either succeed or raise a ``gf.FormulaError`` (any subclass): never a numpy, JAX,
  pynapple or Python exception;
* the only warnings are the documented ones (``glmformula.errors``): no stray
  ``RuntimeWarning`` from numpy, no pynapple or JAX warnings;
* the user's objects are never modified (every array, time support and metadata table is
  compared with a deep copy taken before the call);
* a design that is built has finite values and counts; a fit that succeeds has finite weights,
  intercepts and log-likelihood;
* the same inputs give bit-identical results twice (determinism), and the same error twice.

The data are generated from a menu of the awkward cases users meet: units with no spikes,
covariates with NaN or inf values, constant covariates, duplicate timestamps, covariates sampled
faster or slower than the bins, covariates that do not cover the recording, epochs that are
random, empty, touching or disjoint, bin sizes from sub-millisecond to longer than the recording,
responses given as binned counts (some negative or fractional). Formulas are drawn from the
language's terms (bases, transforms, ``center``/``scale``, ``lag``, ``filter``, ``history``,
``coupling``, ``offset``, interactions, ``- 1``).

Sizes are small so that each design takes milliseconds. A fit compiles the JAX solver once per
problem shape (a few seconds), so the fit property draws its data from a narrower menu of grid
sizes and runs fewer examples. Set ``GLMFORMULA_FUZZ=N`` to run N times as many examples with a
random seed (a longer hunt); by default the examples are derandomised so the suite is stable.
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import pandas as pd
import pynapple as nap
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import glmformula as gf
from glmformula.errors import (
    ConvergenceWarning,
    NoSpikesWarning,
    RankDeficientWarning,
    SeparationWarning,
)

DOCUMENTED_WARNINGS = (ConvergenceWarning, NoSpikesWarning, RankDeficientWarning,
                       SeparationWarning, gf.BinSizeWarning)  # every one listed in docs/api.md

_FUZZ = int(os.environ.get("GLMFORMULA_FUZZ", "0") or 0)


def _settings(n: int) -> settings:
    return settings(max_examples=n * max(_FUZZ, 1), deadline=None, derandomize=not _FUZZ,
                    suppress_health_check=list(HealthCheck), database=None)


# ---- data -------------------------------------------------------------------------------------

VALUE_KINDS = ["normal", "normal", "constant", "integers", "large", "angle_walk"]
CORRUPTIONS = ["nan_some", "nan_some", "nan_all", "inf", "duplicates", "duplicates",
               "partial_cover", "gappy_support", "empty"]


def _values(rng, kind: str, n: int, columns: int) -> np.ndarray:
    if kind == "normal":
        v = rng.normal(0.0, 1.0, (n, columns))
    elif kind == "constant":
        v = np.full((n, columns), 3.0)
    elif kind == "integers":  # few distinct values: bases with empty knots
        v = rng.integers(0, 3, (n, columns)).astype(float)
    elif kind == "large":
        # Large but within what fits accept (columns beyond 1e15 are refused with a FitError;
        # see test_bad_input.py::test_columns_too_large_for_the_solver).
        v = rng.normal(0.0, 1e8, (n, columns))
    else:  # an unwrapped angle: leaves [0, 2pi)
        v = np.cumsum(rng.normal(0.0, 0.3, (n, columns)), axis=0)
    return v


def _covariate(draw, rng, duration: float, columns: int, *, fast: bool = False,
               kind: str | None = None, defects: float = 0.5):
    """A Tsd (columns == 1) or TsdFrame with a random sampling and a random defect."""
    dt = draw(st.sampled_from([0.001, 0.003] if fast else [0.002, 0.01, 0.037, 0.3]))
    jitter = draw(st.booleans())
    kind = kind or draw(st.sampled_from(VALUE_KINDS))
    corruption = draw(st.sampled_from(CORRUPTIONS)) if draw(st.integers(0, 99)) < 100 * defects \
        else "none"
    start, stop = 0.0, duration
    if corruption == "partial_cover":
        start, stop = draw(st.sampled_from([(0.6, duration), (0.0, duration / 2),
                                            (duration + 1, duration + 2)]))
    if jitter:
        t = np.sort(rng.uniform(start, stop, max(int((stop - start) / dt), 1)))
    else:
        t = np.arange(start, stop, dt)
    if corruption == "empty":
        t = t[:0]
    if corruption == "duplicates" and len(t) > 2:
        t = np.sort(np.concatenate([t, t[rng.integers(0, len(t), len(t) // 3)]]))
    v = _values(rng, kind, len(t), columns)
    if corruption == "nan_some" and len(t):
        v[rng.random(len(t)) < 0.2] = np.nan
    elif corruption == "nan_all":
        v[:] = np.nan
    elif corruption == "inf" and len(t):
        v[rng.integers(0, len(t))] = draw(st.sampled_from([np.inf, -np.inf]))
    support = None
    if corruption == "gappy_support":
        support = nap.IntervalSet([0.0, duration * 0.55], [duration * 0.4, duration])
    elif corruption == "partial_cover" and len(t):
        support = nap.IntervalSet(start, stop)
    kwargs = {"time_support": support} if support is not None else {}
    if columns == 1:
        return nap.Tsd(t=t, d=v[:, 0], **kwargs)
    return nap.TsdFrame(t=t, d=v, columns=[f"c{j}" for j in range(columns)], **kwargs)


def _intervals(draw, duration: float):
    """A random IntervalSet: empty, one piece, several disjoint or overlapping pieces."""
    n = draw(st.integers(0, 3))
    edges = [draw(st.floats(-0.5, duration + 0.5, allow_nan=False)) for _ in range(2 * n)]
    starts = np.array(edges[0::2])
    ends = starts + np.array([draw(st.sampled_from([0.0, 0.004, 0.05, 0.4, 1.5, duration]))
                              for _ in range(n)])
    return nap.IntervalSet(start=starts, end=ends) if n else nap.IntervalSet(
        start=np.array([]), end=np.array([]))


@st.composite
def recordings(draw, *, durations=(2.0, 3.5), defects: float = 0.5):
    """A data mapping: spikes (TsGroup), x, angle, pos (2 columns), cur (fast), counts, ep.

    ``defects``: the chance that each covariate (and the counts) carries a defect.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynapple's own warnings while building odd objects
        return _recording(draw, durations, defects)


def _recording(draw, durations, defects):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    duration = draw(st.sampled_from(list(durations)))
    ids = draw(st.sampled_from([(0,), (0, 1), (0, 1, 2), (3, 7, 11)]))
    spikes = {}
    for unit in ids:
        rate = draw(st.sampled_from([0.0, 0.0, 1.0, 15.0, 60.0]))
        times = np.sort(rng.uniform(0.0, duration, rng.poisson(rate * duration)))
        if draw(st.booleans()) and len(times) > 2:  # two spikes at one time (bursts)
            times = np.sort(np.concatenate([times, times[:2]]))
        spikes[unit] = nap.Ts(t=times)
    data = {"spikes": nap.TsGroup(spikes, time_support=nap.IntervalSet(0.0, duration))}
    data["x"] = _covariate(draw, rng, duration, 1, defects=defects)
    data["angle"] = _covariate(draw, rng, duration, 1, kind=draw(st.sampled_from(
        ["angle_walk", "normal", "constant"])), defects=defects)
    data["pos"] = _covariate(draw, rng, duration, 2, defects=defects)
    data["cur"] = _covariate(draw, rng, duration, 1, fast=True, defects=defects)
    bin_counts = draw(st.sampled_from([0.01, 0.01, 0.005, 0.02]))
    t = np.arange(0.0, duration, bin_counts) + bin_counts / 2
    counts = rng.poisson(2.0, (len(t), 2)).astype(float)
    defect = draw(st.sampled_from(["negative", "fraction", "nan"])) \
        if draw(st.integers(0, 99)) < 50 * defects else "none"
    if defect == "negative":
        counts[3, 0] = -1.0
    elif defect == "fraction":
        counts[5, 1] = 0.5
    elif defect == "nan":
        counts[7, 0] = np.nan
    data["counts"] = nap.TsdFrame(t=t, d=counts, columns=[0, 1],
                                  time_support=nap.IntervalSet(0.0, duration))
    data["ep"] = _intervals(draw, duration)  # pynapple joins overlapping intervals
    return data


# ---- formulas ---------------------------------------------------------------------------------

def _term(draw) -> str:
    k = draw(st.integers(1, 5))
    w = draw(st.sampled_from(["20ms", "50ms", "100ms", "0.3s"]))
    spacing = draw(st.sampled_from(["log", "linear"]))
    menu = [
        "x", "pos", "angle", "ep", "cur",
        f"bspline(x, {k + 3})", f"bspline(pos, {k + 3}, order=2)",
        f"bspline(x, {k + 3}, range=(-1, 1))", f"cyclic(angle, {k + 2})",
        f"cyclic(angle, {k + 3}, order=3, period=pi)", f"rcos(x, {k})",
        f"rcos(x, {k}, log=True, range=(0.1, 2))", f"onehot(x, {k})",
        f"onehot(pos, {k}, range=(-1, 1))", "log(x)", "sqrt(abs(x))", "sin(angle)",
        "cos(angle)", "pow(x, 2)", "pow(x, -1)", "abs(pos)", "center(x)", "scale(x)",
        "scale(pos)", "center(log(abs(x)))", f"rcos(log(abs(x)), {k})", f"lag(x, {w})",
        "lag(x, -20ms)", f"filter(cur, {k}, window={w})", f"filter(x, {k}, window={w}, "
        "log=False)", f"history({k}, {spacing}, window={w})", "history(2)",
        "coupling(all)", f"coupling(all, {k}, {spacing}, window={w})", "coupling([0, 1])",
        "coupling([7])", "offset(x)", "offset(center(x))",
    ]
    return draw(st.sampled_from(menu))


@st.composite
def formulas(draw, *, min_terms: int = 0):
    response = draw(st.sampled_from(["spikes", "spikes", "spikes[0]", "spikes[[0, 1]]",
                                     "spikes[7]", "counts", "counts[1]"]))
    n = draw(st.sampled_from([n for n in (0, 1, 1, 2, 2, 3) if n >= min_terms]))
    pieces = []
    for _ in range(n):
        term = _term(draw)
        if draw(st.integers(0, 4)) == 0:  # an interaction
            term = f"{term}:{_term(draw)}"
        elif draw(st.integers(0, 6)) == 0:
            term = f"({term}) * ({_term(draw)})"
        pieces.append(term)
    rhs = " + ".join(pieces) or "1"
    tail = draw(st.sampled_from(["", "", "", " - 1", " + 0"]))
    return f"{response} ~ {rhs}{tail}"


# mostly valid bin sizes (fine to coarse), some longer than the data, some invalid
BIN_SIZES = [0.01, 0.01, 0.01, "10ms", "10ms", "25ms", 0.004, 0.004, 0.1, 0.1, 0.7, 5.0, 1e-4,
             0.0, -0.01, "1 s", "abc", float("nan"), True]


# ---- what must hold ---------------------------------------------------------------------------

def _snapshot(data) -> dict:
    """Deep copies of everything in the user's objects that a call could modify."""
    snap = {}
    for name, obj in data.items():
        entry = {"type": type(obj)}
        if isinstance(obj, nap.IntervalSet):
            entry["values"] = np.array(obj.values, copy=True)
        else:
            entry["support"] = np.array(obj.time_support.values, copy=True)
        if isinstance(obj, nap.TsGroup):
            entry["index"] = list(obj.index)
            entry["units"] = {u: np.array(obj[u].t, copy=True) for u in obj.index}
            entry["metadata"] = obj.metadata.copy(deep=True)
        elif isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            entry["t"] = np.array(obj.t, copy=True)
            entry["d"] = np.array(obj.values, copy=True)
            entry["flags"] = obj.values.flags.writeable
            if isinstance(obj, nap.TsdFrame):
                entry["columns"] = list(obj.columns)
                entry["metadata"] = obj.metadata.copy(deep=True)
        snap[name] = copy.deepcopy(entry)
    snap["__objects__"] = {name: id(obj) for name, obj in data.items()}  # nothing replaced
    return snap


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
            a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return a == b


def _run(call):
    """Call; return its result or the FormulaError it raised (any other exception propagates),
    after checking that every warning is one of the documented classes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
        except gf.FormulaError as err:
            assert str(err), "a FormulaError must say what is wrong"
            out = err
    stray = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
             if not issubclass(w.category, DOCUMENTED_WARNINGS)]
    assert not stray, "undocumented warnings:\n" + "\n".join(stray)
    return out


def _check_design(X: gf.DesignMatrix) -> None:
    M = X.to_numpy()
    assert M.shape[0] == X.n_rows > 0
    assert np.isfinite(M).all(), "design has non-finite values"
    counts = X.counts[X.valid]
    assert np.isfinite(counts).all() and (counts >= 0).all()
    assert np.array_equal(counts, np.round(counts)), "counts must be whole numbers"
    assert len(X.columns) == X.storage.shape[1] or not X.is_population
    if X.offset is not None:
        assert np.isfinite(X.offset).all()


def _design_key(X: gf.DesignMatrix):
    return (X.storage, X.valid, X.counts, X.offset, X.dropped, X.columns)


def _fit_key(res: gf.FitResult):
    return (res.weights, res.intercepts, np.asarray(res.covariance), res.log_likelihood_units,
            res.converged_units, res.n_iter_units, res.solver, res.n_rows, res.dropped)


def _identical(a, b) -> bool:
    if isinstance(a, gf.FormulaError) or isinstance(b, gf.FormulaError):
        return type(a) is type(b) and str(a) == str(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or not np.array_equal(x, y, equal_nan=True) \
                    or x.dtype != y.dtype:
                return False
        elif x != y:
            return False
    return True


def _epochs_argument(draw, data):
    choice = draw(st.sampled_from(["default"] * 4 + ["named", "object", "wrong"]))
    if choice == "named":
        return "ep"
    if choice == "object":
        return data["ep"]
    if choice == "wrong":
        return draw(st.sampled_from(["x", "nope", 3]))
    return None


@_settings(150)
@given(data=recordings(), formula=formulas(), bin_size=st.sampled_from(BIN_SIZES),
       epochs_choice=st.data())
def test_design_matrix_on_random_data(data, formula, bin_size, epochs_choice):
    epochs = _epochs_argument(epochs_choice.draw, data)
    before = _snapshot(data)
    first = _run(lambda: gf.design_matrix(formula, data, bin_size=bin_size, epochs=epochs))
    event("design: " + (type(first).__name__ if isinstance(first, gf.FormulaError) else "ok"))
    assert _same(before, _snapshot(data)), "design_matrix modified the user's data"
    if not isinstance(first, gf.FormulaError):
        _check_design(first)
        first = _design_key(first)
    second = _run(lambda: gf.design_matrix(formula, data, bin_size=bin_size, epochs=epochs))
    if not isinstance(second, gf.FormulaError):
        second = _design_key(second)
    assert _identical(first, second), "two builds of the same design differ"


# The fit property: a narrower menu of grid shapes (two durations, three bin sizes, epochs
# from the data or the default) so that the JAX solver's compilations are shared between
# examples; the data, formulas and defects are as random as above.
FIT_BIN_SIZES = ["10ms", 0.025, 0.05]


@_settings(40)
@given(data=recordings(durations=(2.0,), defects=0.25), formula=formulas(min_terms=1),
       bin_size=st.sampled_from(FIT_BIN_SIZES), ridge=st.booleans(),
       epochs=st.sampled_from([None, None, None, "ep"]))
def test_fit_on_random_data(data, formula, bin_size, ridge, epochs):
    regularizer = gf.Ridge(1e-3) if ridge else None
    before = _snapshot(data)

    def call():
        return gf.fit(formula, data, bin_size=bin_size, epochs=epochs,
                      regularizer=regularizer, max_iter=50)

    first = _run(call)
    event("fit: " + (type(first).__name__ if isinstance(first, gf.FormulaError) else
                     f"ok ({first.solver})"))
    assert _same(before, _snapshot(data)), "fit modified the user's data"
    if not isinstance(first, gf.FormulaError):
        assert np.isfinite(first.weights).all(), "non-finite weights"
        assert np.isfinite(first.intercepts).all(), "non-finite intercepts"
        assert np.isfinite(first.log_likelihood_units).all(), "non-finite log-likelihood"
        assert first.coef.shape[1] == len(first.unit_ids)
        first = _fit_key(first)
    second = _run(call)
    if not isinstance(second, gf.FormulaError):
        second = _fit_key(second)
    assert _identical(first, second), "two fits of the same data differ"


def test_the_generators_reach_both_outcomes():
    """Guard against a generator that only ever produces errors (or never does)."""
    outcomes = {"ok": 0, "error": 0}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=recordings(), formula=formulas(), bin_size=st.sampled_from(BIN_SIZES))
    def probe(data, formula, bin_size):
        out = _run(lambda: gf.design_matrix(formula, data, bin_size=bin_size))
        outcomes["error" if isinstance(out, gf.FormulaError) else "ok"] += 1

    probe()
    assert outcomes["ok"] >= 5 and outcomes["error"] >= 5, outcomes


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q", "-p", "no:xdist"])
