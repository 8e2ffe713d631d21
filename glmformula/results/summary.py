"""Per-term summary of a fit: Wald test of each whole term, optionally the deviance it explains.

One row per (term, unit): a population model asks "does this term matter for this unit?"
once per unit, and a pooled test would hide the units it matters for. The Wald statistic of a
term is ``w' S^+ w`` on that unit's weights ``w`` of the term with ``S`` their covariance block;
its degrees of freedom are the free weights: a term constrained to sum to zero over the training
rows (:attr:`FitResult.constrained_terms`) loses one, and a pseudo-inverse keeps only the
identified directions.

With ``refit=True`` each term is dropped in turn and the formula refitted on the same rows of
the training data (rows are those of the full model, so dropping ``history`` does not add the
first window of each epoch back), giving the likelihood-ratio statistic and the share of the
null deviance the term explains on its own.

With a penalty (``Ridge``...) the covariance is the penalised one (the posterior covariance of a
Gaussian prior), so Wald and likelihood-ratio p-values are approximate there, and shrinkage
moves explanatory power between correlated terms.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pynapple as nap
from scipy import stats

from ..errors import ResultError
from ..fitting import poisson
from ..fitting.engine import FitOptions, fit_design
from ..fitting.families import get_family
from ..graph.design import build, prepare
from . import scores
from .curves import weight_blocks

COLUMNS = ("columns", "edf", "df", "wald_chi2", "p_value")
REFIT_COLUMNS = ("lr_stat", "lr_pvalue", "deviance_explained")

# Eigenvalues of a term's covariance below this fraction of its largest are not identified
# (the constant direction of a constrained term is exactly such a direction).
_RELATIVE_TOL = 1e-10


def wald_test(w: np.ndarray, S: np.ndarray, max_df: int) -> tuple[float, int]:
    """Wald statistic ``w' S^+ w`` and its degrees of freedom.

    Parameters
    ----------
    w : ndarray (k,)
        Weights.
    S : ndarray (k, k)
        Their covariance.
    max_df : int
        Free weights (k, less one for a sum-to-zero constraint).

    Returns
    -------
    (float, int)
        The statistic (chi-square with ``df`` degrees of freedom under "all weights are 0") and
        ``df``: the number of identified directions of ``S``, at most ``max_df``. NaN and 0
        when ``w`` or ``S`` is not finite (a nearly separated fit: weights running off).
    """
    if not (np.all(np.isfinite(S)) and np.all(np.isfinite(w))):
        return float("nan"), 0
    S = 0.5 * (S + S.T)
    values, vectors = np.linalg.eigh(S)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    top = values[0] if len(values) else 0.0
    identified = int(np.sum(values > _RELATIVE_TOL * max(top, 0.0))) if top > 0 else 0
    df = min(identified, max_df)
    if df == 0:
        return float("nan"), 0
    projected = vectors[:, :df].T @ w
    return float(np.sum(projected ** 2 / values[:df])), df


def summary(result, *, data: Mapping | None = None, refit=False) -> pd.DataFrame:
    """See :meth:`FitResult.summary`.

    ``refit``: False, True (refit without each term) or the terms to refit without (text or
    alias; the others' likelihood-ratio columns are NaN).
    """
    wanted = None
    if not isinstance(refit, bool):
        wanted = {result.resolve_term(t) for t in ([refit] if isinstance(refit, str) else refit)}
        refit = bool(wanted)
    if refit and data is None:
        raise ResultError("summary(refit=True) needs the training data to refit the model "
                          "without each term", hint="call res.summary(data=data, refit=True)")
    records, index = [], []
    smoothing = getattr(result, "smoothing_fit", None)
    edf_of = {} if smoothing is None else smoothing.edf
    for term in result.formula.terms:
        constrained = term in result.constrained_terms
        for block in weight_blocks(result, term):
            idx = block.columns + 1
            w = result.weights[block.columns, block.unit_index]
            S = result.covariance[block.unit_index][np.ix_(idx, idx)]
            k = len(block.columns)
            free = k - int(constrained)
            edf = float(edf_of[term][block.unit_index]) if term in edf_of else float(free)
            # a smooth term is tested on the rank its edf says the data determined (Wood
            # 2013's rank-r Wald statistic, r = edf rounded), as mgcv's summary.gam
            rank = free if term not in edf_of or not np.isfinite(edf) else \
                int(np.clip(round(edf), 1, free))
            stat, df = wald_test(w, S, rank)
            p = float(stats.chi2.sf(stat, df)) if df > 0 else float("nan")
            records.append({"columns": k, "edf": edf, "df": df, "wald_chi2": stat,
                            "p_value": p})
            index.append((term, block.unit))
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame.index = pd.MultiIndex.from_tuples(index, names=["term", "unit"]) if index else \
        pd.MultiIndex.from_tuples([], names=["term", "unit"])
    if refit:
        terms = list(dict.fromkeys(term for term, _ in index))  # offsets have no weights
        if wanted is not None:
            terms = [t for t in terms if t in wanted]
        frame = frame.join(_refit_columns(result, data, terms))
    return frame


def _refit_columns(result, data: Mapping, terms: list) -> pd.DataFrame:
    """Likelihood-ratio statistic and deviance explained by each term, from refits without it
    (by the fitting engine, on the same rows as the full model)."""
    epochs = nap.IntervalSet(start=result.epochs[:, 0], end=result.epochs[:, 1])
    full = result.design(data, epochs=epochs)
    rows = full.rows
    counts = full.counts[rows].astype(float)
    expected = poisson.expected_counts(result._linear_predictor(full)[rows])
    ll_full = scores.poisson_log_likelihood(counts, expected)
    null_deviance = 2 * (scores.saturated_log_likelihood(counts)
                         - scores.mean_rate_log_likelihood(counts))
    family = get_family(getattr(result, "family", "poisson"))
    if family.name != "poisson":  # its likelihood; deviances at the full model's dispersion
        dispersion = result.dispersion
        expected = family.mean(result._linear_predictor(full)[rows])
        ll_full = family.log_likelihood(counts, expected, None,
                                        None if family.name == "gaussian" else dispersion)
        deviance_full = family.deviance(counts, expected, None, dispersion)
        null_deviance = family.deviance(
            counts, np.broadcast_to(family.null_mean(counts), counts.shape), None, dispersion)
    # the reduced models are fitted as the full one was: smoothed only if it was
    smoothed = getattr(result, "smoothing_fit", None) is not None
    options = FitOptions(regularizer=result.regularizer, smoothing="auto" if smoothed else None,
                         family=family.name)
    records, index = [], []
    for term in terms:
        others = [t for t in result.formula.term_objects if str(t) != term]
        reduced = prepare(result.formula.with_terms(others), data, bin_size=result.bin_size,
                          epochs=epochs, response_kind=family.response_kind)
        design = build(reduced)
        if design.grid.n_rows != full.grid.n_rows:
            raise ResultError("the reduced model's time grid differs from the full one's",
                              hint="pass the data the model was fitted on")
        # Same rows as the full model, so the two log-likelihoods are comparable.
        refitted = fit_design(design, options, row_weight=full.valid.astype(float),
                              covariance=False)
        ll_reduced = refitted.diagnostics.log_likelihood
        explained = None
        if family.name != "poisson":
            eta = refitted.intercepts + (design.storage[rows] @ refitted.weights
                                         if design.plan.n_storage else 0.0)
            if design.offset is not None:
                eta = eta + design.offset[rows, None]
            explained = family.deviance(counts, family.mean(np.broadcast_to(
                eta, counts.shape)), None, dispersion) - deviance_full
        for u, unit in enumerate(result.unit_ids):
            lr = 2 * (ll_full[u] - ll_reduced[u])
            df = _term_df(result, term, u)
            gain = lr if explained is None else explained[u]
            records.append({
                "lr_stat": lr,
                "lr_pvalue": float(stats.chi2.sf(max(lr, 0.0), df)) if df > 0 else np.nan,
                "deviance_explained": gain / null_deviance[u] if null_deviance[u] > 0
                else np.nan})
            index.append((term, unit))
    return pd.DataFrame.from_records(records, index=pd.MultiIndex.from_tuples(
        index, names=["term", "unit"]), columns=list(REFIT_COLUMNS))


def _term_df(result, term: str, u: int) -> int:
    n = sum(1 for t, _ in result.unit_labels[u] if t == term)
    return n - int(term in result.constrained_terms)


def render(result, frame: pd.DataFrame, *, console=None) -> None:
    """Print the summary as a rich table under a header with the fit's headline numbers."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency; keep printing if an install lacks it
        print(_header(result))
        print(frame.to_string())
        return
    console = console or Console()  # the terminal's width (COLUMNS where set)
    console.print(_header(result), markup=False, highlight=False)
    table = Table()
    shown = frame.reset_index()
    for column in shown.columns:  # a narrow terminal wraps cells, never cuts them
        table.add_column(str(column), justify="left" if column in ("term",) else "right",
                         overflow="fold")
    for _, row in shown.iterrows():
        table.add_row(*[_fmt(column, value) for column, value in row.items()])
    console.print(table)


def _header(result) -> str:
    return (f"{result.formula}\n{len(result.unit_ids)} unit(s), {result.n_rows} bins of "
            f"{result.bin_size * 1e3:g} ms, log-likelihood {result.log_likelihood:.6g} nats, "
            f"AIC {result.aic:.6g}, solver {result.solver}"
            + ("" if getattr(result, "family", "poisson") == "poisson"
               else f", family {result.family}")
            + ("" if result.converged else " (NOT converged)"))


def _fmt(column, value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        if column in ("p_value", "lr_pvalue"):
            return "<1e-16" if value < 1e-16 else f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


__all__ = ["summary", "wald_test", "render"]
