"""The shared state of a comparison and its unit of work: one (model, fold) fit, scored.

All formulas share one feature graph, so a term used by several models is computed once; all
models are fitted and scored on the same rows (the rows every model can use), so likelihoods
are comparable; folds are contiguous blocks of time. Each fit is one call of the fitting
engine (:func:`glmformula.fitting.fit_design`) without standard errors: each model's
identifiability constraints are found once (they depend on the design's valid rows, not on
the fold) and fold fits start from the model's fit on all rows.

Warnings of a fit are recorded with the model and the fold (see
:func:`glmformula.errors.warning_context`) and returned with its scores, so that the
comparison can report each kind once with counts.

The score of a fold depends on the family (``family=``): bits per spike for the count
families; for gamma and gaussian, whose response has no spikes, the deviance explained. Both
pool over units the same way (a per-unit score weighted by a per-unit amount: spikes, or the
null deviance), so :class:`ModelScores` keeps them in the same fields (``*_bps`` the score,
``*_spikes`` its weight).
"""

from __future__ import annotations

import time

import attrs
import numpy as np

from ..errors import deferred_warnings, warning_context
from ..fitting import engine, poisson
from ..fitting.engine import FitOptions
from ..fitting.families import get_family
from ..fitting.threads import map_on_threads, workers_for
from ..graph.design import bind, build, prepare
from ..results import scores
from .folds import contiguous_folds
from .nesting import is_nested


@attrs.frozen(eq=False)
class ModelScores:
    """Per-unit results of one model: full-data fit and held-out scores per fold."""

    name: str
    n_params: np.ndarray          # (U,)
    train_ll: np.ndarray          # (U,) nats
    train_bps: np.ndarray         # (U,) bits/spike, or deviance explained (continuous family)
    train_spikes: np.ndarray      # (U,) spikes, or the null deviance (continuous family)
    fold_ll: np.ndarray           # (F, U) nats on the held-out rows
    fold_bps: np.ndarray          # (F, U)
    fold_spikes: np.ndarray       # (F, U)
    n_rows: int
    converged: np.ndarray         # (U,) bool: every fit behind the unit's scores converged
    warnings: tuple = ()          # records: dict(kind, model, fold, units, message)
    edf: np.ndarray | None = None  # (U,) effective degrees of freedom (None: n_params)


@attrs.frozen(eq=False)
class _Model:
    """What every fit of one model shares: constraints and per-unit parameter counts."""

    constraints: dict
    n_params: np.ndarray           # (U,)


#: A model's folds run side by side on threads only below this many multiply-adds per pass
#: over the design (grid rows x stored columns x units): a larger fold's kernels keep the
#: cores busy alone. Measured on the real head-direction recording (2 cores): the coupled
#: model's REML folds (226k x 268 x 32 = 1.9e9) took 35-52 s each two at a time against
#: 15-18 s one at a time (docs/performance_decisions.md, 'Independent problems on threads').
FOLDS_SIDE_BY_SIDE_BELOW = 2e8

#: Folds fitted by L-BFGS begin with the fit on all rows' last preconditioner (False: each
#: forms the Gram matrix and the Hessian at its start): on the real coupled head-direction
#: model each fold's 32-unit loop took 1.2-1.9 s less, 11 fewer Hessian-type passes in five
#: folds for 10 more product passes (docs/performance_decisions.md, 'Folds start with the
#: full fit's preconditioner'); a switch for that A/B (benchmarks/fold_preconditioner.py).
SHARED_PRECONDITIONER = True


class Comparison:
    """Shared state of one comparison: graph, designs, common rows and folds."""

    def __init__(self, formulas: dict, data, *, bin_size, epochs, cv, regularizer, solver,
                 dtype, family="poisson", smoothing="auto", select=False,
                 nested_starts: bool = True):
        self.family = get_family(family)
        self.formulas = dict(formulas)
        self.graph = bind(list(formulas.values()), data, bin_size=bin_size, epochs=epochs,
                          response_kind=self.family.response_kind)
        self.designs = {}
        for name, formula in formulas.items():
            self.add(name, formula)
        common = None
        for design in self.designs.values():
            common = design.valid if common is None else common & design.valid
        self.valid = common
        self.folds = contiguous_folds(common, cv) if cv else []
        # smoothness strengths are chosen inside each fit, so a fold's come from its
        # training rows only
        self.options = FitOptions(regularizer=regularizer, solver=solver, dtype=dtype,
                                  family=self.family.name, smoothing=smoothing, select=select)
        self._full: dict = {}    # full-data fits, used to warm-start the fold fits
        # ... and the fit on all rows of a model in which one of them is nested (off on a
        # distributed worker, whose cache holds whichever fits it happened to run)
        self.nested_starts = nested_starts
        self._models: dict = {}  # name -> _Model

    def add(self, name: str, formula) -> None:
        """Build the design of another formula on the shared graph."""
        self.formulas[name] = formula
        self.designs[name] = build(prepare(formula, None, graph=self.graph),
                                   cache_spike_filters=True)

    def model(self, name: str) -> _Model:
        """Constraints and parameter counts of model ``name`` (cached)."""
        if name not in self._models:
            design = self.designs[name]
            engine.check_fittable(design.formula)
            constraints = engine.design_constraints(design) if design.plan.n_storage else {}
            n_params = engine.parameter_counts(design.plan.unit_columns, constraints)
            self._models[name] = _Model(constraints, n_params)
        return self._models[name]

    def fit(self, name: str, rows: np.ndarray, init=None,
            private_rows: bool = False, fold: bool = False,
            preconditioner=None) -> engine.EngineFit:
        """Fit model ``name`` on ``rows`` (a boolean mask of grid rows, within the valid ones;
        ``private_rows``: on a copy of them; ``fold``: a cross-validation fold's fit, see
        :func:`..fitting.engine.fit_design`). Its weights are only scored, so without a REML
        search they stop at :func:`..fitting.engine.scored_tolerance`. A Poisson fit on all
        rows also reports its training log-likelihood, which an unpenalised fit takes from the
        solver's objective without a pass over the design (:meth:`heldout` scores the
        training rows with it). ``preconditioner``: the fit on all rows' (L-BFGS), for a fold
        that starts at that fit (:func:`..fitting.engine.fit_design`)."""
        return engine.fit_design(self.designs[name], self.options, row_weight=rows, init=init,
                                 covariance=False,
                                 log_likelihood=not fold and self.family.name == "poisson",
                                 constraints=self.model(name).constraints,
                                 private_rows=private_rows, fold=fold, reported=False,
                                 preconditioner=preconditioner)

    def _nested_start(self, name: str):
        """A warm start for model ``name``'s fit on all rows from the fit on all rows of the
        largest model nested in it that is already fitted in this process (None if none):
        its weights on the columns both read (matched per unit by term and label; 0 on the
        others), its intercepts and its smoothness strengths by penalty key. Only training
        rows are involved (the fits on all rows). For REML (``smoothing="auto"``) the answer
        is the same optimum or a better one, in fewer iterations (the real coupled
        head-direction model after the history model's fit: 8 strength iterations instead of
        13, 27 s instead of 43 s, a lower criterion for 7 of 32 cells); a fit without REML
        starts there only where its units are fitted in groups on their own columns (Newton on
        each unit's few columns, :func:`..fitting.engine.fitted_in_groups`): the real
        head-direction history model after the head-direction model took 8 Newton iterations
        at most instead of 13 (1.8 s instead of 2.8 s), the same cv bits/spike; L-BFGS on the
        unpenalised coupled model after the history model took 52 iterations instead of 41 and
        stopped elsewhere on its nearly separated units (cv bits/spike 1.32667 against
        1.33402), so a fit on all columns without REML starts as before
        (docs/performance_decisions.md, 'Nested starts for Newton's groups; where the history
        model's iterations go')."""
        if not self.nested_starts:
            return None
        large = self.designs[name]
        if self.options.smoothing is None and not engine.fitted_in_groups(
                large, self.model(name).constraints, self.valid):
            return None
        fitted = [other for other in self._full
                  if other != name and is_nested(self.designs[other].formula, large.formula)]
        if not fitted:
            return None
        other = max(fitted, key=lambda n: int(np.sum(self.model(n).n_params)))
        small, result = self.designs[other], self._full[other]
        if small.plan.unit_ids != large.plan.unit_ids:
            return None
        weights = np.zeros((len(large.plan.storage_columns), len(large.plan.unit_ids)))
        for u, (columns, labels) in enumerate(zip(large.plan.unit_columns,
                                                  large.plan.unit_labels)):
            where = dict(zip(small.plan.unit_labels[u], small.plan.unit_columns[u]))
            for column, label in zip(columns, labels):
                if label in where:
                    weights[column, u] = result.weights[where[label], u]
        smooth = result.smoothing
        strengths = {} if smooth is None else dict(zip(smooth.keys, smooth.strength))
        return weights, np.asarray(result.intercepts, float), strengths

    def heldout(self, name: str, result: engine.EngineFit, test: np.ndarray,
                train: bool = False):
        """Log-likelihood (nats), bits/spike and spikes per unit on the test rows (for gamma
        and gaussian: log-likelihood, deviance explained and null deviance; ``train``: the
        rows fitted, where the gaussian log-likelihood is at its maximum-likelihood variance,
        as the fit's own)."""
        design = self.designs[name]
        rows = np.flatnonzero(test)
        counts = design.counts[rows].astype(float)
        if self.family.name == "poisson":
            # the fit's own training log-likelihood where it has one (no pass over the rows)
            ll = np.asarray(result.diagnostics.log_likelihood, float) if train else None
            if ll is None or not np.all(np.isfinite(ll)):
                ll = poisson.log_likelihood(counts, poisson.expected_counts(
                    self._linear_predictor(design, result, rows)))
            return (ll, scores.bits_per_spike(counts, None, model_log_likelihood=ll),
                    counts.sum(axis=0))
        eta = self._linear_predictor(design, result, rows)
        gaussian_train = train and self.family.name == "gaussian"
        parts = scores.family_parts(counts, self.family.mean(eta), self.family,
                                    None if gaussian_train else result.dispersion)
        if self.family.counts:
            with np.errstate(invalid="ignore", divide="ignore"):
                bps = np.where(parts["spikes"] > 0, (parts["ll"] - parts["ll_null"])
                               / (parts["spikes"] * np.log(2)), np.nan)
            return parts["ll"], bps, parts["spikes"]
        with np.errstate(invalid="ignore", divide="ignore"):
            explained = 1 - parts["deviance"] / parts["null_deviance"]
        return parts["ll"], explained, parts["null_deviance"]

    @staticmethod
    def _linear_predictor(design, result: engine.EngineFit, rows: np.ndarray) -> np.ndarray:
        """The fit's linear predictor on ``rows`` (indices of grid rows), (rows, U)."""
        eta = np.broadcast_to(result.intercepts, (len(rows), len(result.intercepts)))
        if design.plan.n_storage and len(rows):
            # Folds are contiguous: multiply the span of rows (a view), then pick the rows.
            lo, hi = rows[0], rows[-1] + 1
            eta = (design.storage[lo:hi] @ result.weights)[rows - lo] + result.intercepts
        if design.offset is not None:
            eta = eta + design.offset[rows, None]
        return eta

    def run_task(self, name: str, fold: int, private_rows: bool = False) -> dict:
        """One unit of work: the fit of model ``name`` on all rows (``fold=-1``) or without
        fold ``fold``, scored on the held-out rows (all rows for ``fold=-1``).
        ``private_rows``: a fold fit on a copy of its rows, the design untouched (folds
        running side by side)."""
        where = f"model {name!r}" + ("" if fold < 0 else f", fold {fold + 1}")
        started = time.perf_counter()
        with deferred_warnings() as caught, warning_context(where):
            if fold < 0:
                result = self.fit(name, self.valid, init=self._nested_start(name))
                self._full[name] = result
                test = self.valid
            else:
                test = self.folds[fold]
                train = self.valid & ~test
                full = self._full.get(name)
                # A strength is per row of the mean loss (lam / n); the prior precision lam
                # does not change with the number of rows, so the fold starts from the same
                # lam (real coupled HD model: REML's strengths end within ~0.1 of it, against
                # ~0.3 from the same per-row strength)
                # ... and steers by its REML slope at the answer until it has its own (the
                # slope 0.5 tr(A^-1 dH/drho) barely changes with the number of rows)
                smooth = None if full is None else full.smoothing
                init = None if full is None else (full.weights, full.intercepts) + (
                    () if smooth is None else
                    (smooth.strength * (self.valid.sum() / max(train.sum(), 1)), smooth.slope))
                # ... and, for L-BFGS, begins with its last preconditioner (the mean Hessian
                # barely changes when a fold's rows are left out) instead of forming one
                result = self.fit(name, train, init=init, private_rows=private_rows, fold=True,
                                  preconditioner=None if full is None or not SHARED_PRECONDITIONER
                                  else full.preconditioner)
        ll, bps, spikes = self.heldout(name, result, test, train=fold < 0)
        output = {"ll": ll, "bps": bps, "spikes": spikes,
                  "converged": np.asarray(result.diagnostics.converged, bool),
                  "warnings": _records(caught, name, fold),
                  "seconds": time.perf_counter() - started}
        if fold < 0:
            n_params = self.model(name).n_params
            edf = n_params if result.smoothing is None else np.where(
                np.isfinite(result.smoothing.total_edf), result.smoothing.total_edf, n_params)
            output.update({"n_params": n_params, "edf": np.asarray(edf, float),
                           "n_rows": int(self.valid.sum()),
                           "unit_ids": tuple(self.designs[name].unit_ids)})
        return output

    def run_model(self, name: str) -> dict:
        """The outputs of model ``name``'s tasks (:meth:`run_task`): its fit on all rows,
        then its folds, several at once on threads (:func:`..fitting.threads.map_on_threads`;
        each fold's answer is the same as alone, its warnings recorded as alone) where the
        model is small enough (:data:`FOLDS_SIDE_BY_SIDE_BELOW`)."""
        outputs = {(name, -1): self.run_task(name, -1)}
        folds = list(range(len(self.folds)))
        design = self.designs[name]
        storage = design.storage
        work = float(0 if storage is None else storage.size) * len(design.unit_ids)
        if work >= FOLDS_SIDE_BY_SIDE_BELOW:  # one fold keeps the cores busy alone
            done = [self.run_task(name, fold) for fold in folds]
        else:
            # a fold holds a copy of its rows, L-BFGS that copy transposed
            # (backend.problem.with_transposed_rows), and its solver's arrays
            fold_bytes = 0 if storage is None else 3 * storage.nbytes
            # side by side, each fold fits a copy of its rows: a fit rotates its design's
            # constrained columns in place, and the other folds must not see that
            private = workers_for(len(folds), fold_bytes) > 1
            done = map_on_threads(lambda fold: self.run_task(name, fold, private), folds,
                                  fold_bytes)
        outputs.update({(name, fold): output for fold, output in zip(folds, done)})
        return outputs

    def score_model(self, name: str) -> ModelScores:
        return assemble(name, self.run_model(name), len(self.folds))


def _records(caught, model: str, fold: int) -> list[dict]:
    """The glmformula warnings of one fit (``(message, category, units)``, as
    :func:`..errors.deferred_warnings` collects them) as plain records (picklable: they travel
    back from workers)."""
    return [{"kind": category.__name__, "model": model, "fold": "all" if fold < 0 else fold + 1,
             "units": list(units), "message": message} for message, category, units in caught]


def assemble(name: str, outputs: dict, cv) -> ModelScores:
    """One model's :class:`ModelScores` from the outputs of its tasks."""
    full = outputs[(name, -1)]
    F, U = (cv or 0), len(full["ll"])
    folds = [outputs[(name, f)] for f in range(F)]
    stack = lambda key: np.asarray([o[key] for o in folds]).reshape(F, U)  # noqa: E731
    converged = np.logical_and.reduce([full["converged"]] + [o["converged"] for o in folds])
    records = tuple(r for o in [full] + folds for r in o.get("warnings", ()))
    return ModelScores(name, np.asarray(full["n_params"]), full["ll"], full["bps"],
                       full["spikes"], stack("ll"), stack("bps"), stack("spikes"),
                       int(full["n_rows"]), np.asarray(converged, bool), records,
                       np.asarray(full.get("edf", full["n_params"]), float))


__all__ = ["Comparison", "ModelScores", "assemble"]
