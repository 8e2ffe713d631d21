"""Draw spike counts from a fitted model, recurrently when it has history or coupling terms.

A model without spike terms is a rate given the covariates: counts are Poisson draws of
``predict``. With ``history``/``coupling`` the rate of bin t depends on the spikes of bins
t-1 ... t-window, so the simulation runs bin by bin and feeds each unit its own (and the other
units') *simulated* past, exactly as the design's causal filters would read it: the past is
empty at the start of every epoch (no filter reaches across an epoch border).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pynapple as nap

from ..graph.nodes import CausalFilter, SpikeCounts

#: Ceiling on the simulated rate (Hz): keeps a runaway excitatory network finite.
DEFAULT_MAX_RATE = 1000.0


def simulate(result, data: Mapping, *, seed=0, epochs=None,
             max_rate: float = DEFAULT_MAX_RATE):
    """See :meth:`FitResult.simulate`."""
    rng = np.random.default_rng(seed)
    design = result.design(data, epochs=epochs)
    plan, graph = design.plan, design.graph
    grid = graph.grid
    n_rows, n_units = grid.n_rows, len(result.unit_ids)
    eta = np.broadcast_to(result.intercepts, (n_rows, n_units)).copy()
    finite = np.ones(n_rows, dtype=bool)
    lead = 0  # rows the covariate features need before them (lag, filter of a covariate)
    banks = []
    for node, start, stop in plan.blocks:
        if isinstance(node, CausalFilter) and isinstance(node.input, SpikeCounts):
            banks.append((node, start, stop))
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
    ceiling = np.log(max_rate * result.bin_size)
    if not banks:
        counts = rng.poisson(np.exp(np.minimum(eta[rows_ok], ceiling)))
    else:
        counts = _recurrent(result, design, eta, rows_ok, banks, rng, ceiling)[rows_ok]
    rows = np.flatnonzero(rows_ok)
    support = nap.IntervalSet(start=grid.starts, end=grid.ends)
    times = grid.centers[rows]
    if n_units == 1:
        return nap.Tsd(t=times, d=counts[:, 0], time_support=support)
    return nap.TsdFrame(t=times, d=counts, columns=list(result.unit_ids), time_support=support)


def _recurrent(result, design, eta, rows_ok, banks, rng, ceiling) -> np.ndarray:
    """Bin-by-bin Poisson draws with the spike filters fed by the simulated counts.

    Bank units that are not modelled (``spikes[[0, 4]] ~ coupling(all)`` reads every unit) keep
    their recorded counts.
    """
    grid = design.graph.grid
    bank_units = banks[0][0].input.units
    window = max(node.window for node, _, _ in banks)
    # h[l, b, u]: weight of a spike of bank unit b, l+1 bins back, on unit u's log rate.
    h = np.zeros((window, len(bank_units), len(result.unit_ids)))
    for node, start, stop in banks:
        K = node.kernels()
        W = result.weights[start:stop].reshape(len(bank_units), node.k, -1)
        h[:node.window] += np.einsum("lj,bju->lbu", K, W)
    h_flat = h.reshape(window * len(bank_units), -1)
    recorded = design.graph.counts(design.plan.response, bank_units).astype(float)
    past = recorded.copy()  # columns of modelled units are overwritten by the simulation
    modelled = [bank_units.index(u) for u in result.unit_ids]
    out = np.zeros_like(eta, dtype=np.int64)
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
                drive = drive + recent @ h_flat[:seen * len(bank_units)]
            draw = rng.poisson(np.exp(np.minimum(drive, ceiling)))
            out[t] = draw
            past[t, modelled] = draw
    return out


__all__ = ["simulate", "DEFAULT_MAX_RATE"]
