"""Read the user's pynapple objects by name, with checks that name the variable and the fix.

Nothing here modifies the user's objects: arrays are read (copied where transformed).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np
import pynapple as nap

from ..errors import DataError, UnknownNameError, did_you_mean


@attrs.frozen
class Signal:
    """A covariate read from a Tsd/TsdFrame: sample times (s), values (n, c), time support."""

    name: str
    times: np.ndarray
    values: np.ndarray
    support: np.ndarray
    column_names: tuple[str, ...]


@attrs.frozen
class Spikes:
    """A response: one array of spike times (s) per unit, or binned counts (a Tsd of counts)."""

    name: str
    unit_ids: tuple
    spike_times: tuple[np.ndarray, ...] | None
    support: np.ndarray
    counts: Signal | None = None


def _support_array(obj) -> np.ndarray:
    support = getattr(obj, "time_support", None)
    if support is None:
        return np.zeros((0, 2))
    return np.stack([np.asarray(support.start, float), np.asarray(support.end, float)], axis=1)


class DataSource:
    """The user's mapping of names to pynapple objects, with typed, checked access."""

    def __init__(self, data: Mapping):
        if not isinstance(data, Mapping) and not hasattr(data, "keys"):
            raise DataError(f"data must be a mapping of names to pynapple objects, not "
                            f"{type(data).__name__}",
                            hint="pass a dict, e.g. {\"spikes\": tsgroup, \"hd\": angle_tsd}, or "
                                 "what pynapple.load_file() returns")
        self._data = data
        self._names = tuple(str(k) for k in data.keys())

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def get(self, name: str, *, role: str = "covariate"):
        if name not in self._names:
            hint = did_you_mean(name, self._names)
            raise UnknownNameError(
                f"unknown name '{name}': the data have no {role} called '{name}'",
                hint=(hint + " " if hint else "") + "(names in the data: " +
                ", ".join(self._names) + ")")
        return self._data[name]

    # -- responses ---------------------------------------------------------------------------
    def spikes(self, name: str, units: tuple[int, ...] | None) -> Spikes:
        obj = self.get(name, role="response")
        if isinstance(obj, nap.TsGroup):
            ids = tuple(obj.index.tolist()) if hasattr(obj.index, "tolist") else tuple(obj.index)
            if units is not None:
                missing = [u for u in units if u not in ids]
                if missing:
                    raise DataError(
                        f"unit id(s) {missing} are not in '{name}' (its units: "
                        f"{_short(ids)})", hint=f"select existing units, e.g. {name}[{ids[0]}]")
                ids = tuple(u for u in ids if u in set(units))
            times = tuple(_checked_times(np.asarray(obj[u].t, float), f"{name}[{u}]")
                          for u in ids)
            return Spikes(name, ids, times, _support_array(obj))
        if isinstance(obj, nap.Ts) and not isinstance(obj, nap.Tsd):
            if units not in (None, (0,)):
                raise DataError(f"'{name}' is a single spike train (Ts): it has only unit 0",
                                hint=f"write {name} ~ ... without a unit selection")
            return Spikes(name, (0,), (_checked_times(np.asarray(obj.t, float), name),),
                          _support_array(obj))
        if isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            signal = self.signal(name)
            counts = signal.values
            if np.any(~np.isfinite(counts)) or np.any(counts < 0) or \
                    np.any(counts != np.round(counts)):
                raise DataError(f"the response '{name}' must hold spike counts (whole numbers "
                                ">= 0); it has negative, non-integer or missing values",
                                hint="pass spike times as a TsGroup/Ts, or integer counts per bin")
            # Unit ids of a TsdFrame of counts are its column labels when they are integers
            # (as a TsGroup's index), else the column positions; a selection picks columns.
            labels = list(getattr(obj, "columns", [])) if counts.shape[1] > 1 else []
            all_ids = tuple(int(c) for c in labels) if labels and all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in labels) \
                else tuple(range(counts.shape[1]))
            ids = all_ids
            if units is not None:
                missing = [u for u in units if u not in all_ids]
                if missing:
                    raise DataError(
                        f"unit id(s) {missing} are not in '{name}' (its units: "
                        f"{_short(all_ids)})",
                        hint=f"select existing units, e.g. {name}[{all_ids[0]}]")
                ids = tuple(u for u in all_ids if u in set(units))
                signal = attrs.evolve(signal, values=counts[:, [all_ids.index(u) for u in ids]])
            return Spikes(name, ids, None, signal.support, counts=signal)
        raise DataError(f"the response '{name}' is a {type(obj).__name__}; it must be spike "
                        "trains", hint="pass a pynapple TsGroup (or Ts, or a Tsd of counts)")

    # -- covariates --------------------------------------------------------------------------
    def signal(self, name: str) -> Signal:
        obj = self.get(name)
        if isinstance(obj, nap.IntervalSet):
            raise DataError(f"'{name}' is an IntervalSet; it can only be used as an indicator",
                            hint=f"use it alone as a term ('+ {name}')")
        if isinstance(obj, nap.TsGroup) or (isinstance(obj, nap.Ts) and
                                            not isinstance(obj, (nap.Tsd, nap.TsdFrame))):
            raise DataError(f"'{name}' holds spike trains, not a covariate",
                            hint="spike trains enter through history(...) and coupling(...)")
        if not isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            raise DataError(f"'{name}' is a {type(obj).__name__}; covariates must be pynapple "
                            "Tsd or TsdFrame", hint=f"wrap it: nap.Tsd(t=times, d=values)")
        times = _checked_times(np.asarray(obj.t, float), name)
        values = np.asarray(obj.values, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise DataError(f"'{name}' has {values.ndim} dimensions; covariates need 1 or 2",
                            hint="pass a Tsd (one column) or a TsdFrame")
        if np.isinf(values).any():
            raise DataError(f"'{name}' contains infinite values",
                            hint="replace them with NaN (rows with NaN are dropped) or clip them")
        columns = tuple(str(c) for c in getattr(obj, "columns", [])) if values.shape[1] > 1 \
            else ()
        return Signal(name, times, values, _support_array(obj), columns)

    def is_interval_set(self, name: str) -> bool:
        return isinstance(self.get(name), nap.IntervalSet)

    def interval_set(self, name: str) -> np.ndarray:
        obj = self.get(name)
        if not isinstance(obj, nap.IntervalSet):
            raise DataError(f"'{name}' is a {type(obj).__name__}, not an IntervalSet (epochs)",
                            hint="pass epochs as a pynapple IntervalSet")
        return _support_array_of_intervals(obj)

    def support_of(self, name: str, *, response: bool = False) -> np.ndarray | None:
        """The time support of ``name`` (None for an IntervalSet, defined everywhere).

        A response given as counts per bin covers its bins, not just their centres: where its
        support ends at the first or last timestamp (what pynapple sets by default), it is
        widened by half a bin, so that the default grid lines up with the counts' bins.
        """
        obj = self.get(name)
        if isinstance(obj, nap.IntervalSet):
            return None  # an indicator is defined everywhere
        support = _support_array(obj)
        if response and isinstance(obj, (nap.Tsd, nap.TsdFrame)) and len(support):
            times = np.unique(np.asarray(obj.t, float))
            if len(times) > 1:
                half = float(np.median(np.diff(times))) / 2
                support = support.copy()
                if abs(support[0, 0] - times[0]) < 1e-9:
                    support[0, 0] = times[0] - half
                if abs(support[-1, 1] - times[-1]) < 1e-9:
                    support[-1, 1] = times[-1] + half
        return support


def _support_array_of_intervals(obj: nap.IntervalSet) -> np.ndarray:
    return np.stack([np.asarray(obj.start, float), np.asarray(obj.end, float)], axis=1)


def _checked_times(times: np.ndarray, name: str) -> np.ndarray:
    if len(times) > 1:
        steps = np.diff(times)
        if np.any(steps < 0):
            raise DataError(f"the timestamps of '{name}' are not sorted",
                            hint="sort them (pynapple objects built normally are sorted)")
    if np.any(~np.isfinite(times)):
        raise DataError(f"'{name}' has non-finite timestamps", hint="remove those samples")
    return times


def _short(ids) -> str:
    ids = list(ids)
    return ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")


def intersect_intervals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two sorted, disjoint interval arrays (m, 2) and (n, 2)."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if lo < hi:
            out.append((lo, hi))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.asarray(out, dtype=float).reshape(-1, 2)


def covered_fraction(epochs: np.ndarray, support: np.ndarray) -> float:
    """Fraction of the epochs' total duration that lies inside ``support``."""
    total = float(np.sum(epochs[:, 1] - epochs[:, 0]))
    if total <= 0:
        return 0.0
    inside = intersect_intervals(epochs, support)
    return float(np.sum(inside[:, 1] - inside[:, 0])) / total
