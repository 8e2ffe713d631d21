"""Shared machinery for the simulated recordings.

Everything here works on a fine simulation grid (1 ms by default) and knows nothing about any
particular dataset:

* random number streams derived from one integer seed,
* Ornstein-Uhlenbeck processes (the smooth random signals behind trajectories and currents),
* Poisson counts per fine bin turned into spike times jittered uniformly inside their bin,
* a recurrent linear-nonlinear-Poisson simulation whose spike-history and coupling filters are
  sums of exponentials, run as one compiled JAX loop.

Why exponentials: a filter written as ``sum_e W[e] * exp(-lag / tau[e])`` needs only one decaying
trace per time constant and unit, so its state costs ``E * n`` numbers instead of the
``window * n`` of a finite impulse response, and between spikes it evolves in closed form. The
time constants used by the datasets are short enough that every filter is negligible beyond its
documented window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import pynapple as nap
from scipy.signal import lfilter

#: Simulation bin (s). Fine enough that refractoriness (a few ms) is resolved.
DT = 0.001

#: Ceiling on the simulated rate (Hz). Keeps an unstable excursion of the exponential
#: nonlinearity from producing absurd counts; with the default parameters it binds in well under
#: 0.1 % of bins (brief current transients, the fastest runs through a place field).
MAX_RATE_HZ = 300.0

#: Largest count drawn per fine bin and unit. With ``MAX_RATE_HZ * DT <= 0.3`` the probability
#: of more is below 2e-6, and a truncated tail only removes (never adds) spikes.
_MAX_COUNT = 5


def streams(seed: int, n: int) -> list[np.random.Generator]:
    """Independent random generators derived from one seed.

    Separate streams (behaviour, parameters, spikes, ...) mean that changing, say, the number of
    units does not change the animal's trajectory for the same seed.

    Parameters
    ----------
    seed : int
        Non-negative integer seed.
    n : int
        Number of streams.

    Returns
    -------
    list of numpy.random.Generator
        ``Generator(PCG64(child))`` for each child of ``SeedSequence(seed)``.
    """
    children = np.random.SeedSequence(int(seed)).spawn(n)
    return [np.random.Generator(np.random.PCG64(child)) for child in children]


def ou_process(rng: np.random.Generator, n_samples: int, tau: float, dt: float,
               size: int | None = None) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck process with unit variance.

    Uses the exact AR(1) discretisation ``x[k] = a x[k-1] + sqrt(1 - a**2) xi[k]`` with
    ``a = exp(-dt / tau)``, started from its stationary distribution, so the statistics do not
    depend on ``dt``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the Gaussian innovations.
    n_samples : int
        Number of samples.
    tau : float
        Correlation time (s).
    dt : float
        Sampling interval (s).
    size : int, optional
        Number of independent processes (columns). ``None`` returns a 1-D array.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_samples,)`` or ``(n_samples, size)``; zero mean, unit variance.
    """
    shape = (n_samples,) if size is None else (n_samples, size)
    xi = rng.standard_normal(shape)
    a = np.exp(-dt / tau)
    xi[1:] *= np.sqrt(1.0 - a * a)
    # lfilter runs the AR(1) recursion in C; a Python loop would dominate generation time.
    return lfilter([1.0], [1.0, -a], xi, axis=0)


def grid(epochs: nap.IntervalSet, dt: float = DT) -> tuple[np.ndarray, np.ndarray]:
    """Fine simulation bins tiling each epoch from its start.

    Parameters
    ----------
    epochs : pynapple.IntervalSet
        Epochs whose lengths are multiples of ``dt`` (the dataset functions make them so).
    dt : float
        Bin size (s).

    Returns
    -------
    starts : numpy.ndarray
        Left edge of every bin (s), epochs concatenated in order.
    first : numpy.ndarray of bool
        True for the first bin of each epoch (where spike history restarts).
    """
    starts, first = [], []
    for s, e in zip(epochs.start, epochs.end):
        n = int(round((e - s) / dt))
        starts.append(s + dt * np.arange(n))
        f = np.zeros(n, dtype=bool)
        f[:1] = True
        first.append(f)
    return np.concatenate(starts), np.concatenate(first)


def poisson_counts(log_rate: np.ndarray, rng: np.random.Generator, dt: float = DT) -> np.ndarray:
    """Independent Poisson counts per fine bin.

    Parameters
    ----------
    log_rate : numpy.ndarray
        Natural log of the rate (log-Hz), any shape.
    rng : numpy.random.Generator
        Source of randomness.
    dt : float
        Bin size (s).

    Returns
    -------
    numpy.ndarray of int
        Counts, same shape as ``log_rate``.
    """
    lam = np.exp(np.minimum(log_rate, np.log(MAX_RATE_HZ))) * dt
    return rng.poisson(lam)


def spike_times(counts: np.ndarray, bin_starts: np.ndarray, rng: np.random.Generator,
                dt: float = DT) -> list[np.ndarray]:
    """Turn per-bin counts into sorted spike times, uniformly jittered inside their bin.

    Parameters
    ----------
    counts : numpy.ndarray of int, shape (n_bins, n_units)
        Spike counts per fine bin.
    bin_starts : numpy.ndarray, shape (n_bins,)
        Left edge of each bin (s).
    rng : numpy.random.Generator
        Source of the jitter.
    dt : float
        Bin size (s).

    Returns
    -------
    list of numpy.ndarray
        Sorted spike times (s) of each unit.
    """
    counts = np.asarray(counts)
    b, u = np.nonzero(counts)
    c = counts[b, u]
    b, u = np.repeat(b, c), np.repeat(u, c)
    t = bin_starts[b] + rng.random(b.size) * dt
    order = np.lexsort((t, u))
    t, u = t[order], u[order]
    edges = np.searchsorted(u, np.arange(counts.shape[1] + 1))
    return [t[edges[i]:edges[i + 1]] for i in range(counts.shape[1])]


def tsgroup(times: Sequence[np.ndarray], support: nap.IntervalSet,
            metadata: Mapping[str, Any] | None = None) -> nap.TsGroup:
    """Pack spike times as a TsGroup with index ``0 .. n-1``.

    Parameters
    ----------
    times : sequence of numpy.ndarray
        Spike times (s) per unit.
    support : pynapple.IntervalSet
        Time support of the group (the epochs that were simulated).
    metadata : mapping, optional
        Per-unit metadata columns.

    Returns
    -------
    pynapple.TsGroup
    """
    units = {i: nap.Ts(t=np.asarray(t, dtype=float), time_support=support)
             for i, t in enumerate(times)}
    return nap.TsGroup(units, time_support=support, metadata=dict(metadata or {}))


def exp_filter(amplitudes: Sequence[float], taus: Sequence[float]):
    """A causal filter ``h(lag) = sum_e amplitudes[e] * exp(-lag / taus[e])`` for ``lag > 0``.

    Parameters
    ----------
    amplitudes : sequence of float
        Weight of each exponential (log-rate units).
    taus : sequence of float
        Time constants (s).

    Returns
    -------
    callable
        Vectorised ``h(lag_seconds) -> ndarray``; zero for ``lag <= 0`` (strictly causal).
    """
    a = np.asarray(amplitudes, dtype=float)
    tau = np.asarray(taus, dtype=float)

    def h(lag):
        lag = np.asarray(lag, dtype=float)
        # Clip before exponentiating so negative lags give 0 rather than overflow warnings.
        pos = np.maximum(lag, 0.0)[..., None]
        value = np.sum(a * np.exp(-pos / tau), axis=-1)
        return np.where(lag > 0, value, 0.0)

    return h


#: Bins drawn per iteration of the compiled loop (see ``_run_blocks``).
_BLOCK = 32

#: Bins handed to one call of the compiled loop. A fixed window length means one compilation
#: per population size, whatever the recording length.
_CHUNK = 1 << 16

#: Units and filter components are padded to multiples of these (see ``simulate_recurrent``).
_UNIT_PAD = 16
_COMPONENT_PAD = 8


def _poisson_inverse_cdf(lam, u):
    """Poisson count with mean ``lam`` for uniform ``u`` (truncated at ``_MAX_COUNT``)."""
    p = jnp.exp(-lam)
    cdf = p
    y = jnp.zeros_like(lam)
    for k in range(1, _MAX_COUNT + 1):
        y = y + (u > cdf).astype(lam.dtype)
        p = p * lam / k
        cdf = cdf + p
    return y


@jax.jit
def _run_blocks(traces, drive, uniforms, first, weights, decay, max_log_lam, n_bins):
    """Exact recurrent simulation that advances from spike to spike.

    Spikes are sparse (a population of a dozen units spikes in about one 1 ms bin in ten), and
    between spikes the filter traces only decay. Each iteration therefore draws a block of
    ``_BLOCK`` bins assuming no new spike, keeps them up to and including the first bin that has
    one (that bin's rate depended only on the past, so its counts are exact too), adds that
    bin's spikes to the traces and starts again right after it. Bins after the first spike are
    redrawn later with the same uniforms; whether they were discarded depended only on earlier
    uniforms, so each bin is still one exact Poisson draw given its true past. This is about
    five times faster than a one-bin-per-step ``lax.scan`` and gives the same counts.

    Works on a window of ``_CHUNK + _BLOCK`` bins and stops once ``n_bins`` (at most ``_CHUNK``)
    are final; the last block may finalise a few more. Returns the traces at the stopping bin,
    the number of final bins and the counts (valid up to that number).
    """
    offsets = jnp.arange(_BLOCK, dtype=jnp.int32)
    powers = decay[None, :] ** offsets[:, None].astype(decay.dtype)  # (block, E)

    def body(state):
        t, traces, out = state
        d = jax.lax.dynamic_slice_in_dim(drive, t, _BLOCK)
        u = jax.lax.dynamic_slice_in_dim(uniforms, t, _BLOCK)
        f = jax.lax.dynamic_slice_in_dim(first, t, _BLOCK)
        traces = jnp.where(f[0], jnp.zeros_like(traces), traces)
        # Input to each post-synaptic unit from each exponential component: (E, n).
        q = (weights * traces[:, None, :]).sum(axis=2)
        lam = jnp.exp(jnp.minimum(d + powers @ q, max_log_lam))
        y = _poisson_inverse_cdf(lam, u)
        spiked = y.sum(axis=1) > 0
        last = jnp.where(spiked.any(), jnp.argmax(spiked), _BLOCK - 1)
        # An epoch start inside the block ends it just before, so history restarts there.
        later_first = f.at[0].set(False)
        last = jnp.minimum(last, jnp.where(later_first.any(), jnp.argmax(later_first) - 1,
                                           _BLOCK - 1))
        y = y * (offsets <= last)[:, None].astype(y.dtype)
        out = jax.lax.dynamic_update_slice_in_dim(out, y, t, axis=0)
        # Fixed int32 so the loop carry keeps its type when JAX runs in 64-bit mode.
        last = last.astype(jnp.int32)
        n_kept = last + 1
        # Only the last kept bin can hold spikes; earlier kept bins had none by construction.
        traces = traces * (decay ** n_kept.astype(decay.dtype))[:, None] + y[last][None, :]
        return t + n_kept, traces, out

    state = (jnp.asarray(0, dtype=jnp.int32), traces, jnp.zeros(drive.shape, dtype=drive.dtype))
    n_done, traces, out = jax.lax.while_loop(lambda s: s[0] < n_bins, body, state)
    return traces, n_done, out


def simulate_recurrent(log_drive: np.ndarray, taus: Sequence[float], weights: np.ndarray,
                       first: np.ndarray, rng: np.random.Generator, dt: float = DT) -> np.ndarray:
    """Recurrent LNP simulation with exponential history and coupling filters.

    The log rate of unit ``i`` in fine bin ``t`` is::

        log_drive[t, i]
        + sum_e sum_j weights[e, i, j] * sum_{l >= 1} exp(-l dt / taus[e]) * y[t - l, j]

    i.e. post-synaptic unit ``i`` receives from pre-synaptic unit ``j`` (``j == i``: its own
    history) the filter ``h_ij(lag) = sum_e weights[e, i, j] * exp(-lag / taus[e])`` evaluated
    exactly at the lags ``l * dt``. History restarts (empty past) at bins flagged in ``first``.
    Counts are Poisson given the rate (capped at ``MAX_RATE_HZ``).

    Parameters
    ----------
    log_drive : numpy.ndarray, shape (n_bins, n_units)
        Feed-forward log rate (log-Hz): baseline plus covariate effects.
    taus : sequence of float, length E
        Time constants of the exponential filter components (s).
    weights : numpy.ndarray, shape (E, n_units, n_units)
        Amplitude of each component (log-rate change per spike), indexed ``[e, post, pre]``.
    first : numpy.ndarray of bool, shape (n_bins,)
        Bins that start an epoch.
    rng : numpy.random.Generator
        Source of the uniforms behind the Poisson draws (one per bin and unit).
    dt : float
        Bin size (s).

    Returns
    -------
    numpy.ndarray of int, shape (n_bins, n_units)
        Spike counts per fine bin.
    """
    n_bins, n_units = np.shape(log_drive)
    n_exp = len(taus)
    uniforms = rng.random((n_bins, n_units), dtype=np.float32)
    # Pad units and filter components to fixed sizes so one compilation serves every dataset
    # and size (compiling costs more than simulating a default recording). Padded units have
    # zero rate and padded components zero weight, so the counts are unchanged.
    n_pad = -(-n_units // _UNIT_PAD) * _UNIT_PAD
    e_pad = -(-n_exp // _COMPONENT_PAD) * _COMPONENT_PAD
    decay = np.full(e_pad, 0.5)
    decay[:n_exp] = np.exp(-dt / np.asarray(taus, dtype=float))
    # Pre-multiplying by one decay step makes the trace (which holds lags 1, 2, ... with weights
    # 1, decay, ...) reproduce exp(-l dt / tau) exactly at lag l * dt.
    w = np.zeros((e_pad, n_pad, n_pad))
    w[:n_exp, :n_units, :n_units] = np.asarray(weights, dtype=float) * decay[:n_exp, None, None]
    # Explicit float32 everywhere: results must not depend on whether another module switched
    # JAX to 64-bit mode. Padding rows have zero rate and are never kept.
    n_total = n_bins + _CHUNK + _BLOCK
    drive = np.full((n_total, n_pad), -np.inf, dtype=np.float32)
    drive[:n_bins, :n_units] = np.asarray(log_drive, dtype=np.float32) + np.float32(np.log(dt))
    u = np.zeros((n_total, n_pad), dtype=np.float32)
    u[:n_bins, :n_units] = uniforms
    f = np.zeros(n_total, dtype=bool)
    f[:n_bins] = first
    consts = (jnp.asarray(w.astype(np.float32)), jnp.asarray(decay.astype(np.float32)),
              jnp.asarray(np.float32(np.log(MAX_RATE_HZ * dt))))
    traces = jnp.zeros((e_pad, n_pad), dtype=jnp.float32)
    counts = np.zeros((n_bins, n_units), dtype=np.int64)
    done = 0
    while done < n_bins:
        window = slice(done, done + _CHUNK + _BLOCK)
        traces, n_new, y = _run_blocks(traces, jnp.asarray(drive[window]), jnp.asarray(u[window]),
                                       jnp.asarray(f[window]), *consts,
                                       jnp.asarray(min(_CHUNK, n_bins - done), dtype=jnp.int32))
        # The last block may run into the zero-rate padding; those rows are dropped.
        n_new = min(int(n_new), n_bins - done)
        counts[done:done + n_new] = np.asarray(y)[:n_new, :n_units]
        done += n_new
    return counts


def readonly(array_like) -> np.ndarray:
    """A read-only copy of an array (truth values must not be editable by a test by accident)."""
    a = np.array(array_like, copy=True)
    a.flags.writeable = False
    return a


def frozen_mapping(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of a fresh dict copy."""
    return MappingProxyType(dict(d))


@attrs.frozen(eq=False, repr=False)
class SimulatedRecording(Mapping):
    """A simulated recording: a read-only mapping from names to pynapple objects.

    Behaves like the ``data`` mapping the rest of glmformula takes (``rec["spikes"]``,
    ``dict(rec)``, ``"speed" in rec``) and carries the parameters it was generated from, so
    that tests and tutorials can compare fitted effects with the truth.

    Parameters
    ----------
    name : str
        Dataset name (as listed by :func:`glmformula.datasets.available`).
    data : mapping of str to pynapple object
        The recording (``TsGroup``, ``Tsd``, ``TsdFrame``, ``IntervalSet``).
    truth : mapping of str to object
        True parameters (arrays, read-only) and true effect functions (vectorised callables);
        each dataset function documents its fields.
    description : str
        One paragraph saying what was simulated.
    seed : int
        Seed it was generated from; the same seed and arguments give identical data.
    """

    name: str
    _data: Mapping[str, Any] = attrs.field(converter=frozen_mapping, alias="data")
    truth: Mapping[str, Any] = attrs.field(converter=frozen_mapping)
    description: str
    seed: int

    def __getitem__(self, key: str):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # Identity semantics: element-wise comparison of pynapple objects has no single truth value,
    # so the Mapping mixin's content equality would be ill-defined.
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}: {type(v).__name__}" for k, v in self._data.items())
        return f"SimulatedRecording(name={self.name!r}, seed={self.seed}, {{{keys}}})"
