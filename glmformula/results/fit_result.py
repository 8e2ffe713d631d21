"""The fitted model, read in terms of the formula: per-term tables, predictions, scores.

A :class:`FitResult` is the model's :class:`~glmformula.graph.layout.DesignSpec` (formula,
binning, training statistics, column layout: everything needed to build the design again on
new data) plus the fitted weights, their covariance and a record of how the fit went
(:class:`~glmformula.fitting.FitDiagnostics`). Nothing in it is tied to the training arrays,
so it can be saved and loaded (see :mod:`.persistence`).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np
import pandas as pd
import pynapple as nap
from scipy import stats

from ..fitting import CovarianceStack, FitDiagnostics, parameter_counts, poisson
from ..fitting.covariance import as_covariance_stack
from ..fitting.families import get_family
from ..fitting.smoothing import SmoothingSummary
from ..graph.layout import DesignSpec
from ..terms.aliases import resolve_term
from . import curves, persistence, plotting, scores, simulate, stability, summary, tuning
from .curves import select_units


def _delegate(name: str, owner: str, doc: str):
    return property(lambda self: getattr(getattr(self, owner), name), doc=doc)


@attrs.frozen(eq=False)
class FitResult:
    """A fitted Poisson GLM for one or several units.

    Attributes
    ----------
    spec : DesignSpec
        How to build the model's design on any data: formula, bin size, epochs, unit ids,
        column layout, training statistics and covariate ranges (also readable directly:
        ``res.formula``, ``res.unit_ids``, ``res.bin_size``, ``res.epochs``,
        ``res.storage_columns``, ``res.unit_columns``, ``res.unit_labels``,
        ``res.term_storage``, ``res.state``, ``res.covariate_ranges``).
    weights : ndarray (P, U)
        Weights of the stored columns in the original basis (0 where a unit does not use one).
    intercepts : ndarray (U,)
    covariance : CovarianceStack
        Covariance of (intercept, weights) from the (penalised) Fisher information; an array
        (U, P+1, P+1) to numpy, ``covariance[u]`` one unit's. Large fits compute a unit's
        the first time it is used (see :mod:`glmformula.fitting.information`).
    diagnostics : FitDiagnostics
        How the fit went: per-unit convergence, iterations, log-likelihood, rows, spikes,
        solver, precision, times, passes (also readable directly: ``res.converged_units``,
        ``res.n_iter_units``, ``res.log_likelihood_units``, ``res.n_rows``, ``res.n_spikes``,
        ``res.solver``, ``res.dtype``, ``res.dropped``, ``res.chunk_size``, ...).
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso or None
    smoothing_fit : SmoothingSummary or None
        The smoothness strengths chosen from the data and the effective degrees of freedom
        (read as a table: :attr:`smoothing`); None when no strength was chosen.
    family : str
        The observation family (``"poisson"``, ``"bernoulli"``, ``"negative_binomial"``,
        ``"gamma"`` or ``"gaussian"``; docs/api.md, 'Families').
    dispersion : ndarray (U,) or None
        The family's fitted dispersion per unit: the negative binomial ``a`` (maximum
        likelihood; variance ``mu + a mu^2``), the gamma scale (``1 / shape``) or the gaussian
        variance (the response's units squared), both Pearson chi2 / residual df as
        statsmodels' GLM; None for Poisson and Bernoulli. Read it by unit:
        :attr:`dispersion_units`.
    """

    spec: DesignSpec
    weights: np.ndarray
    intercepts: np.ndarray
    covariance: CovarianceStack = attrs.field(converter=as_covariance_stack)
    diagnostics: FitDiagnostics
    regularizer: object = None
    smoothing_fit: SmoothingSummary | None = None
    family: str = "poisson"
    dispersion: np.ndarray | None = None

    @classmethod
    def from_engine(cls, spec: DesignSpec, fit, regularizer=None) -> "FitResult":
        """Wrap the engine's :class:`~glmformula.fitting.EngineFit` with the model's spec."""
        return cls(spec=spec, weights=np.asarray(fit.weights, float),
                   intercepts=np.asarray(fit.intercepts, float), covariance=fit.covariance,
                   diagnostics=fit.diagnostics, regularizer=regularizer,
                   smoothing_fit=None if fit.smoothing is None else fit.smoothing.summary(),
                   family=getattr(fit, "family", "poisson"),
                   dispersion=None if getattr(fit, "dispersion", None) is None
                   else np.asarray(fit.dispersion, float))

    formula = _delegate("formula", "spec", "The model's Formula.")
    unit_ids = _delegate("unit_ids", "spec", "The response units, in the TsGroup's order.")
    bin_size = _delegate("bin_size", "spec", "Bin size (s).")
    epochs = _delegate("epochs", "spec", "(E, 2) start and end (s) of the epochs fitted.")
    storage_columns = _delegate("storage_columns", "spec", "Names of the stored columns.")
    unit_columns = _delegate("unit_columns", "spec", "Per unit, its stored column indices.")
    unit_labels = _delegate("unit_labels", "spec", "Per unit, (term, label) of its columns.")
    term_storage = _delegate("term_storage", "spec", "Term text -> slice of stored columns.")
    state = _delegate("state", "spec", "Training statistics by node text.")
    covariate_ranges = _delegate("covariate_ranges", "spec", "Training range per covariate.")
    column_means = _delegate("column_means", "spec", "Training mean of each stored column.")
    offset_mean = _delegate("offset_mean", "spec", "Training mean of the offset.")
    log_likelihood_units = _delegate("log_likelihood", "diagnostics",
                                     "Training log-likelihood per unit (nats).")
    n_rows = _delegate("n_rows", "diagnostics", "Rows fitted.")
    n_spikes = _delegate("n_spikes", "diagnostics", "Spikes per unit in the rows fitted.")
    converged_units = _delegate("converged", "diagnostics", "Convergence per unit.")
    n_iter_units = _delegate("n_iter", "diagnostics", "Iterations per unit.")
    grad_norm = _delegate("grad_norm", "diagnostics", "Max-abs penalised gradient per unit.")
    solver = _delegate("solver", "diagnostics", "The solver that ran.")
    dtype = _delegate("dtype", "diagnostics", "Compute precision.")
    constrained_terms = _delegate("constrained_terms", "diagnostics",
                                  "Terms constrained to average zero over the training rows.")
    fit_seconds = _delegate("fit_seconds", "diagnostics", "Solver time (s).")
    compile_seconds = _delegate("compile_seconds", "diagnostics", "Compilation time (s).")
    dropped = _delegate("dropped", "diagnostics", "Grid rows dropped, by reason.")
    chunk_size = _delegate("chunk_size", "diagnostics",
                           "Bins per block of a blocked fit; None in memory.")

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
        return resolve_term(self.formula, term)

    def table(self, term: str, unit=None) -> pd.DataFrame:
        """One term's coefficients with standard errors, z and p (two-sided Wald) per weight.

        Rows: (unit, column); columns: estimate, std_error, z, p_value, lower, upper (95%),
        and ``edf``, the term's effective degrees of freedom for the unit (its free weights
        when no smoothness strength was chosen from the data).
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
            frame = frame.dropna(how="all")
            frame["edf"] = self._term_edf(term, self.unit_ids.index(unit), len(frame))
            frame.index = pd.MultiIndex.from_product([[unit], frame.index],
                                                     names=["unit", "column"])
            frames.append(frame)
        return pd.concat(frames)

    def _term_edf(self, term: str, u: int, n_weights: int) -> float:
        """The term's effective degrees of freedom for unit position ``u``."""
        fit = self.smoothing_fit
        if fit is not None and term in fit.edf and np.isfinite(fit.edf[term][u]):
            return float(fit.edf[term][u])
        return float(n_weights - int(term in self.constrained_terms))

    # -- model size and information criteria -------------------------------------------------
    @property
    def n_params_units(self) -> np.ndarray:
        """Free parameters per unit: its columns, minus one per constrained term, plus the
        intercept; with smoothness penalties chosen from the data, the effective degrees of
        freedom (intercept included) instead."""
        counts = parameter_counts(self.unit_columns, self.constrained_terms,
                                  self.formula.intercept)
        if self.smoothing_fit is None:
            return counts
        edf = np.asarray(self.smoothing_fit.total_edf, float)
        return np.where(np.isfinite(edf), edf, counts)

    @property
    def n_params(self) -> float:
        """Free parameters over all units (effective degrees of freedom when smoothing)."""
        total = self.n_params_units.sum()
        return int(total) if self.smoothing_fit is None else float(total)

    @property
    def smoothing(self) -> pd.DataFrame:
        """Smoothness strengths chosen from the data and effective degrees of freedom.

        Index (term, unit); columns ``strength`` (mean objective, as ``Ridge``; mgcv's ``sp``
        is ``strength * n_rows``) and ``edf`` (the term's effective degrees of freedom).
        A tensor product has one row per margin (``"a:b [margin 1]"``). Empty when no
        strength was chosen (``smoothing=None``, or no penalised term).
        """
        empty = pd.DataFrame({"strength": [], "edf": []},
                             index=pd.MultiIndex.from_tuples([], names=["term", "unit"]))
        fit = self.smoothing_fit
        if fit is None or not len(fit.keys):
            return empty
        rows, values = [], []
        for m, (key, term) in enumerate(zip(fit.keys, fit.key_terms)):
            for u, unit in enumerate(self.unit_ids):
                rows.append((key, unit))
                values.append((fit.strength[m, u], fit.edf[term][u]))
        return pd.DataFrame(values, columns=["strength", "edf"],
                            index=pd.MultiIndex.from_tuples(rows, names=["term", "unit"]))

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
        return self.spec.design(data, epochs=epochs)

    def _linear_predictor(self, design) -> np.ndarray:
        eta = design.storage @ self.weights + self.intercepts
        if design.offset is not None:
            eta = eta + design.offset[:, None]
        return eta

    @property
    def dispersion_units(self) -> pd.Series:
        """The family's fitted dispersion by unit (see :attr:`dispersion`; NaN for Poisson and
        Bernoulli, which have none)."""
        values = np.full(len(self.unit_ids), np.nan) if self.dispersion is None \
            else np.asarray(self.dispersion, float)
        return pd.Series(values, index=pd.Index(self.unit_ids, name="unit"), name="dispersion")

    def predict(self, data: Mapping, *, epochs=None):
        """The model's expected response on the rows of new data: Tsd (one unit) or TsdFrame.

        For the count families the firing rate in Hz (expected count, or for ``bernoulli`` the
        spike probability, per bin over the bin size); for ``gamma`` and ``gaussian`` the
        expected value of the response in its own units (e.g. dF/F)."""
        design = self.design(data, epochs=epochs)
        rows = design.rows
        family = get_family(self.family)
        eta = self._linear_predictor(design)[rows]
        rate = family.mean(eta) / self.bin_size if family.counts else family.mean(eta)
        support = design.time_support
        if len(self.unit_ids) == 1:
            return nap.Tsd(t=design.times, d=rate[:, 0], time_support=support)
        return nap.TsdFrame(t=design.times, d=rate, columns=list(self.unit_ids),
                            time_support=support)

    def score(self, data: Mapping, metric: str | None = None, *, epochs=None,
              per_unit: bool = False):
        """Goodness of fit on ``data``, pooled over units unless ``per_unit`` (then a Series by
        unit).

        ``metric``: ``"bits_per_spike"`` (log-likelihood gain over the mean-rate model per
        spike, in bits); ``"pseudo_r2"`` or its alias ``"mcfadden"`` (McFadden's
        ``1 - LL / LL_null``, as NeMoS' ``score_type="pseudo-r2-McFadden"`` and statsmodels'
        ``kind="mcf"``); ``"deviance_explained"`` (``1 - D / D_null``, NeMoS'
        ``"pseudo-r2-Cohen"``, larger than McFadden's on spike counts); ``"log_likelihood"``
        (nats, with ``-log(y!)``). Default: ``"bits_per_spike"`` for the count families,
        ``"deviance_explained"`` for gamma and gaussian (which have no spikes: asking them for
        bits per spike is an error). Families other than Poisson score at their fitted
        :attr:`dispersion`, the null model being the mean of the scored response.
        """
        family = get_family(self.family)
        if metric is None:
            metric = "bits_per_spike" if family.counts else "deviance_explained"
        scores.check_metric(metric, family)
        design = self.design(data, epochs=epochs)
        rows = design.rows
        counts = design.counts[rows].astype(float)
        if family.name != "poisson":
            mu = family.mean(self._linear_predictor(design)[rows])
            return scores.score_counts(counts, mu, metric, self.unit_ids, per_unit,
                                       family=family, dispersion=self.dispersion)
        expected = poisson.expected_counts(self._linear_predictor(design)[rows])
        return scores.score_counts(counts, expected, metric, self.unit_ids, per_unit)

    def simulate(self, data: Mapping, *, seed=0, epochs=None, max_rate: float = 1000.0,
                 draw: str | None = None):
        """Spike counts drawn from the model on the bins of ``data``.

        Without ``history``/``coupling`` terms the counts are draws of :meth:`predict` (times
        the bin size). With them the draw is recurrent, bin by bin: each bin's rate reads the
        *simulated* past of the modelled units (recorded counts for units the model reads but
        does not model), and the past is empty at each epoch start, as the design's filters
        never reach across an epoch border.

        A fitted recurrent model can be unstable (a net excitatory history feeds a simulated
        burst until the rate sits at ``max_rate``). Before the draw the filters' linearised
        gain is checked at the model's rate on ``data`` (see :meth:`stability`), and after it
        the bins whose rate hit ``max_rate`` are counted; either gives a
        :class:`~glmformula.SimulationWarning` naming the units and how to fit stable filters.

        Parameters
        ----------
        data : mapping
            Names -> pynapple objects, with the covariates and the response (its spike times
            are read for units the model couples to but does not model, and for the check).
        seed : int or numpy.random.Generator
            Seed of the draws; the same seed gives the same counts.
        epochs : IntervalSet or str, optional
            Epochs to simulate (default: as for :meth:`predict`).
        max_rate : float
            Ceiling on the rate (Hz), so that a runaway excitatory network stays finite.
        draw : {"poisson", "bernoulli"}, optional
            For a Poisson model (default ``"poisson"``): ``"poisson"``: Poisson counts of mean
            ``rate * bin_size``. ``"bernoulli"``: at most one spike per bin, with probability
            ``1 - exp(-rate * bin_size)`` (a spike when a Poisson process of that rate fires
            at least once in the bin): the draw for fine bins (1-2 ms), where a recorded bin
            never holds two spikes. A model of another :attr:`family` draws from that family
            at its fitted :attr:`dispersion` (Bernoulli 0/1 with the fitted probability;
            negative binomial counts; gamma and gaussian values in the response's units, and
            ``max_rate`` does not apply to them); leave ``draw`` out.

        Returns
        -------
        Tsd or TsdFrame
            Integer spike counts per bin (floats for gamma and gaussian models: the simulated
            response) (columns: unit ids), at bin centres (s), with the epochs
            as time support. Simulated bins: every bin of the epochs where the covariate terms
            are defined. The windows of ``history``/``coupling`` drop nothing (the first
            ``window`` bins of each epoch are simulated, with an empty past), but a covariate
            term that reads the covariate's past (``filter(x, ...)``, ``lag(x, dt)``) is not
            defined in the first bins of each epoch, where its window would reach before the
            epoch's start: those bins are left out, as in :meth:`predict`, and the simulated
            spike past starts empty at the first simulated bin. Bins with a missing covariate
            are left out too (and count as no spikes in later bins' past).
        """
        return simulate.simulate(self, data, seed=seed, epochs=epochs, max_rate=max_rate,
                                 draw=draw)

    # -- curves, summaries and plots ---------------------------------------------------------
    def curve(self, term: str, *, n_points: int = 100, scale: str = "gain",
              unit=None, data: Mapping | None = None, state=None) -> pd.DataFrame:
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
          weight of one spike (or one unit of the covariate) ``j`` bins back; an event kernel
          ``filter(events, ..., start=-100ms)`` runs over ``j = start + 1 .. start + window``,
          negative lags being the time before each event;
        * a temporal term gated by a state (``coupling(all):rest``, ``history(8):speed``): over
          lag, the *change* of the filter inside the IntervalSet state, or per unit of the
          scalar state; ``frame.attrs["state"]`` names the state.

        A term constrained to average zero over the training rows (see
        :attr:`constrained_terms`) gives the centred effect: the curve minus its mean over the
        training rows, with the band of that centred effect.

        Parameters
        ----------
        term : str
            Canonical text or a short alias (``"hd"``, ``"history"``).
        n_points : int
            Grid points per covariate.
        scale : {"gain", "log", "rate"}
            ``"gain"``: the multiplicative gain on the rate ``exp(effect)`` and ``exp`` of the
            band; ``"log"``: the effect and band in log-rate; ``"rate"``: the firing rate in Hz,
            ``exp(intercept + effect + every other term and the offset at its mean over the
            training rows) / bin_size``, comparable with pynapple's tuning curves (for a
            tuning-only model they agree; history and coupling terms carry part of the tuning,
            so there it runs lower). Not for filters or gain curves.
        unit : unit id or list, optional
            Units to return (default: all).
        data : mapping, optional
            The training data, for ``scale="rate"`` on results saved before the training means
            were kept.
        state : str or mapping, optional
            For an ungated ``history``/``coupling``/``filter`` term of a model that also has
            the term gated by a state: the filter in that state, the ungated filter plus the
            gated ones (``"rest"``: inside the IntervalSet ``rest``; ``{"speed": 20.0}``: at
            speed 20, in the covariate's unit), with the band of the sum. None (default): the
            ungated term alone, i.e. outside every IntervalSet state and at 0 of every scalar
            one. See :mod:`glmformula.results.states`.

        Returns
        -------
        DataFrame
            Indexed by the grid (named after the covariate, or ``"lag (s)"``); columns a
            MultiIndex (unit, stat) with stat ``"estimate" | "lower" | "upper"``, or
            (unit, source, stat) for ``coupling`` (source: the presynaptic unit).
        """
        return curves.curve(self, term, n_points=n_points, scale=scale, unit=unit, data=data,
                            state=state)

    def tuning_curves(self, term: str, bins=10, range=None, *, unit=None,
                      data: Mapping | None = None, feature_names=None):
        """The model's firing rate (Hz) over a term's covariate(s), as an ``xarray.DataArray``
        laid out as ``pynapple.compute_tuning_curves``'s, so that the two subtract and plot
        together (see :mod:`~glmformula.results.tuning`).

        The rate of :meth:`curve` (``scale="rate"``: the other terms at their average
        contribution over the training rows) at the centres of pynapple's bins.

        Parameters
        ----------
        term : str
            A term over one or two covariates (``"cyclic(hd, 12)"``, an alias such as
            ``"hd"``, ``"rcos(x, 5):rcos(y, 5)"``); not a filter (see :meth:`curve`).
        bins : int, array or sequence
            As pynapple's: a number of bins, the bin edges of one covariate, or one of these per
            covariate (pynapple's ``tc.attrs["bin_edges"]`` works). Default 10.
        range : (low, high) or sequence, optional
            As pynapple's: the outer edges when ``bins`` is a number. Default: a full period
            ``[0, period)`` for a circular covariate, else its training range. Pass pynapple's
            ``range`` (or its edges) for coordinates identical to its own.
        unit : unit id or list, optional
            Units to return (default: all).
        data : mapping, optional
            The training data, for results that do not store the training means (as
            :meth:`curve`).
        feature_names : list of str, optional
            Names of the feature dimensions (pynapple's argument). Default: pynapple's own,
            ``"0"`` (and ``"1"``), so that ``res.tuning_curves(t) - nap.compute_tuning_curves(
            spikes, hd, ...)`` aligns without renaming.

        Returns
        -------
        xarray.DataArray
            Dims ``("unit", "0"[, "1"])``, coordinates ``unit`` (the unit ids) and the bin
            centres; values in Hz; coordinates ``lower`` and ``upper`` hold the 95% pointwise
            band (Hz); attrs ``bin_edges``, ``units``, ``term``, ``covariates``, ``bin_size``.

        Examples
        --------
        >>> tc = res.tuning_curves("hd", bins=12, range=(0, 2 * np.pi))   # doctest: +SKIP
        >>> tc - nap.compute_tuning_curves(spikes, hd, bins=12, range=(0, 2 * np.pi))  # +SKIP
        """
        return tuning.tuning_curves(self, term, bins, range, unit=unit, data=data,
                                    feature_names=feature_names)

    def coupling_matrix(self, *, statistic: str = "integral", state=None) -> pd.DataFrame:
        """Functional connectivity: a summary of each coupling filter, post x pre.

        Parameters
        ----------
        statistic : {"integral", "peak"}
            ``"integral"``: the sum over lags of the log-space filter ``sum_j (K w)_j`` (the
            total log-rate change a spike of the source causes over the window);
            ``"peak"``: the filter's value of largest magnitude.
        state : str or mapping, optional
            For state-dependent coupling (``coupling(all) + coupling(all):rest``): the matrix in
            a state, of each pair's filter ``K (w + sum_s v_s w_s)`` (``w_s``: the weights of
            ``coupling(...):s``, ``v_s`` the state's value). ``"rest"``: inside the IntervalSet
            ``rest`` (``v = 1``). A scalar state needs its value, ``{"speed": 20.0}`` (in the
            covariate's unit); naming it alone is refused. None (default): the ungated
            coupling, i.e. outside every IntervalSet state and at 0 of every scalar one (a
            model with gated coupling only has none there: pass a state). See
            :mod:`glmformula.results.states`.

        Returns
        -------
        DataFrame
            Rows: target units (``post``); columns: source units (``pre``), labelled by unit id.
            NaN on the diagonal (a unit never couples to itself) and for pairs not modelled.
            With gated coupling, ``attrs["state"]`` says which state it is read in
            (``"rest"``, ``"outside rest"``, ``"speed = 20"``).
        """
        return curves.coupling_matrix(self, statistic=statistic, state=state)

    def summary(self, *, data: Mapping | None = None, refit=False) -> pd.DataFrame:
        """One row per (term, unit): the term's size and the Wald test of the whole term.

        Columns: ``columns`` (the unit's weights in the term), ``df`` (free weights: one fewer
        for a term constrained to sum to zero), ``wald_chi2`` (``w' S^+ w``), ``p_value``
        (chi-square, ``df``). With ``refit=True`` (``data`` = the training data) each term is
        dropped in turn and the formula refitted on the same rows: ``lr_stat`` (twice the
        log-likelihood lost), ``lr_pvalue`` and ``deviance_explained`` (``lr_stat`` over the
        null deviance: the share of the mean-rate model's deviance this term explains on its
        own). ``refit`` may also list the terms to refit without (``refit=["coupling:rest"]``:
        one refit, the likelihood-ratio test of the change of coupling in ``rest``); the other
        terms' likelihood-ratio columns are then NaN. Print it with :meth:`print_summary`.

        Returns
        -------
        DataFrame
            Index MultiIndex (term, unit). For a model of spike counts with history or
            coupling terms, ``frame.attrs["stability"]`` holds :meth:`stability` (on ``data``
            when given).
        """
        frame = summary.summary(self, data=data, refit=refit)
        if stability.has_spike_filters(self) and stability.applies(self):
            frame.attrs["stability"] = self.stability(data)
        return frame

    def print_summary(self, *, data: Mapping | None = None, refit=False,
                      console=None) -> None:
        """Print :meth:`summary` as a table (rich) under the fit's headline numbers; a model
        with history or coupling terms adds its stability report (:meth:`stability`)."""
        frame = self.summary(data=data, refit=refit)
        summary.render(self, frame, console=console)
        report = frame.attrs.get("stability")
        if report is not None:
            if console is None:
                print(report)
            else:
                console.print(str(report), markup=False, highlight=False)

    def plot(self, term: str, *, unit=None, scale: str = "gain", n_points: int = 100,
             data: Mapping | None = None):
        """Draw :meth:`curve` with its bands, one panel per unit (2-D maps as images, filters
        against lag, coupling filters one line per source). Needs matplotlib. With ``data``
        (the training data) 2-D maps are blanked where the animal never went.

        Returns
        -------
        matplotlib.figure.Figure
            Built on the Agg canvas without pyplot: never shown; ``fig.savefig(path)``.
        """
        return plotting.plot_curve(self, term, unit=unit, scale=scale, n_points=n_points,
                                   data=data)

    def plot_coupling(self, *, statistic: str = "integral", ax=None, state=None):
        """Heat map of :meth:`coupling_matrix` (post x pre, centred on 0; ``state`` as there,
        named in the title). Needs matplotlib.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plotting.plot_coupling(self, statistic=statistic, ax=ax, state=state)

    def save(self, path):
        """Write the result to ``path`` (npz + JSON metadata; no pickle). Returns the path."""
        return persistence.save_result(self, path)

    def __repr__(self) -> str:
        return (f"FitResult({str(self.formula)!r}, units={len(self.unit_ids)}, "
                f"solver={self.solver!r}, converged={self.converged})")

    def stability(self, data: Mapping | None = None, *, epochs=None):
        """Whether the fitted history/coupling filters are stable when the model is simulated:
        their integrals, linearised gains and the spectral radius of the gain matrix (< 1:
        stable), at the training mean rate and, with ``data``, at the model's peak rate on
        them. See :mod:`glmformula.results.stability`.

        Defined for models of spike counts (``family="poisson"``, ``"negative_binomial"``;
        ``"bernoulli"``, where the gains are upper bounds); a model of a continuous response
        (``"gamma"``, ``"gaussian"``) is refused with a :class:`~glmformula.ResultError`.

        Returns
        -------
        StabilityReport
        """
        return stability.stability(self, data, epochs=epochs)


def load_result(path) -> FitResult:
    """Read a result written by :meth:`FitResult.save` (npz + JSON; no pickle involved)."""
    return FitResult(**persistence.read_result(path))
