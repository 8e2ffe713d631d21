"""Draw spike counts from a fitted model, recurrently when it has history or coupling terms.

A model without spike terms is a rate given the covariates: counts are Poisson (or Bernoulli)
draws of ``predict``. With ``history``/``coupling`` the rate of bin t depends on the spikes of
bins t-1 ... t-window, so the simulation runs bin by bin and feeds each unit its own (and the
other units') *simulated* past, exactly as the design's causal filters would read it: the past
is empty at the start of every epoch (no filter reaches across an epoch border).

Which bins are simulated: every bin of the epochs where the model has a rate, which is every
bin where the covariate terms are defined. Covariate terms that read the past of a covariate
(``filter(x, ...)``, ``lag(x, dt)``) are not defined in the first bins of each epoch, where
their window would reach before the epoch's start: those bins are left out, as in ``predict``
(they are not drawn from the data before the epoch, since nothing reaches across an epoch
border), and the simulated spike past starts empty at the first simulated bin. The spike
filters' own windows drop nothing: they read the simulated past, empty at first.

A fitted recurrent model can be unstable: simulated, a net excitatory filter feeds a burst
until the rate sits at ``max_rate``. That is reported before the draw from the linearised gains
of the filters (:mod:`.stability`) and after it from the bins that hit the cap, both as a
:class:`~glmformula.errors.SimulationWarning` naming the units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pynapple as nap

from ..errors import ResultError, SimulationWarning, warn
from ..fitting.families import get_family
from ..graph import gating
from .evaluation import spike_filter_call
from .stability import report

#: Ceiling on the simulated rate (Hz): keeps a runaway excitatory network finite.
DEFAULT_MAX_RATE = 1000.0

#: Rows per block when the spike filters are applied to the recorded spikes (for the check).
_ROWS = 1 << 16

#: How a bin's count is drawn from its expected count ``mu = rate * bin_size``.
DRAWS = ("poisson", "bernoulli")

_ADVICE = ("To fit stable filters, put a Ridge penalty on the spike terms alone (e.g. "
           "regularizer=gf.Ridge({{{terms}: 1.0}}); a Ridge on every term shrinks the tuning "
           "and the history takes over) and raise it until res.stability(data) reports a "
           "spectral radius below 1, checking the cross-validated score. A longer history "
           "window helps only where it adds a negative (adaptation) tail (see 'Simulating "
           "fitted models: stability' in the tutorials). Raising max_rate only moves the cap; "
           "draw=\"bernoulli\" puts at most one spike in a bin.")


def simulate(result, data: Mapping, *, seed=0, epochs=None,
             max_rate: float = DEFAULT_MAX_RATE, draw: str | None = None):
    """See :meth:`FitResult.simulate`."""
    family = get_family(getattr(result, "family", "poisson"))
    if family.name != "poisson":
        if draw not in (None, family.name):
            raise ResultError(f"a {family.name} model draws from its own family, not "
                              f"draw={draw!r}", hint="leave draw out")
        draw = family.name
    draw = "poisson" if draw is None else draw
    if draw not in DRAWS and draw != family.name:
        raise ResultError(f"unknown draw {draw!r}",
                          hint="use draw=\"poisson\" (counts) or draw=\"bernoulli\" (at most "
                               "one spike per bin, P = 1 - exp(-rate * bin_size))")
    if not (np.isfinite(max_rate) and max_rate > 0):
        raise ResultError(f"max_rate must be a positive number of Hz, got {max_rate!r}",
                          hint="e.g. max_rate=1000.0")
    rng = np.random.default_rng(seed)
    sample = _bernoulli(rng) if draw == "bernoulli" else rng.poisson
    if family.name != "poisson":
        def sample(mu):
            return family.draw(rng, mu, result.dispersion)
    design = result.design(data, epochs=epochs)
    plan, graph = design.plan, design.graph
    grid = graph.grid
    n_rows, n_units = grid.n_rows, len(result.unit_ids)
    eta = np.broadcast_to(result.intercepts, (n_rows, n_units)).copy()
    finite = np.ones(n_rows, dtype=bool)
    lead = 0  # rows the covariate features need before them (lag, filter of a covariate)
    banks = []
    for node, start, stop in plan.blocks:
        if gating.spike_bank(node) is not None:
            banks.append((node, start, stop))
            state = gating.gate(node)  # a gated bank (coupling(all):rest): its state's rows
            if state is not None:
                finite &= np.isfinite(graph.evaluate(state)[:, 0])
                lead = max(lead, state.lead)
            continue
        values = graph.evaluate(node)
        finite &= np.isfinite(values).all(axis=1)
        eta += np.nan_to_num(values) @ result.weights[start:stop]
        lead = max(lead, node.lead)
    for node in plan.offsets:
        values = graph.evaluate(node)[:, 0]
        finite &= np.isfinite(values)
        eta += np.nan_to_num(values)[:, None]
        lead = max(lead, node.lead)
    rows_ok = finite & (grid.row_in_epoch >= lead)
    # the cap applies to rates (log link, counts); probabilities and continuous values have none
    ceiling = np.log(max_rate * result.bin_size) if family.link == "log" and family.counts \
        else np.inf
    driven = eta[rows_ok] >= ceiling  # capped by the covariates alone, whatever the past
    if not banks:
        counts = sample(_mean(family, eta[rows_ok], ceiling))
        capped = driven
    else:
        if family.counts:
            _warn_unstable(result, design, eta, rows_ok, banks)
        counts, capped = _recurrent(result, design, eta, rows_ok, banks, sample, ceiling)
        counts, capped = counts[rows_ok], capped[rows_ok]
    _warn_capped(result, capped, driven, max_rate, draw)
    rows = np.flatnonzero(rows_ok)
    support = nap.IntervalSet(start=grid.starts, end=grid.ends)
    times = grid.centers[rows]
    if n_units == 1:
        return nap.Tsd(t=times, d=counts[:, 0], time_support=support)
    return nap.TsdFrame(t=times, d=counts, columns=list(result.unit_ids), time_support=support)


def _mean(family, eta, ceiling):
    """Expected value per bin from the linear predictor, rates capped at ``ceiling``."""
    if family.link == "log" and family.counts:
        return np.exp(np.minimum(eta, ceiling))
    return family.mean(eta)


def _bernoulli(rng):
    """At most one spike per bin: P(spike) = 1 - exp(-mu), the chance that a Poisson process
    of that rate fires at least once in the bin."""
    def sample(mu):
        return (rng.random(np.shape(mu)) < -np.expm1(-mu)).astype(np.int64)
    return sample


def _recurrent(result, design, eta, rows_ok, banks, sample, ceiling):
    """Bin-by-bin draws with the spike filters fed by the simulated counts.

    Bank units that are not modelled (``spikes[[0, 4]] ~ coupling(all)`` reads every unit) keep
    their recorded counts. Returns the counts and where the rate was capped (both (n_rows, U)).
    """
    grid = design.graph.grid
    bank_units = gating.spike_bank(banks[0][0]).input.units
    window = max(gating.spike_bank(node).window for node, _, _ in banks)
    # h[state][l, b, u]: weight of a spike of bank unit b, l+1 bins back, on unit u's log rate
    # (state None: ungated; a gated bank's weight is multiplied by its state's value per bin).
    h = {}
    for node, start, stop in banks:
        bank = gating.spike_bank(node)
        K = bank.kernels()
        W = result.weights[start:stop].reshape(len(bank_units), bank.k, -1)
        part = h.setdefault(gating.gate(node),
                            np.zeros((window, len(bank_units), len(result.unit_ids))))
        part[:bank.window] += np.einsum("lj,bju->lbu", K, W)
    filters = [(None if state is None else np.nan_to_num(design.graph.evaluate(state)[:, 0]),
                part.reshape(window * len(bank_units), -1)) for state, part in h.items()]
    recorded = design.graph.counts(design.plan.response, bank_units).astype(float)
    past = recorded.copy()  # columns of modelled units are overwritten by the simulation
    modelled = [bank_units.index(u) for u in result.unit_ids]
    family = get_family(getattr(result, "family", "poisson"))
    out = np.zeros_like(eta, dtype=np.int64 if family.counts else float)
    capped = np.zeros(eta.shape, dtype=bool)
    for first, stop in grid.segments:
        past[first:stop, modelled] = 0.0
        for t in range(first, stop):
            if not rows_ok[t]:
                continue  # no rate where a covariate is missing: no spikes there
            seen = min(window, t - first)
            drive = eta[t]
            if seen:
                # rows t-1, t-2, ... t-seen: lag 1 first, as h is laid out
                recent = past[t - seen:t][::-1].reshape(-1)
                for gate_values, h_flat in filters:
                    if gate_values is None:
                        drive = drive + recent @ h_flat[:seen * len(bank_units)]
                    elif gate_values[t] != 0.0:
                        drive = drive + gate_values[t] * (recent @ h_flat[:seen * len(bank_units)])
            capped[t] = drive >= ceiling
            draw = sample(_mean(family, drive, ceiling))
            out[t] = draw
            past[t, modelled] = draw
    return out, capped


def _warn_unstable(result, design, eta, rows_ok, banks) -> None:
    """Before the draw: warn when the filters' gain at the model's rate on the data, given the
    recording's own past, reaches 1 (see :mod:`.stability`)."""
    graph, plan = design.graph, design.plan
    recorded = eta.copy()
    n_rows = graph.grid.n_rows
    for lo in range(0, n_rows, _ROWS):  # in blocks: a bank holds k columns per unit
        rows = slice(lo, min(lo + _ROWS, n_rows))
        for node, start, stop in banks:
            recorded[rows] += graph.evaluate(node, rows) @ result.weights[start:stop]
    rows = rows_ok & (graph.grid.row_in_epoch >= plan.lead)  # the recorded past is complete
    rep = report(result, np.exp(np.clip(recorded[rows], -700.0, 700.0)))
    if rep.stable:
        return
    table = rep.per_unit
    worst = table.sort_values("peak_gain", ascending=False)
    units = [u for u in worst.index if not worst.loc[u, "stable"]]
    detail = ", ".join(
        f"unit {u} (gain {worst.loc[u, 'peak_gain']:.2g} at {worst.loc[u, 'peak_rate']:.3g} Hz; "
        f"critical rate {worst.loc[u, 'critical_rate']:.3g} Hz)" for u in units[:8])
    if len(units) > 8:
        detail += f" and {len(units) - 8} more"
    own = f" Units whose own history reaches a gain of 1: {detail}." if units else ""
    warn(f"the fitted spike filters are unstable: linearised at the model's rate on these data, "
         f"one spike causes on average up to {rep.peak_spectral_radius:.3g} more (spectral radius "
         f"of the excitatory gain matrix; >= 1: a burst feeds itself), so the simulated rate may "
         f"run away to max_rate.{own} " + _ADVICE.format(terms=_spike_terms(result)),
         SimulationWarning, units=units or list(result.unit_ids))


def _warn_capped(result, capped: np.ndarray, driven: np.ndarray, max_rate: float,
                 draw: str) -> None:
    """After the draw: name the units whose rate hit the cap, in what share of the bins, and
    why: the spike filters feeding the rate back (a runaway) or the covariates alone."""
    if not capped.size or not capped.any():
        return
    share = capped.mean(axis=0)
    hit = np.flatnonzero(share > 0)
    order = hit[np.argsort(-share[hit], kind="stable")]
    listed = ", ".join(f"unit {result.unit_ids[i]}: {share[i]:.1%} ({int(capped[:, i].sum())} "
                       f"bins)" for i in order)
    ran_away = [result.unit_ids[i] for i in order if (capped[:, i] & ~driven[:, i]).any()]
    by_covariates = [result.unit_ids[i] for i in order if (capped[:, i] & driven[:, i]).any()]
    causes = []
    if ran_away:
        causes.append(
            f"the simulation ran away for units {ran_away}: the fitted history/coupling filters "
            "fed the rate back on itself up to the cap, so those counts are the cap's, not the "
            "model's. " + _ADVICE.format(terms=_spike_terms(result)))
    if by_covariates:
        several = (" A Poisson draw there puts several spikes in one bin; draw=\"bernoulli\" "
                   "puts at most one." if draw == "poisson" else "")
        causes.append(
            f"For units {by_covariates} the covariates alone drive the rate above the cap in "
            f"{int((capped & driven).sum())} bins (a strong stimulus, or covariate values "
            f"outside the training range).{several}")
    warn(f"simulated rates hit the max_rate cap ({max_rate:g} Hz) in a share of the bins of "
         f"{listed}. " + " ".join(causes), SimulationWarning,
         units=[result.unit_ids[i] for i in order])


def _spike_terms(result) -> str:
    """``"history(...)": ..., "coupling(...)"`` as a dict-key list for the advice."""
    terms = [t for t in result.formula.terms if spike_filter_call(result, t) is not None]
    return ", ".join(f"'{t}'" for t in terms[:1]) or "'history(...)'"


__all__ = ["simulate", "DEFAULT_MAX_RATE", "DRAWS"]
