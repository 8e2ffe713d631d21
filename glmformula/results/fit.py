"""``gf.fit``: formula + data -> design -> the fitting engine -> :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Mapping

from ..fitting import engine
from ..fitting.engine import FitOptions
from ..graph.design import build, prepare
from ..graph.layout import DesignSpec
from .fit_result import FitResult


def fit(formula, data: Mapping, *, bin_size, epochs=None, regularizer=None, solver="auto",
        dtype=None, tol: float | None = None, max_iter: int | None = None,
        chunk_size: int | None = None, solver_options: dict | None = None) -> FitResult:
    """Fit a Poisson GLM (rate = exp(X w + b)) for every unit of the formula's response.

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

    Returns
    -------
    FitResult
    """
    prepared = prepare(formula, data, bin_size=bin_size, epochs=epochs)
    options = FitOptions(regularizer=regularizer, solver=solver, dtype=dtype, tol=tol,
                         max_iter=max_iter, solver_options=solver_options or {})
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
