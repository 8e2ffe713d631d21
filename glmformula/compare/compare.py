"""``gf.compare``: cross-validated comparison of several formulas on the same data.

All formulas share one feature graph, so a term used by several models is computed once; all
models are fitted and scored on the same rows (the rows every model can use), so likelihoods
are comparable; folds are contiguous blocks of time; each (model, fold) fit is independent
and runs on the executor if one is given.

Cross-validation needs weights and held-out scores only, so the fits here call the backend
directly (no standard errors, no result objects): each model's identifiability rotation is
found once (it depends on the design's valid rows only, not on the fold), fold fits start from
the model's full-data fit, and a model in which every unit reads only a small part of the
stored columns (``history`` without ``coupling``: each unit reads its own 8 filtered columns of
a bank of 8 x units) is solved in groups of units on just the columns each group reads, which
gives the same optimum for a fraction of the work (see :func:`unit_groups`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import pandas as pd
from scipy import stats

from .. import backend, sharding
from ..errors import FitError, FormulaError
from ..fitting import _groups, _rotated, _rotation
from ..graph.constraints import find_constraints
from ..graph.design import build, bind, prepare
from ..results.scores import bits_per_spike, poisson_log_likelihood
from ..terms.formula import parse
from .folds import contiguous_folds
from .nesting import largest_nested


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


@attrs.frozen(eq=False)
class ModelScores:
    """Per-unit results of one model: full-data fit and held-out scores per fold."""

    name: str
    n_params: np.ndarray          # (U,)
    train_ll: np.ndarray          # (U,) nats
    train_bps: np.ndarray         # (U,)
    train_spikes: np.ndarray      # (U,)
    fold_ll: np.ndarray           # (F, U) nats on the held-out rows
    fold_bps: np.ndarray          # (F, U)
    fold_spikes: np.ndarray       # (F, U)
    n_rows: int
    converged: bool


@attrs.frozen(eq=False)
class _Fit:
    """Weights of one cross-validation fit, in the original basis of every term."""

    weights: np.ndarray      # (P, U)
    intercepts: np.ndarray   # (U,)
    converged: np.ndarray    # (U,) bool


@attrs.frozen(eq=False)
class _Model:
    """What every fit of one model shares: constraints, the fitted-to-original rotation, the
    per-unit parameter counts and the unit groups of the solve."""

    constraints: dict
    rotation: np.ndarray | None    # (P, P), None when nothing is constrained
    n_params: np.ndarray           # (U,)
    groups: list | None            # [(units, columns)] or None: all units on all columns


#: Group units (see :func:`unit_groups`) only when that cuts the estimated solver work by
#: at least this factor.
GROUPING_GAIN = 4.0
#: Work of one solver call besides its Hessians, in the units of ``(P + 1)**2 * U`` (the
#: relative cost of a Hessian pass): the passes over the rows, copying the group's columns,
#: dispatch. A rough figure set by hand, not fitted: with it a 50-unit ``history`` model
#: (41 of 433 stored columns per unit) is solved in 25 groups of 2 units, about 7x faster
#: than one call on all columns (2e4 rows, benchmarks/compare.py).
CALL_OVERHEAD = 2000.0


def unit_groups(column_mask: np.ndarray) -> list | None:
    """Split a population into groups of consecutive units solved on only the columns they read.

    Units are independent problems that share the stored design; the solver's work per
    iteration grows like ``(P + 1)**2 * U`` (the Hessians) for P stored columns. When each unit
    reads only a few of them (``history`` alone: the shared columns plus its own filtered
    counts), fitting groups of ``G`` units on the union of their columns costs
    ``sum_g (P_g + 1)**2 * G`` plus a fixed overhead per call, and gives the same optimum for
    every unit (its columns, rows, penalty and data are unchanged). Returns None when one call
    on all columns is as cheap (within :data:`GROUPING_GAIN`), else ``[(units, columns)]``.
    """
    mask = np.asarray(column_mask, bool)
    U, P = mask.shape
    if U < 2:
        return None
    dense = (P + 1) ** 2 * U
    best, best_cost = None, dense / GROUPING_GAIN
    for size in sorted({1, 2, 4, 8, 16, max(1, U // 4), max(1, U // 2)}):
        if size >= U:
            continue
        groups = []
        for start in range(0, U, size):
            units = np.arange(start, min(start + size, U))
            groups.append((units, np.flatnonzero(mask[units].any(axis=0))))
        cost = sum((len(c) + 1) ** 2 * len(u) + CALL_OVERHEAD for u, c in groups)
        if cost < best_cost:
            best, best_cost = groups, cost
    return best


class Comparison:
    """Shared state of one comparison: graph, designs, common rows and folds."""

    def __init__(self, formulas: dict, data, *, bin_size, epochs, cv, regularizer, solver,
                 dtype):
        self.formulas = formulas
        self.graph = bind(list(formulas.values()), data, bin_size=bin_size, epochs=epochs)
        self.designs = {}
        common = None
        for name, formula in formulas.items():
            design = build(prepare(formula, None, graph=self.graph), cache_spike_filters=True)
            self.designs[name] = design
            common = design.valid if common is None else common & design.valid
        self.valid = common
        self.folds = contiguous_folds(common, cv) if cv else []
        self.options = {"regularizer": regularizer, "solver": solver, "dtype": dtype}
        self._full: dict = {}    # full-data fits, used to warm-start the fold fits
        self._models: dict = {}  # name -> _Model

    def model(self, name: str) -> _Model:
        """Constraints, rotation, parameter counts and unit groups of model ``name`` (cached)."""
        if name not in self._models:
            design = self.designs[name]
            plan = design.plan
            if not design.formula.intercept:
                raise FitError("fits without an intercept are not supported yet",
                               formula=str(design.formula),
                               hint="keep the intercept (remove '- 1' / '0 +')")
            shared = tuple(t.text for t in plan.terms if t.role == "shared")
            constraints = find_constraints(design.storage, design.valid, plan.term_storage,
                                           shared)
            n_params = np.array([len(c) for c in plan.unit_columns]) - len(constraints) + 1
            groups = unit_groups(plan.column_mask()) if plan.n_storage else None
            self._models[name] = _Model(constraints, _rotation(constraints, plan)
                                        if constraints else None, n_params, groups)
        return self._models[name]

    def fit(self, name: str, rows: np.ndarray, init: _Fit | None = None) -> _Fit:
        """Fit model ``name`` on ``rows`` (a boolean mask of grid rows, within the valid ones)."""
        design, model = self.designs[name], self.model(name)
        weights = (design.valid & rows).astype(design.storage.dtype)
        if design.plan.n_storage == 0:
            return _mean_rate(design, weights)
        start = None
        if init is not None:
            w = init.weights if model.rotation is None else model.rotation.T @ init.weights
            start = (w, init.intercepts)
        with _rotated(design, model.constraints) as (X, mask):
            problem = backend.Problem(X=X, y=design.counts, column_mask=mask,
                                      offset=design.offset, row_weight=weights,
                                      column_groups=_groups(design.plan))
            try:
                if model.groups is None:
                    solution = sharding.solve_on_devices(problem, init=start, **self.options)
                else:
                    solution = _solve_groups(problem, model.groups, start, self.options,
                                             design.unit_ids)
            except FormulaError:
                raise
            except (ValueError, TypeError) as err:
                raise FitError(f"the fit could not run: {err}",
                               hint="check the regularizer and solver options") from None
        w = np.asarray(solution.weights, float)
        if model.rotation is not None:
            w = model.rotation @ w
        return _Fit(w, np.asarray(solution.intercept, float),
                    np.asarray(solution.converged, bool))

    def heldout(self, name: str, result: _Fit, test: np.ndarray):
        """Log-likelihood (nats) and bits/spike per unit on the test rows."""
        design = self.designs[name]
        rows = np.flatnonzero(test)
        eta = np.broadcast_to(result.intercepts, (len(rows), len(result.intercepts)))
        if design.plan.n_storage and len(rows):
            # Folds are contiguous: multiply the span of rows (a view), then pick the rows.
            lo, hi = rows[0], rows[-1] + 1
            eta = (design.storage[lo:hi] @ result.weights)[rows - lo] + result.intercepts
        if design.offset is not None:
            eta = eta + design.offset[rows, None]
        counts = design.counts[rows].astype(float)
        expected = np.exp(np.clip(eta, -700, 700))
        return (poisson_log_likelihood(counts, expected), bits_per_spike(counts, expected),
                counts.sum(axis=0))

    def run_task(self, name: str, fold: int) -> dict:
        """One unit of work: the fit of model ``name`` on all rows (``fold=-1``) or without
        fold ``fold``, scored on the held-out rows (all rows for ``fold=-1``)."""
        if fold < 0:
            result = self.fit(name, self.valid)
            self._full[name] = result
            ll, bps, spikes = self.heldout(name, result, self.valid)
            return {"ll": ll, "bps": bps, "spikes": spikes, "n_params": self.model(name).n_params,
                    "converged": bool(np.all(result.converged)),
                    "n_rows": int(self.valid.sum()),
                    "unit_ids": tuple(self.designs[name].unit_ids)}
        test = self.folds[fold]
        result = self.fit(name, self.valid & ~test, init=self._full.get(name))
        ll, bps, spikes = self.heldout(name, result, test)
        return {"ll": ll, "bps": bps, "spikes": spikes}

    def tasks(self) -> list[tuple[str, int]]:
        """Every (model, fold) fit, each model's full-data fit first (-1)."""
        return [(name, fold) for name in self.formulas for fold in range(-1, len(self.folds))]

    def score_model(self, name: str) -> ModelScores:
        outputs = {(name, fold): self.run_task(name, fold)
                   for fold in range(-1, len(self.folds))}
        return _assemble(name, outputs, len(self.folds))


def _mean_rate(design, weights: np.ndarray) -> _Fit:
    """``spikes ~ 1`` (plus any offset): the intercept is log(total count / total exposure)."""
    exposure = np.exp(design.offset) if design.offset is not None else np.ones(len(weights))
    with np.errstate(divide="ignore"):
        intercept = np.log((weights @ design.counts.astype(float)) / (weights @ exposure))
    intercept = np.where(np.isfinite(intercept), intercept, np.log(1e-12))
    U = design.counts.shape[1]
    return _Fit(np.zeros((0, U)), intercept, np.ones(U, bool))


def _solve_groups(problem, groups, init, options, unit_ids):
    """Solve each group of units on its own columns; the joined solution over all columns.

    The backend's warnings name units by their position in the group's problem; they are
    passed on once each, with the group's unit ids.
    """
    P, U = problem.X.shape[1], problem.y.shape[1]
    W = np.zeros((P, U))
    b, converged = np.zeros(U), np.zeros(U, bool)
    offset = problem.offset
    seen = set()
    for units, columns in groups:
        sub_offset = offset[:, units] if offset is not None and offset.ndim == 2 \
            and offset.shape[1] > 1 else offset
        sub = backend.Problem(
            X=problem.X[:, columns], y=problem.y[:, units],
            column_mask=problem.column_mask[np.ix_(units, columns)], offset=sub_offset,
            row_weight=problem.row_weight,
            column_groups=None if problem.column_groups is None
            else tuple(problem.column_groups[c] for c in columns))
        start = None if init is None else (np.asarray(init[0])[np.ix_(columns, units)],
                                           np.asarray(init[1])[units])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            solution = sharding.solve_on_devices(sub, init=start, **options)
        for w in caught:
            ids = [unit_ids[u] for u in units]
            text = f"{w.message} [units numbered within the group of unit ids {ids}]"
            if (w.category, text) not in seen:
                seen.add((w.category, text))
                warnings.warn(text, w.category, stacklevel=4)
        W[np.ix_(columns, units)] = solution.weights
        b[units] = solution.intercept
        converged[units] = solution.converged
    return _Joined(W, b, converged)


@attrs.frozen(eq=False)
class _Joined:
    weights: np.ndarray
    intercept: np.ndarray
    converged: np.ndarray


def compare(models, data: Mapping, *, bin_size, epochs=None, cv: int = 5, regularizer=None,
            solver: str = "auto", dtype=None, per_unit: bool = False, progress: bool = False,
            executor=None) -> pd.DataFrame:
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

    Returns
    -------
    DataFrame
        Indexed by model (or (model, unit)); columns n_params, train_bits_per_spike,
        cv_bits_per_spike, cv_bits_per_spike_se, delta_cv_bits_per_spike, cv_log_likelihood,
        log_likelihood, aic, bic, lr_stat, lr_df, lr_pvalue, nested_in, converged.
    """
    formulas = _named(models)
    options = dict(bin_size=bin_size, epochs=epochs, cv=cv, regularizer=regularizer,
                   solver=solver, dtype=dtype)
    if executor is not None:
        from .distributed import run_distributed
        outputs = run_distributed(executor, formulas, data, options, progress)
        results = {name: _assemble(name, outputs, cv) for name in formulas}
        unit_ids = outputs[(next(iter(formulas)), -1)]["unit_ids"]
        return comparison_table(formulas, results, unit_ids, per_unit)
    comparison = Comparison(formulas, data, **options)
    outputs = {}
    for task in _progress(comparison.tasks(), progress, "fits (model x fold)"):
        outputs[task] = comparison.run_task(*task)
    results = {name: _assemble(name, outputs, len(comparison.folds)) for name in formulas}
    return comparison_table(formulas, results, comparison.designs[next(iter(formulas))].unit_ids,
                            per_unit)


def _assemble(name, outputs, cv) -> ModelScores:
    full = outputs[(name, -1)]
    F, U = (cv or 0), len(full["ll"])
    folds = [outputs[(name, f)] for f in range(F)]
    stack = lambda key: np.asarray([o[key] for o in folds]).reshape(F, U)  # noqa: E731
    return ModelScores(name, np.asarray(full["n_params"]), full["ll"], full["bps"],
                       full["spikes"], stack("ll"), stack("bps"), stack("spikes"),
                       int(full["n_rows"]), bool(full["converged"]))


def _progress(items, enabled: bool, what: str):
    if not enabled:
        return items
    from rich.progress import track
    return track(list(items), description=what, transient=True)


def comparison_table(formulas: dict, results: dict, unit_ids, per_unit: bool) -> pd.DataFrame:
    """Assemble the comparison DataFrame from per-model scores."""
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
    columns = ["n_params", "train_bits_per_spike", "cv_bits_per_spike", "cv_bits_per_spike_se",
               "delta_cv_bits_per_spike", "cv_log_likelihood", "log_likelihood", "aic", "bic",
               "lr_stat", "lr_df", "lr_pvalue", "nested_in", "n_rows", "converged"]
    return table[columns]


def fold_bits_per_spike(r: ModelScores, units: list[int]) -> np.ndarray:
    """Held-out bits/spike of each fold, pooled over ``units`` (total gain / total spikes)."""
    gains = np.nan_to_num(r.fold_bps[:, units]) * r.fold_spikes[:, units]
    return gains.sum(axis=1) / np.maximum(r.fold_spikes[:, units].sum(axis=1), 1)


def _summarise(r: ModelScores, units: list[int]) -> dict:
    n_params = int(r.n_params[units].sum())
    ll = float(r.train_ll[units].sum())
    spikes = r.train_spikes[units]
    train_bps = float(np.nansum(r.train_bps[units] * spikes) / max(spikes.sum(), 1))
    if len(r.fold_ll):
        per_fold = fold_bits_per_spike(r, units)
        cv_bps = float(np.mean(per_fold))
        cv_se = float(np.std(per_fold, ddof=1) / np.sqrt(len(per_fold)))
        cv_ll = float(r.fold_ll[:, units].sum())
    else:
        cv_bps = cv_se = cv_ll = np.nan
    return {"n_params": n_params, "train_bits_per_spike": train_bps, "cv_bits_per_spike": cv_bps,
            "cv_bits_per_spike_se": cv_se, "cv_log_likelihood": cv_ll, "log_likelihood": ll,
            "aic": 2 * n_params - 2 * ll, "bic": n_params * np.log(r.n_rows) - 2 * ll,
            "n_rows": r.n_rows, "converged": r.converged}


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
