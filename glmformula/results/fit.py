"""``gf.fit``: formula + data -> design -> the fitting engine -> :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Mapping

from ..fitting import engine
from ..fitting.engine import FitOptions
from ..fitting.families import get_family
from ..graph.design import DesignMatrix, build, prepare
from ..graph.design import design_matrix as _design_matrix
from ..graph.layout import DesignSpec
from .fit_result import FitResult


def design_matrix(formula, data: Mapping, *, bin_size, epochs=None, dtype="float64",
                  family: str = "poisson") -> DesignMatrix:
    """Build the design matrix (and binned response) of ``formula`` on ``data``.

    The same columns and response that :func:`fit` with the same arguments fits.

    Parameters
    ----------
    formula : str or Formula
        e.g. ``"spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)"``.
    data : mapping
        Names -> pynapple objects (TsGroup, Ts, Tsd, TsdFrame, IntervalSet).
    bin_size : float or str
        Seconds, or a quantity such as ``"10ms"``.
    epochs : IntervalSet or str, optional
        Epochs to use (or the name of an IntervalSet in ``data``). Default: the intersection of
        the time supports of everything the formula uses.
    dtype : str
        ``"float64"`` or ``"float32"``.
    family : str
        The observation family whose response is binned, as for :func:`fit`: ``"poisson"``
        (default) and ``"negative_binomial"`` count spikes per bin, ``"bernoulli"`` clips the
        counts to 1, ``"gamma"`` and ``"gaussian"`` average a continuous Tsd/TsdFrame into the
        bins (bins without a sample are dropped). An unknown name is a
        :class:`~glmformula.FitError` naming the families.

    Returns
    -------
    DesignMatrix
    """
    kind = get_family(family).response_kind  # an unknown name is refused before the data are read
    return _design_matrix(formula, data, bin_size=bin_size, epochs=epochs, dtype=dtype,
                          response_kind=kind)


def fit(formula, data: Mapping, *, bin_size, epochs=None, regularizer=None, solver="auto",
        dtype=None, tol: float | None = None, max_iter: int | None = None,
        chunk_size: int | None = None, solver_options: dict | None = None,
        smoothing: str | None = "auto", select: bool = False,
        family: str = "poisson") -> FitResult:
    """Fit a GLM for every unit of the formula's response: Poisson by default (rate =
    exp(X w + b)), or another observation family (``family=``).

    Parameters
    ----------
    formula : str or Formula
        e.g. ``"spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)"``.
    data : mapping
        Names -> pynapple objects.
    bin_size : float or str
        Seconds, or a quantity such as ``"10ms"``.
    epochs : IntervalSet or str, optional
        Epochs to fit (default: intersection of the time supports of what the formula uses).
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso or None
        Penalty on the weights (never on the intercept). Groups are the formula's terms;
        per-term strengths may name a term by its text or an alias (``{"coupling": 1e-2}``).
    solver : str
        ``"auto"`` (chosen from the problem's size), ``"newton"``, ``"lbfgs"`` or
        ``"proximal"``. The choice is reported as ``result.solver``.
    dtype : str, optional
        ``"float64"`` (default on CPU) or ``"float32"`` (default on GPU).
    tol, max_iter : optional
        Convergence tolerance (rate-weighted RMS change of the log-rate, nats) and iteration
        limit (default: the solver's).
    chunk_size : int, optional
        Bins per block for a blocked fit, which never holds the whole design in memory (the
        design is built block by block and the solver accumulates over blocks). Default:
        in memory when the design fits in ``gf.config.memory_limit``, else blocked. The choice
        is reported as ``result.chunk_size`` (None: in memory).
    solver_options : dict, optional
        Settings the chosen solver declares (e.g. ``{"history": 20}`` for L-BFGS); an unknown
        name is a :class:`~glmformula.FitError` naming the ones it takes.

    smoothing : "auto" or None
        ``"auto"`` (default): every basis term's roughness penalty gets a strength chosen per
        unit from the data by REML (see docs/smoothness.md; ``res.smoothing`` lists them).
        None: no smoothness penalty (strengths written in the formula, ``smooth=1e-3``, still
        apply). A term written with ``smooth=none`` is never penalised.
    select : bool
        Also penalise each term's null space (mgcv's ``select=TRUE``), so that a whole term
        can be shrunk to zero.
    family : str
        The observation family and its link (docs/api.md, 'Families'): ``"poisson"``
        (default; spike counts, log), ``"bernoulli"`` (spike / no spike per bin: counts
        clipped to 1, logit), ``"negative_binomial"`` (spike counts, log; the dispersion
        estimated per unit by maximum likelihood, ``res.dispersion``), ``"gamma"`` (positive
        continuous values, log) or ``"gaussian"`` (continuous values, identity). A continuous
        response (gamma, gaussian) is a Tsd/TsdFrame (e.g. fluorescence, one column per
        cell) averaged into the bins; bins without a sample are dropped. An unknown name is a
        :class:`~glmformula.FitError` naming the families.

    Returns
    -------
    FitResult
    """
    family = get_family(family)  # an unknown name is refused before the data are read
    prepared = prepare(formula, data, bin_size=bin_size, epochs=epochs,
                       response_kind=family.response_kind)
    options = FitOptions(regularizer=regularizer, solver=solver, dtype=dtype, tol=tol,
                         max_iter=max_iter, solver_options=solver_options or {},
                         smoothing=smoothing, select=select, family=family.name)
    if chunk_size is None:
        chunk_size = engine.auto_chunk_size(prepared, options.storage_dtype)
    if chunk_size:
        result = engine.fit_blocked(prepared, int(chunk_size), options)
        built = prepared
    else:
        built = build(prepared, dtype=options.storage_dtype)
        result = engine.fit_design(built, options)
    spec = DesignSpec.from_design(built, result.used, column_means=result.column_means,
                                  offset_mean=result.offset_mean)
    return FitResult.from_engine(spec, result, regularizer)


__all__ = ["fit"]
