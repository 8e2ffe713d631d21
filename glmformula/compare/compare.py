"""``gf.compare``: cross-validated comparison of several formulas on the same data.

The work is a list of (model, fold) fits (:class:`~.comparison.Comparison`), run here or on an
executor (:mod:`.distributed`); this module turns their scores into the comparison table:
pooled or per-unit bits per spike, likelihood-ratio tests against nested models, flags for
held-out scores that diverged, and one warning per kind of problem with counts (the details
stay in ``table.attrs["warnings"]``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from rich.progress import track
from scipy import stats

from ..errors import (
    PENALTY_ADVICE,
    ConvergenceWarning,
    FormulaError,
    GlmformulaWarning,
    NoSpikesWarning,
    RankDeficientWarning,
    ScoreWarning,
    SeparationWarning,
    warn,
)
from ..fitting.families import get_family
from ..terms.formula import parse
from .comparison import Comparison, ModelScores, assemble
from .distributed import run_distributed
from .nesting import largest_nested

#: Held-out bits per spike below this (or not finite) mean the fit diverged on that fold
#: (unpenalised fits that run off where the animal rarely goes reach -1e300): the score is
#: reported as -inf and flagged.
DIVERGED_BITS_PER_SPIKE = -100.0

_WARNING_KINDS = {cls.__name__: cls for cls in (ConvergenceWarning, NoSpikesWarning,
                                                RankDeficientWarning, SeparationWarning,
                                                ScoreWarning)}


def _named(models) -> dict:
    if isinstance(models, Mapping):
        named = dict(models)
    elif isinstance(models, Sequence) and not isinstance(models, str):
        named = {str(parse(m)): m for m in models}
    else:
        raise FormulaError("models must be a dict of name -> formula, or a list of formulas",
                           hint='e.g. {"hd": "spikes ~ cyclic(hd, 12)", "null": "spikes ~ 1"}')
    if not named:
        raise FormulaError("no models to compare", hint="give at least one formula")
    formulas = {name: parse(text) for name, text in named.items()}
    responses = {(f.response, f.units) for f in formulas.values()}
    if len(responses) > 1:
        raise FormulaError("all models must have the same response (and unit selection)",
                           hint="compare models of the same units: " +
                                ", ".join(f"{n}: {f.response_text}" for n, f in formulas.items()))
    return formulas


def compare(models, data: Mapping, *, bin_size, epochs=None, cv: int = 5, regularizer=None,
            solver: str = "auto", dtype=None, per_unit: bool = False, progress: bool = False,
            executor=None, family: str = "poisson", smoothing: str | None = "auto",
            select: bool = False) -> pd.DataFrame:
    """Compare formulas by cross-validated log-likelihood (bits per spike).

    Parameters
    ----------
    models : dict or list
        Name -> formula (or a list of formulas, named by their text). Same response for all.
    data, bin_size, epochs :
        As for :func:`glmformula.fit`.
    cv : int
        Number of contiguous folds (0: no cross-validation).
    per_unit : bool
        One row per (model, unit) instead of one per model (pooled over units).
    progress : bool
        Show a progress bar over the (model, fold) fits.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Run the (model, fold) fits there; each worker builds the shared feature graph once.
        Results equal the in-process run; a failed fit is retried once, then reported by model
        and fold.
    family : str
        The observation family of every model (as for :func:`glmformula.fit`). The table's
        score is bits per spike for the count families (poisson, bernoulli,
        negative_binomial); for gamma and gaussian, whose response has no spikes, the
        deviance explained (``1 - D / D_null``; the columns are then named
        ``train_deviance_explained``, ``cv_deviance_explained``, ... instead of
        ``*bits_per_spike*``). Held-out scores use each fold's fitted dispersion.

    smoothing, select :
        As for :func:`glmformula.fit`; the strengths are chosen inside each training fold
        (nothing is learned from the held-out rows), and the table's ``edf`` column gives each
        model's effective degrees of freedom (its full-data fit; ``n_params`` where no strength
        is chosen).

    Returns
    -------
    DataFrame
        Indexed by model (or (model, unit)); columns n_params, edf, train_bits_per_spike,
        cv_bits_per_spike, cv_bits_per_spike_se, delta_cv_bits_per_spike, cv_log_likelihood,
        log_likelihood, aic, bic, lr_stat, lr_df, lr_pvalue, nested_in, converged.
        ``table.attrs["warnings"]``: every warning of every fit (one record each);
        ``table.attrs["seconds"]``: the seconds each model's fits and scores took (in this
        process their wall time; on an executor the sum of its tasks' times on the workers).

    Notes
    -----
    The fits are only scored, so without REML they stop at Newton's criterion
    :data:`..fitting.engine.SCORED_FIT_TOL` (1e-5; with a penalty
    :data:`..fitting.engine.PENALISED_SCORED_FIT_TOL`, 1e-6) instead of ``gf.fit``'s 1e-8: a
    few thousandths of a standard error of the weights, and held-out scores within ~2e-6
    bits/spike of the exact fit's for every unit the data determine. Units the
    data (nearly) separate (:class:`~glmformula.SeparationWarning`) have no unpenalised
    optimum: their held-out scores depend on where the solver stops.

    In this process, a model's fit on all rows starts from that of the largest model nested in
    it already fitted (each fold from its model's fit on all rows): always with REML, and
    without it where the model's units are fitted on their own few columns (``history``
    without ``coupling``), whose Newton fits reach the same optimum from any start; on an
    executor no fit starts from another model's.
    """
    formulas = _named(models)
    family = get_family(family)
    options = dict(bin_size=bin_size, epochs=epochs, cv=cv, regularizer=regularizer,
                   solver=solver, dtype=dtype)
    if smoothing != "auto" or select:  # (defaults left out: workers of older specs take them)
        options.update(smoothing=smoothing, select=select)
    if family.name != "poisson":
        options["family"] = family.name
    if executor is not None:
        outputs = run_distributed(executor, formulas, data, options, progress)
        seconds = {name: sum(output["seconds"] for (model, _), output in outputs.items()
                             if model == name) for name in formulas}
    else:
        comparison = Comparison(formulas, data, **options)
        outputs, seconds = {}, {}
        for name in _progress(list(formulas), progress, "models (all rows, then the folds)"):
            started = time.perf_counter()
            outputs.update(comparison.run_model(name))
            seconds[name] = time.perf_counter() - started
    results = {name: assemble(name, outputs, cv) for name in formulas}
    unit_ids = outputs[(next(iter(formulas)), -1)]["unit_ids"]
    table = comparison_table(formulas, results, unit_ids, per_unit,
                             metric=score_name(family))
    # what each hypothesis cost: in this process the wall time of its fits and scores (folds
    # side by side overlap), on an executor the sum of its tasks' times on the workers
    table.attrs["seconds"] = pd.Series(seconds, name="seconds", dtype=float)
    _report_warnings(table, results)
    return table


def score_name(family) -> str:
    """The comparison's score for ``family``: ``"bits_per_spike"`` for spikes, else
    ``"deviance_explained"``."""
    return "bits_per_spike" if get_family(family).counts else "deviance_explained"


def _progress(items, enabled: bool, what: str):
    if not enabled:
        return items
    return track(list(items), description=what, transient=True)


def _diverged(r: ModelScores) -> np.ndarray:
    """(F, U): held-out scores that are not finite or beyond :data:`DIVERGED_BITS_PER_SPIKE`."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(r.fold_ll) | (np.nan_to_num(r.fold_bps) < DIVERGED_BITS_PER_SPIKE)


def _report_warnings(table: pd.DataFrame, results: dict) -> None:
    """One warning per kind with counts; every record in ``table.attrs["warnings"]``."""
    records = [rec for r in results.values() for rec in r.warnings]
    unit_ids = list(table.index.get_level_values("unit").unique()) \
        if isinstance(table.index, pd.MultiIndex) else None
    for name, r in results.items():
        bad = _diverged(r)
        for f in np.flatnonzero(bad.any(axis=1)):
            units = np.flatnonzero(bad[f])
            records.append({"kind": "ScoreWarning", "model": name, "fold": int(f) + 1,
                            "units": [u if unit_ids is None else unit_ids[u] for u in units],
                            "message": "held-out score diverged"})
    frame = pd.DataFrame.from_records(records, columns=["kind", "model", "fold", "units",
                                                        "message"])
    table.attrs["warnings"] = frame
    for kind, rows in frame.groupby("kind", sort=False):
        where = "; ".join(f"model {m!r} fold(s) {', '.join(map(str, g['fold']))}"
                          for m, g in rows.groupby("model", sort=False))
        units = sorted({u for us in rows["units"] for u in us}, key=str)
        advice = ("the fit ran off (often where the animal rarely goes): a penalty prevents "
                  f"this: {PENALTY_ADVICE}; those scores are shown as -inf and flagged in the "
                  "'cv_flag' column" if kind == "ScoreWarning" else rows["message"].iloc[0])
        warn(f"{len(rows)} fit(s) of the comparison raised {kind} ({where}; units "
             f"{units[:20]}): {advice} [all {len(frame)} records: table.attrs['warnings']]",
             _WARNING_KINDS.get(kind, GlmformulaWarning), units=units)


def comparison_table(formulas: dict, results: dict, unit_ids, per_unit: bool,
                     metric: str = "bits_per_spike") -> pd.DataFrame:
    """Assemble the comparison DataFrame from per-model scores (``metric``: the name of the
    score, ``"bits_per_spike"`` or ``"deviance_explained"``, in the column names)."""
    rows = {}
    for name, r in results.items():
        if per_unit:
            for u, unit in enumerate(unit_ids):
                rows[(name, unit)] = _summarise(r, [u])
        else:
            rows[name] = _summarise(r, list(range(len(unit_ids))))
    table = pd.DataFrame.from_dict(rows, orient="index")
    if per_unit:
        table.index = pd.MultiIndex.from_tuples(table.index, names=["model", "unit"])
    else:
        table.index.name = "model"
    _add_likelihood_ratio(table, formulas, per_unit)
    if per_unit:
        best = table.groupby(level="unit")["cv_bits_per_spike"].transform("max")
    else:
        best = table["cv_bits_per_spike"].max()
    table["delta_cv_bits_per_spike"] = table["cv_bits_per_spike"] - best
    columns = ["n_params", "edf", "train_bits_per_spike", "cv_bits_per_spike",
               "cv_bits_per_spike_se", "delta_cv_bits_per_spike", "cv_log_likelihood",
               "log_likelihood", "aic", "bic",
               "lr_stat", "lr_df", "lr_pvalue", "nested_in", "n_rows", "converged", "cv_flag"]
    table = table[columns]
    if metric != "bits_per_spike":
        table = table.rename(columns=lambda c: c.replace("bits_per_spike", metric))
    return table


def fold_bits_per_spike(r: ModelScores, units: list[int]) -> np.ndarray:
    """Held-out bits/spike of each fold, pooled over ``units`` (total gain / total spikes)."""
    gains = np.nan_to_num(r.fold_bps[:, units]) * r.fold_spikes[:, units]
    total = r.fold_spikes[:, units].sum(axis=1)  # spikes, or null deviances (continuous)
    return gains.sum(axis=1) / np.where(total > 0, total, 1)


def _summarise(r: ModelScores, units: list[int]) -> dict:
    n_params = int(r.n_params[units].sum())
    edf = float((r.n_params if r.edf is None else r.edf)[units].sum())
    ll = float(r.train_ll[units].sum())
    spikes = r.train_spikes[units]
    total = spikes.sum()  # spikes, or null deviances (continuous families)
    train_bps = float(np.nansum(r.train_bps[units] * spikes) / (total if total > 0 else 1))
    flag = ""
    if len(r.fold_ll):
        diverged = _diverged(r)[:, units]
        if diverged.any():
            folds = np.flatnonzero(diverged.any(axis=1)) + 1
            flag = f"diverged (fold {', '.join(map(str, folds))})"
            cv_bps, cv_se, cv_ll = -np.inf, np.nan, -np.inf
        else:
            per_fold = fold_bits_per_spike(r, units)
            cv_bps = float(np.mean(per_fold))
            cv_se = float(np.std(per_fold, ddof=1) / np.sqrt(len(per_fold)))
            cv_ll = float(r.fold_ll[:, units].sum())
    else:
        cv_bps = cv_se = cv_ll = np.nan
    return {"n_params": n_params, "edf": edf, "train_bits_per_spike": train_bps,
            "cv_bits_per_spike": cv_bps,
            "cv_bits_per_spike_se": cv_se, "cv_log_likelihood": cv_ll, "log_likelihood": ll,
            "aic": 2 * edf - 2 * ll, "bic": edf * np.log(r.n_rows) - 2 * ll,
            "n_rows": r.n_rows, "converged": bool(np.all(r.converged[units])), "cv_flag": flag}


def _add_likelihood_ratio(table: pd.DataFrame, formulas: dict, per_unit: bool) -> None:
    names = list(formulas)
    stat, df, pvalue, nested = [], [], [], []
    for index, row in table.iterrows():
        name = index[0] if per_unit else index
        key = (lambda n: (n, index[1])) if per_unit else (lambda n: n)
        n_params = {n: table.loc[key(n), "n_params"] for n in names}
        small = largest_nested(name, formulas, n_params)
        if small is None:
            stat.append(np.nan), df.append(np.nan), pvalue.append(np.nan), nested.append("")
            continue
        lr = 2 * (row["log_likelihood"] - table.loc[key(small), "log_likelihood"])
        d = row["n_params"] - table.loc[key(small), "n_params"]
        stat.append(lr), df.append(d), nested.append(small)
        pvalue.append(float(stats.chi2.sf(lr, d)) if d > 0 else np.nan)
    table["lr_stat"], table["lr_df"], table["lr_pvalue"] = stat, df, pvalue
    table["nested_in"] = nested
