"""The fitted model, read in terms of the formula: per-term tables, predictions, scores.

:class:`FitResult` keeps everything needed to apply the model to new data (the formula, the
binning, the statistics learned from the training data) and nothing tied to the training
arrays, so it can be saved and loaded (see :mod:`.persistence`).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np
import pandas as pd
import pynapple as nap
from scipy import stats

from ..errors import FormulaError
from ..graph.design import build, prepare
from ..terms.formula import Formula, parse
from . import scores
from .covariance import CovarianceStack, as_covariance_stack
from .curves import select_units
from .evaluation import record_covariate_ranges


@attrs.frozen(eq=False)
class FitResult:
    """A fitted Poisson GLM for one or several units.

    Attributes
    ----------
    formula : Formula
    unit_ids : tuple
        The response units, in the TsGroup's order.
    bin_size : float
        Seconds.
    epochs : ndarray (E, 2)
        The epochs fitted (s).
    storage_columns : tuple of str
        Names of the stored design columns (see :class:`~glmformula.DesignMatrix`).
    unit_columns, unit_labels :
        Per unit: stored column indices of its own design, and their (term, label).
    weights : ndarray (P, U)
        Weights of the stored columns in the original basis (0 where a unit does not use one).
    intercepts : ndarray (U,)
    covariance : CovarianceStack
        Covariance of (intercept, weights) from the (penalised) Fisher information; an array
        (U, P+1, P+1) to numpy, ``covariance[u]`` one unit's. Large fits compute a unit's
        the first time it is used (see :mod:`glmformula.information`).
    state : dict
        Statistics learned from the training data (basis ranges, means), by node text.
    covariate_ranges : dict
        Covariate name -> :class:`~glmformula.results.evaluation.CovariateRange`: the values each
        covariate took on the training rows (curves of bare covariates span them).
    """

    formula: Formula
    unit_ids: tuple
    bin_size: float
    epochs: np.ndarray
    storage_columns: tuple
    unit_columns: tuple
    unit_labels: tuple
    term_storage: dict
    weights: np.ndarray
    intercepts: np.ndarray
    covariance: CovarianceStack = attrs.field(converter=as_covariance_stack)
    state: dict
    log_likelihood_units: np.ndarray
    n_rows: int
    n_spikes: np.ndarray
    converged_units: np.ndarray
    n_iter_units: np.ndarray
    grad_norm: np.ndarray
    solver: str
    dtype: str
    regularizer: object = None
    constrained_terms: tuple = ()
    fit_seconds: float = float("nan")
    compile_seconds: float = float("nan")
    dropped: dict = attrs.field(factory=dict)
    chunk_size: int | None = None  # bins per block of a blocked fit; None: in memory
    covariate_ranges: dict = attrs.field(factory=dict)

    @classmethod
    def from_fit(cls, *, design, weights, intercept, covariance, solution, log_likelihood,
                 row_weight, regularizer, constraints) -> "FitResult":
        plan = design.plan
        used = row_weight > 0
        return cls(
            formula=design.formula, unit_ids=tuple(plan.unit_ids),
            bin_size=design.grid.bin_size,
            epochs=np.stack([design.grid.starts, design.grid.ends], axis=1),
            storage_columns=plan.storage_columns, unit_columns=plan.unit_columns,
            unit_labels=plan.unit_labels, term_storage=dict(plan.term_storage),
            weights=np.asarray(weights, float), intercepts=np.asarray(intercept, float),
            covariance=covariance, state=dict(design.graph.state),
            log_likelihood_units=np.asarray(log_likelihood, float), n_rows=int(used.sum()),
            n_spikes=np.asarray(design.counts[used].sum(axis=0), float),
            converged_units=np.asarray(solution.converged, bool).reshape(-1),
            n_iter_units=np.broadcast_to(np.asarray(solution.n_iter), (len(plan.unit_ids),)).copy(),
            grad_norm=np.asarray(solution.grad_norm, float).reshape(-1),
            solver=str(solution.solver), dtype=str(solution.dtype), regularizer=regularizer,
            constrained_terms=tuple(constraints),
            fit_seconds=float(getattr(solution, "solve_seconds", np.nan)),
            compile_seconds=float(getattr(solution, "compile_seconds", np.nan)),
            dropped=dict(design.dropped),
            covariate_ranges=record_covariate_ranges(design, used))

    # -- coefficients ------------------------------------------------------------------------
    @property
    def rows(self) -> pd.MultiIndex:
        """(term, column) of every coefficient, in formula order, over all units."""
        seen = {}
        for labels in self.unit_labels:
            for pair in labels:
                seen.setdefault(pair, None)
        order = {t: i for i, t in enumerate(self.formula.terms)}
        pairs = sorted(seen, key=lambda p: order.get(p[0], len(order)))  # stable within term
        return pd.MultiIndex.from_tuples(pairs, names=["term", "column"])

    def _unit_values(self, values_of_unit, units=None) -> pd.DataFrame:
        """Rows (term, column) x the unit positions ``units`` (default all)."""
        units = range(len(self.unit_ids)) if units is None else units
        index = self.rows
        position = {pair: i for i, pair in enumerate(index)}
        out = np.full((len(index), len(units)), np.nan)
        for i, u in enumerate(units):
            for pair, value in zip(self.unit_labels[u], values_of_unit(u)):
                out[position[pair], i] = value
        return pd.DataFrame(out, index=index,
                            columns=pd.Index([self.unit_ids[u] for u in units], name="unit"))

    @property
    def coef(self) -> pd.DataFrame:
        """Weights: rows MultiIndex (term, column), columns unit ids (NaN: not in that unit's
        model, e.g. a unit's coupling to itself)."""
        return self._unit_values(lambda u: self.weights[self.unit_columns[u], u])

    @property
    def intercept(self) -> pd.Series:
        """Intercept per unit (log expected count per bin)."""
        return pd.Series(self.intercepts, index=pd.Index(self.unit_ids, name="unit"),
                         name="intercept")

    def standard_errors(self, unit=None) -> pd.DataFrame:
        """Standard errors of :attr:`coef` from the Fisher information (all units, or the
        column of ``unit`` only: a large fit then computes just that unit's covariance)."""
        units = [self.unit_ids.index(u) for u in select_units(self, unit)]
        self.covariance.compute(units)

        def se(u):
            idx = self.unit_columns[u] + 1
            return np.sqrt(np.clip(self.covariance.diagonal(u)[idx], 0, None))
        return self._unit_values(se, units)
    def resolve_term(self, term: str) -> str:
        """Canonical text of a term given by its text or a short alias (``"hd"``)."""
        terms = self.formula.terms
        if term in terms:
            return term
        try:
            canonical = str(parse(f"y ~ {term}").term_objects[0])
            if canonical in terms:
                return canonical
        except FormulaError:
            pass
        matches = [t for t in terms if term in self.formula.term(t).variables()
                   or t.split("(")[0] == term]
        if len(matches) == 1:
            return matches[0]
        raise FormulaError(
            f"no term {term!r} in the model" + (" (ambiguous)" if matches else ""),
            hint="terms: " + ", ".join(terms))

    def table(self, term: str, unit=None) -> pd.DataFrame:
        """One term's coefficients with standard errors, z and p (two-sided Wald) per weight.

        Rows: (unit, column); columns: estimate, std_error, z, p_value, lower, upper (95%).
        """
        term = self.resolve_term(term)
        coef = self.coef.xs(term, level="term")
        se = self.standard_errors(unit).xs(term, level="term")
        frames = []
        for unit in select_units(self, unit):
            est, err = coef[unit], se[unit]
            z = est / err
            frame = pd.DataFrame({
                "estimate": est, "std_error": err, "z": z,
                "p_value": 2 * stats.norm.sf(np.abs(z)),
                "lower": est - 1.959963984540054 * err, "upper": est + 1.959963984540054 * err})
            frame.index = pd.MultiIndex.from_product([[unit], frame.index],
                                                     names=["unit", "column"])
            frames.append(frame.dropna(how="all"))
        return pd.concat(frames)

    # -- model size and information criteria -------------------------------------------------
    @property
    def n_params_units(self) -> np.ndarray:
        """Free parameters per unit: its columns, minus one per constrained term, plus the
        intercept."""
        n = np.array([len(c) for c in self.unit_columns]) - len(self.constrained_terms)
        return n + int(self.formula.intercept)

    @property
    def n_params(self) -> int:
        return int(self.n_params_units.sum())

    @property
    def log_likelihood(self) -> float:
        """Training log-likelihood (nats), summed over units."""
        return float(self.log_likelihood_units.sum())

    @property
    def aic(self) -> float:
        return 2 * self.n_params - 2 * self.log_likelihood

    @property
    def bic(self) -> float:
        return self.n_params * np.log(self.n_rows) - 2 * self.log_likelihood

    @property
    def converged(self) -> bool:
        return bool(np.all(self.converged_units))

    @property
    def n_iter(self) -> int:
        return int(np.max(self.n_iter_units))

    # -- prediction and scores ---------------------------------------------------------------
    def design(self, data: Mapping, *, epochs=None):
        """The design of this model on ``data`` with the training statistics."""
        prepared = prepare(self.formula, data, bin_size=self.bin_size, epochs=epochs,
                           state=dict(self.state))
        design = build(prepared)
        if tuple(design.plan.storage_columns) != tuple(self.storage_columns):
            raise FormulaError(
                "the new data give different columns than the training data (different units "
                "or covariate columns)", hint="predict on data with the same units and names")
        return design

    def _linear_predictor(self, design) -> np.ndarray:
        eta = design.storage @ self.weights + self.intercepts
        if design.offset is not None:
            eta = eta + design.offset[:, None]
        return eta

    def predict(self, data: Mapping, *, epochs=None):
        """Firing rate (Hz) on the rows of new data: Tsd (one unit) or TsdFrame."""
        design = self.design(data, epochs=epochs)
        rows = design.rows
        rate = np.exp(np.clip(self._linear_predictor(design)[rows], -700, 700)) / self.bin_size
        support = design.time_support
        if len(self.unit_ids) == 1:
            return nap.Tsd(t=design.times, d=rate[:, 0], time_support=support)
        return nap.TsdFrame(t=design.times, d=rate, columns=list(self.unit_ids),
                            time_support=support)

    def score(self, data: Mapping, metric: str = "bits_per_spike", *, epochs=None,
              per_unit: bool = False):
        """Goodness of fit on ``data``: ``"bits_per_spike"``, ``"pseudo_r2"`` or
        ``"log_likelihood"`` (nats). Pooled over units unless ``per_unit``."""
        design = self.design(data, epochs=epochs)
        rows = design.rows
        counts = design.counts[rows].astype(float)
        expected = np.exp(np.clip(self._linear_predictor(design)[rows], -700, 700))
        return scores.score_counts(counts, expected, metric, self.unit_ids, per_unit)

    def simulate(self, data: Mapping, *, seed=0, epochs=None, max_rate: float = 1000.0):
        """Poisson spike counts drawn from the model on the bins of ``data``.

        Without ``history``/``coupling`` terms the counts are Poisson draws of
        :meth:`predict` (times the bin size). With them the draw is recurrent, bin by bin:
        each bin's rate reads the *simulated* past of the modelled units (recorded counts for
        units the model reads but does not model), and the past is empty at each epoch start,
        as the design's filters never reach across an epoch border.

        Parameters
        ----------
        data : mapping
            Names -> pynapple objects, with the covariates (and the response: its spike times
            are only read for units the model couples to but does not model).
        seed : int or numpy.random.Generator
            Seed of the draws; the same seed gives the same counts.
        epochs : IntervalSet or str, optional
            Epochs to simulate (default: as for :meth:`predict`).
        max_rate : float
            Ceiling on the rate (Hz), so that a runaway excitatory network stays finite.

        Returns
        -------
        Tsd or TsdFrame
            Integer spike counts per bin (columns: unit ids), at bin centres (s), with the epochs
            as time support. Every bin of the epochs where the covariates are defined is
            simulated, including the first ``window`` bins of each epoch (whose past is empty);
            bins with a missing covariate are left out (and given no spikes).
        """
        from .simulate import simulate
        return simulate(self, data, seed=seed, epochs=epochs, max_rate=max_rate)

    # -- curves, summaries and plots ---------------------------------------------------------
    def curve(self, term: str, *, n_points: int = 100, scale: str = "gain",
              unit=None) -> pd.DataFrame:
        """The term's effect on the firing rate as a function of what it encodes, with 95%
        pointwise bands (delta method on :attr:`covariance`).

        * a basis or covariate term (``cyclic(hd, 12)``, ``rcos(x, 7)``, ``speed``,
          ``log(speed)``): a tuning curve over ``n_points`` values of the covariate (a full
          period for ``cyclic``; the training range otherwise; 0 and 1 for an IntervalSet);
        * an interaction of two bases (``rcos(x, 5):rcos(y, 5)``): a map on an
          ``n_points x n_points`` grid, index MultiIndex (x, y);
        * an interaction of a basis with a scalar (``cyclic(hd, 8):speed``): the change per unit
          of the scalar (held at 1), as a function of the other covariate (a gain curve);
        * ``filter``, ``history``, ``coupling``: the filter over lag ``j * bin_size`` s,
          ``j = 1 .. window`` (index ``"lag (s)"``; ``n_points`` is not used), the per-bin
          weight of one spike (or one unit of the covariate) ``j`` bins back.

        A term constrained to average zero over the training rows (see
        :attr:`constrained_terms`) gives the centred effect: the curve minus its mean over the
        training rows, with the band of that centred effect.

        Parameters
        ----------
        term : str
            Canonical text or a short alias (``"hd"``, ``"history"``).
        n_points : int
            Grid points per covariate.
        scale : {"gain", "log"}
            ``"gain"``: the multiplicative gain on the rate ``exp(effect)`` and ``exp`` of the
            band; ``"log"``: the effect and band in log-rate.
        unit : unit id or list, optional
            Units to return (default: all).

        Returns
        -------
        DataFrame
            Indexed by the grid (named after the covariate, or ``"lag (s)"``); columns a
            MultiIndex (unit, stat) with stat ``"estimate" | "lower" | "upper"``, or
            (unit, source, stat) for ``coupling`` (source: the presynaptic unit).
        """
        from .curves import curve
        return curve(self, term, n_points=n_points, scale=scale, unit=unit)

    def coupling_matrix(self, *, statistic: str = "integral") -> pd.DataFrame:
        """Functional connectivity: a summary of each coupling filter, post x pre.

        Parameters
        ----------
        statistic : {"integral", "peak"}
            ``"integral"``: the sum over lags of the log-space filter ``sum_j (K w)_j`` (the
            total log-rate change a spike of the source causes over the window);
            ``"peak"``: the filter's value of largest magnitude.

        Returns
        -------
        DataFrame
            Rows: target units (``post``); columns: source units (``pre``), labelled by unit id.
            NaN on the diagonal (a unit never couples to itself) and for pairs not modelled.
        """
        from .curves import coupling_matrix
        return coupling_matrix(self, statistic=statistic)

    def summary(self, *, data: Mapping | None = None, refit: bool = False) -> pd.DataFrame:
        """One row per (term, unit): the term's size and the Wald test of the whole term.

        Columns: ``columns`` (the unit's weights in the term), ``df`` (free weights: one fewer
        for a term constrained to sum to zero), ``wald_chi2`` (``w' S^+ w``), ``p_value``
        (chi-square, ``df``). With ``refit=True`` (``data`` = the training data) each term is
        dropped in turn and the formula refitted on the same rows: ``lr_stat`` (twice the
        log-likelihood lost), ``lr_pvalue`` and ``deviance_explained`` (``lr_stat`` over the
        null deviance: the share of the mean-rate model's deviance this term explains on its
        own). Print it with :meth:`print_summary`.

        Returns
        -------
        DataFrame
            Index MultiIndex (term, unit).
        """
        from .summary import summary
        return summary(self, data=data, refit=refit)

    def print_summary(self, *, data: Mapping | None = None, refit: bool = False,
                      console=None) -> None:
        """Print :meth:`summary` as a table (rich) under the fit's headline numbers."""
        from .summary import render
        render(self, self.summary(data=data, refit=refit), console=console)

    def plot(self, term: str, *, unit=None, scale: str = "gain", n_points: int = 100):
        """Draw :meth:`curve` with its bands, one panel per unit (2-D maps as images, filters
        against lag, coupling filters one line per source). Needs matplotlib.

        Returns
        -------
        matplotlib.figure.Figure
            Built on the Agg canvas without pyplot: never shown; ``fig.savefig(path)``.
        """
        from .plotting import plot_curve
        return plot_curve(self, term, unit=unit, scale=scale, n_points=n_points)

    def plot_coupling(self, *, statistic: str = "integral", ax=None):
        """Heat map of :meth:`coupling_matrix` (post x pre, centred on 0). Needs matplotlib.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plotting import plot_coupling
        return plot_coupling(self, statistic=statistic, ax=ax)

    def save(self, path):
        """Write the result to ``path`` (npz + JSON metadata; no pickle). Returns the path."""
        from .persistence import save_result
        return save_result(self, path)

    def __repr__(self) -> str:
        return (f"FitResult({str(self.formula)!r}, units={len(self.unit_ids)}, "
                f"solver={self.solver!r}, converged={self.converged})")

