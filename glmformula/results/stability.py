"""Will a fitted recurrent model run away when it is simulated? Gains of its spike filters.

A model with ``history``/``coupling`` terms feeds its spikes back into its own rate. Fitted to
data, the filters describe what followed a spike *in the recording*; simulated, the model reads
its own spikes, and a net excitatory filter can feed a burst until the rate sits at the
simulation's ``max_rate`` cap (Gerhard, Deger & Truccolo 2017, "On the stability and dynamics of
stochastic spiking neuron models: nonlinear Hawkes process and point process GLMs", PLoS Comput
Biol 13:e1005390; flatironinstitute/nemos#46).

The diagnostic linearises the rate around a rate ``m`` (expected spikes per bin). One extra spike
of unit ``pre`` changes the log-rate of ``post`` by ``h_post,pre(l)`` ``l`` bins later (the
log-space filter ``K w``), so, to first order, it adds ``m_post * h_post,pre(l)`` expected spikes
to ``post`` in that bin, and

    A[post, pre] = m_post * Phi[post, pre],    Phi[post, pre] = sum_l h_post,pre(l)

expected spikes in all (the gain matrix of the linearised, Hawkes-like process; ``Phi`` is the
integral of the filter in nats per spike: the history term on the diagonal, the coupling terms
off it, as :meth:`~glmformula.FitResult.coupling_matrix` reports them). A is the Jacobian of the
mean-field map ``m -> exp(eta + Phi m)``. As for a Hawkes process, the spikes caused by one spike
die out when the spectral radius of ``A`` is below 1 and multiply when it is 1 or more. Only
excitation can make an exponential rate run away (inhibition, e.g. refractoriness, pushes the
rate towards 0, not to infinity), so the radius is that of the excitatory part
``A+ = m * max(Phi, 0)``: for a network of excitatory filters it is the exact Hawkes branching
ratio, for a mixed one an upper bound. The unit's own gain ``m * Phi[u, u]`` is reported per
unit; ``1 / (Phi[u, u] * bin_size)`` is the *critical rate* at which it reaches 1.

The exponential makes the gain grow with the rate, so *where* the model is linearised decides
the answer. At the mean rate of the training data (what a result alone knows) most fitted
models look stable, the runaway ones too. With the data, the model is linearised at the rate it
gives in every bin with the recording's own past (:meth:`~glmformula.FitResult.predict`), and
the largest gain over the bins is reported: a gain of 1 or more in the bursts of the recording
means a burst in the simulation feeds itself. On real head-direction cells (issue 18) this
peak check flagged every unit whose simulation ran away to the cap, and at most two that did
not (see the tutorials' 'Simulating fitted models: stability').

Families. The analysis is of spike counts fed back through the link: it holds for
``"poisson"`` and ``"negative_binomial"`` (the same log link and mean, so the same mean-field
map; the extra variance of the negative binomial adds no gain) and for ``"bernoulli"``, where
``m`` is the spike probability per bin. The logit's exact slope is ``m (1 - m) <= m``, so for
Bernoulli models the gains are upper bounds (close where spikes per bin are rare, as in fine
bins), and a Bernoulli model cannot put more than one spike in a bin: "unstable" there means
bursts that saturate (a spike in every bin), not rates that diverge. For a continuous response
(``"gamma"``, ``"gaussian"``) the history filters feed back a signal, not spikes, and rates,
critical rates and spikes caused per spike have no meaning: :func:`stability` refuses those
models with a :class:`~glmformula.ResultError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np
import pandas as pd

from ..errors import ResultError
from ..fitting.families import get_family
from .curves import weight_blocks
from .evaluation import spike_filter_call, term_factor_nodes

#: Bins whose gain matrix is diagonalised per chunk, and at most, when looking for the largest
#: spectral radius over the bins of the data (bins are visited from the largest upper bound).
_CHUNK = 512
_MAX_BINS = 32768


@attrs.frozen(eq=False)
class StabilityReport:
    """The linearised gains of a fitted model's spike filters (see :mod:`.stability`).

    Attributes
    ----------
    per_unit : DataFrame
        Index: unit ids. Columns: ``history_integral`` (``Phi[u, u]``: the sum over lags of the
        unit's own log-space history filter, nats per spike; 0 without a history term),
        ``mean_rate`` (Hz, training data), ``gain`` (``mean_rate * bin_size *
        history_integral``: expected extra spikes one spike causes through the unit's own
        history at its mean rate), ``critical_rate`` (Hz: the rate at which that gain is 1;
        inf for a net inhibitory or absent history), ``peak_rate`` (Hz: the largest rate the
        model gives on the data with the recording's past; NaN without data), ``peak_gain``
        (the gain there) and ``stable`` (every gain computed is below 1).
    spectral_radius : float
        Spectral radius of the excitatory gain matrix ``A+`` at the training mean rates.
    peak_spectral_radius : float
        The largest spectral radius of ``A+`` over the bins of the data, linearised at the
        model's rate in each bin (NaN without data).
    stable : bool
        ``peak_spectral_radius < 1`` when data were given, else ``spectral_radius < 1``.
    gain_matrix : DataFrame
        ``A`` at the training mean rates (signed), post (rows) x pre (columns), unit ids.
    bin_size : float
        Seconds.
    """

    per_unit: pd.DataFrame
    spectral_radius: float
    peak_spectral_radius: float
    stable: bool
    gain_matrix: pd.DataFrame
    bin_size: float

    @property
    def unstable_units(self) -> tuple:
        """Ids of the units whose own gain reaches 1 (at the peak rate, with data)."""
        return tuple(self.per_unit.index[~self.per_unit["stable"].to_numpy(bool)])

    @property
    def has_data(self) -> bool:
        return bool(np.isfinite(self.peak_spectral_radius))

    def __str__(self) -> str:
        where = ("at the peak rate on the data" if self.has_data
                 else "at the training mean rate; pass data for the peak rate")
        radius = self.peak_spectral_radius if self.has_data else self.spectral_radius
        head = (f"Stability of the spike filters ({'stable' if self.stable else 'UNSTABLE'}): "
                f"spectral radius {radius:.3g} {where} (< 1 stable)")
        if self.has_data:
            head += f"; {self.spectral_radius:.3g} at the training mean rate"
        columns = ["history_integral", "mean_rate", "gain", "critical_rate"]
        if self.has_data:
            columns += ["peak_rate", "peak_gain"]
        table = self.per_unit[columns + ["stable"]].to_string(float_format=lambda v: f"{v:.3g}")
        return f"{head}\n{table}"

    def _repr_html_(self) -> str:  # notebooks
        return f"<pre>{self}</pre>"


def filter_integrals(result) -> np.ndarray:
    """``Phi`` (U, U): sum over lags of the log-space spike filter of ``pre`` (column) on
    ``post`` (row), over the modelled units (history on the diagonal, coupling off it).

    Filters from units the model reads but does not model are inputs, not feedback: left out.
    """

    position = {unit: i for i, unit in enumerate(result.unit_ids)}
    phi = np.zeros((len(result.unit_ids), len(result.unit_ids)))
    for term in result.formula.terms:
        if spike_filter_call(result, term) is None:
            continue
        node = term_factor_nodes(result, term)[0]
        integral = node.kernels().sum(axis=0)  # (k,): the sum over lags of each filter
        for block in weight_blocks(result, term, group_size=node.k):
            source = block.unit if block.source is None else block.source
            if source in position:
                weights = result.weights[block.columns, block.unit_index]
                phi[block.unit_index, position[source]] += integral @ weights
    return phi


def stability(result, data: Mapping | None = None, *, epochs=None) -> StabilityReport:
    """The linearised gains of the fitted spike filters: will a simulation run away?

    Parameters
    ----------
    result : FitResult
    data : mapping, optional
        Names -> pynapple objects with the covariates and the response. With them the model is
        linearised at its rate in every bin (given the recording's own past) and the largest
        gain is reported; without, at the training mean rate only, which misses the runaway
        of units whose rate is high only in bursts or in their preferred stimulus.
    epochs : IntervalSet or str, optional
        Epochs of ``data`` to use (as for :meth:`~glmformula.FitResult.predict`).

    Returns
    -------
    StabilityReport

    Raises
    ------
    ResultError
        For a model of a continuous response (``family="gamma"`` or ``"gaussian"``), for which
        the analysis is not defined (see :mod:`.stability`, 'Families').
    """
    check_applies(result)
    rates = None
    if data is not None and has_spike_filters(result):
        predicted = result.predict(data, epochs=epochs)
        rates = np.asarray(predicted.values, float).reshape(len(predicted), -1) * result.bin_size
    return report(result, rates)


def applies(result) -> bool:
    """Whether the stability analysis is defined for ``result``'s family (one of spike counts:
    poisson, negative_binomial, bernoulli)."""
    return get_family(getattr(result, "family", "poisson")).counts


def check_applies(result) -> None:
    """Refuse (:class:`~glmformula.ResultError`) a model whose family :func:`applies` not to."""
    if applies(result):
        return
    family = get_family(result.family)
    raise ResultError(
        f"stability() linearises the feedback of spike counts through the rate; this model's "
        f"response is continuous (family {family.name!r}, {family.link} link), for which "
        "spike gains, rates and critical rates are not defined",
        hint="check a continuous model's history filters by simulating it (res.simulate(data)) "
             "and looking at the draws; stability() applies to family=\"poisson\", "
             "\"negative_binomial\" and \"bernoulli\" fits of spike counts")


def has_spike_filters(result) -> bool:
    return any(spike_filter_call(result, t) is not None for t in result.formula.terms)


def report(result, counts: np.ndarray | None = None) -> StabilityReport:
    """The report, linearised at the training mean and, when given, at ``counts`` (n, U): the
    model's expected spikes per bin in each bin of some data."""
    dt = result.bin_size
    phi = filter_integrals(result)
    mean = np.asarray(result.n_spikes, float) / max(int(result.n_rows), 1)
    integral = np.diag(phi).copy()
    with np.errstate(divide="ignore"):
        critical = np.where(integral > 0, 1.0 / (integral * dt), np.inf)
    excitatory = np.clip(phi, 0.0, None)
    radius = _radius(mean[None, :], excitatory)[0]
    gain = mean * integral
    peak_rate = np.full(len(mean), np.nan)
    peak_radius = np.nan
    stable_units = gain < 1
    if counts is not None:
        counts = np.asarray(counts, float)
        counts = counts[np.isfinite(counts).all(axis=1)]
        if len(counts):
            peak_rate = counts.max(axis=0) / dt
            peak_radius = _peak_radius(counts, excitatory)
            stable_units = stable_units & (peak_rate * dt * integral < 1)
        else:
            peak_radius = 0.0
    ids = pd.Index(result.unit_ids, name="unit")
    per_unit = pd.DataFrame({
        "history_integral": integral, "mean_rate": mean / dt, "gain": gain,
        "critical_rate": critical, "peak_rate": peak_rate,
        "peak_gain": peak_rate * dt * integral, "stable": stable_units}, index=ids)
    decisive = peak_radius if np.isfinite(peak_radius) else radius
    matrix = pd.DataFrame(mean[:, None] * phi, index=pd.Index(result.unit_ids, name="post"),
                          columns=pd.Index(result.unit_ids, name="pre"))
    return StabilityReport(per_unit=per_unit, spectral_radius=float(radius),
                           peak_spectral_radius=float(peak_radius), stable=bool(decisive < 1),
                           gain_matrix=matrix, bin_size=float(dt))


def _radius(m: np.ndarray, excitatory: np.ndarray) -> np.ndarray:
    """Spectral radius of ``diag(m_i) Phi+`` for each row ``m_i`` of ``m`` (n, U)."""
    if excitatory.shape[0] == 1 or not np.any(excitatory - np.diag(np.diag(excitatory))):
        return (m * np.diag(excitatory)).max(axis=1, initial=0.0)  # diagonal: no eigenvalues
    gains = m[:, :, None] * excitatory[None]
    finite = np.isfinite(gains).all(axis=(1, 2))  # filters run off (a nearly separated fit)
    radius = np.full(len(m), np.inf)
    if finite.any():
        radius[finite] = np.abs(np.linalg.eigvals(gains[finite])).max(axis=1)
    return radius


def _peak_radius(counts: np.ndarray, excitatory: np.ndarray) -> float:
    """The largest spectral radius of ``diag(m_t) Phi+`` over the rows ``m_t`` of ``counts``.

    A nonnegative matrix's spectral radius is at most its largest row sum and its largest column
    sum, so the bins are visited from the largest of those bounds down, and the search stops
    when no bin left can beat the best radius found (or after ``_MAX_BINS`` bins).
    """
    rows = counts * excitatory.sum(axis=1)[None, :]
    bound = np.minimum(rows.max(axis=1), (counts @ excitatory).max(axis=1))
    order = np.argsort(bound)[::-1]
    best = 0.0
    for start in range(0, min(len(order), _MAX_BINS), _CHUNK):
        chunk = order[start:start + _CHUNK]
        if bound[chunk[0]] <= best:
            break
        best = max(best, float(_radius(counts[chunk], excitatory).max()))
    return best


__all__ = ["stability", "StabilityReport", "filter_integrals", "report", "applies"]
