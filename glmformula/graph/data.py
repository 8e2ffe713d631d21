"""Read the user's pynapple objects by name, with checks that name the variable and the fix.

Nothing here modifies the user's objects: arrays are read (copied where transformed).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import attrs
import numpy as np
import pynapple as nap

from ..errors import DataError, UnknownNameError


@attrs.frozen
class Signal:
    """A covariate read from a Tsd/TsdFrame: sample times (s), values (n, c), time support."""

    name: str
    times: np.ndarray
    values: np.ndarray
    support: np.ndarray
    column_names: tuple[str, ...]


#: How a response is read: spike counts summed into the bins (``"counts"``), the same clipped
#: to 1 (``"binary"``: spike / no spike per bin), or the samples of a Tsd/TsdFrame averaged in
#: each bin (``"continuous"``: fluorescence, deconvolved activity; bins without a sample have
#: no value and are dropped). The fitting layer's families choose it.
RESPONSE_KINDS = ("counts", "binary", "continuous")


@attrs.frozen
class Spikes:
    """A response: one array of spike times (s) per unit, or binned counts (a Tsd of counts),
    or samples of a continuous response (``counts`` then holds the samples)."""

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
    """The user's mapping of names to pynapple objects, with typed, checked access.

    Parameters
    ----------
    data : mapping
        Names -> pynapple objects.
    response : str, optional
        The name the formula's response uses, to say what to pass when ``data`` is a pynapple
        object itself rather than a mapping.
    response_kind : {"counts", "binary", "continuous"}
        How the response is read (see :data:`RESPONSE_KINDS`).
    """

    def __init__(self, data: Mapping, *, response: str | None = None,
                 response_kind: str = "counts"):
        _check_mapping(data, response)
        if response_kind not in RESPONSE_KINDS:
            raise ValueError(f"response_kind must be one of {RESPONSE_KINDS}, got "
                             f"{response_kind!r}")
        self.response_kind = response_kind
        self._data = data
        # keys may be other than strings (an int-keyed dict); names are their text
        self._keys = {str(k): k for k in data.keys()}
        self._names = tuple(self._keys)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def get(self, name: str, *, role: str = "covariate"):
        """The object called ``name``; an unknown name suggests names of the same kind.

        ``role`` is ``"covariate"``, ``"response"`` or ``"epochs"``: a misspelt epoch name is
        answered with the IntervalSets in the data, never with a covariate's name.
        """
        if name not in self._keys:
            raise self._unknown(name, role)
        return self._data[self._keys[name]]

    def kind_of(self, name: str) -> str:
        """The pynapple class name of ``name`` (``"Tsd"``, ``"IntervalSet"``, ...).

        An NWB file (what ``pynapple.load_file`` returns) lists its objects' types, so this
        does not load them; other mappings hold the objects themselves.
        """
        table = getattr(self._data, "data", None)
        entry = table.get(self._keys[name]) if isinstance(table, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("type"), str):
            return entry["type"]
        return _kind(self._data[self._keys[name]])

    def _unknown(self, name: str, role: str) -> UnknownNameError:
        groups = [[n for n in self._names if self.kind_of(n) in kinds]
                  for kinds in _ROLE_KINDS[role]]
        candidates = [n for group in groups for n in group]
        suggestion = _suggest(name, groups)
        noun = _ROLE_NOUNS[role]
        listing = (f"({noun} in the data: {_short(candidates)})" if candidates else
                   f"(the data hold no {noun}, i.e. no {_ROLE_TYPES[role]}; names in the "
                   f"data: {_short(self._names)})")
        what = (f"unknown epochs '{name}': the data have no IntervalSet called '{name}'"
                if role == "epochs" else
                f"unknown name '{name}': the data have no {role} called '{name}'")
        return UnknownNameError(what, hint=(suggestion + " " if suggestion else "") + listing)

    def check_pynapple(self, name: str, *, role: str = "covariate") -> None:
        """Refuse a name whose value is not a pynapple object (a numpy array, a list, a dict),
        saying how to wrap it, before anything asks for its time support."""
        obj = self.get(name, role=role)
        if _kind(obj) in _PYNAPPLE_KINDS:
            return
        kind = "numpy array" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise DataError(f"'{name}' is a {kind}, not a pynapple object: data must map names to "
                        "pynapple objects (they carry the timestamps and time support)",
                        hint=_WRAP[role].format(name=name))

    # -- responses ---------------------------------------------------------------------------
    def spikes(self, name: str, units: tuple[int, ...] | None) -> Spikes:
        obj = self.get(name, role="response")
        if self.response_kind == "continuous":
            return self._continuous(name, obj, units)
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
                                hint="pass spike times as a TsGroup/Ts, or integer counts per bin "
                                     "(a continuous response such as fluorescence is fitted "
                                     "with family=\"gaussian\" or \"gamma\")")
            ids, signal = _select_columns(name, obj, signal, units)
            return Spikes(name, ids, None, signal.support, counts=signal)
        raise DataError(f"the response '{name}' is a {type(obj).__name__}; it must be spike "
                        "trains", hint="pass a pynapple TsGroup (or Ts, or a Tsd of counts)")

    def _continuous(self, name: str, obj, units) -> Spikes:
        """A continuous response (a family such as gaussian or gamma): the samples of a Tsd
        (one unit) or a TsdFrame (one unit per column), averaged into bins later."""
        if not isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            kind = "spike trains (a TsGroup/Ts)" if isinstance(obj, (nap.TsGroup, nap.Ts)) \
                else f"a {type(obj).__name__}"
            raise DataError(f"the response '{name}' is {kind}; a continuous family (gaussian, "
                            "gamma) needs values over time: a Tsd or TsdFrame (e.g. "
                            "fluorescence, one column per cell)",
                            hint="pass nap.TsdFrame(t=frame_times, d=values), or fit spike "
                                 "trains with family=\"poisson\" (or \"bernoulli\", "
                                 "\"negative_binomial\")")
        signal = self.signal(name)
        if not np.isfinite(signal.values).any(axis=0).all():
            raise DataError(f"the response '{name}' has a column without a finite value",
                            hint="drop cells that were never measured")
        ids, signal = _select_columns(name, obj, signal, units)
        return Spikes(name, ids, None, signal.support, counts=signal)

    # -- covariates --------------------------------------------------------------------------
    def signal(self, name: str) -> Signal:
        obj = self.get(name)
        if isinstance(obj, nap.IntervalSet):
            raise DataError(f"'{name}' is an IntervalSet; it can only be used as an indicator",
                            hint=f"use it alone as a term ('+ {name}')")
        if isinstance(obj, nap.TsGroup) or (isinstance(obj, nap.Ts) and
                                            not isinstance(obj, (nap.Tsd, nap.TsdFrame))):
            one = f"{name}[{_first_id(obj)}]" if isinstance(obj, nap.TsGroup) else name
            raise DataError(f"'{name}' holds spike trains, not a covariate",
                            hint="the response's spike trains enter through history(...) and "
                                 "coupling(...); event times through an event kernel, e.g. "
                                 f"filter({one}, 8, window=300ms)")
        if not isinstance(obj, (nap.Tsd, nap.TsdFrame)):
            raise DataError(f"'{name}' is a {type(obj).__name__}; covariates must be pynapple "
                            "Tsd or TsdFrame", hint="wrap it: nap.Tsd(t=times, d=values)")
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

    def interval_set(self, name: str, *, role: str = "covariate") -> np.ndarray:
        """The intervals of the IntervalSet ``name`` as an (m, 2) array.

        With ``role="epochs"`` an unknown name, or one that is not an IntervalSet, is answered
        with the IntervalSets in the data.
        """
        obj = self.get(name, role=role)
        if not isinstance(obj, nap.IntervalSet):
            sets = [n for n in self._names if self.kind_of(n) == "IntervalSet"]
            raise DataError(f"'{name}' is a {type(obj).__name__}, not an IntervalSet (epochs)",
                            hint="pass epochs as a pynapple IntervalSet, or the name of one "
                                 "in the data" + (f" ({_short(sets)})" if sets else ""))
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


# Which pynapple kinds each role's suggestions come from, in order of preference; and what
# to call them in messages.
_ROLE_KINDS = {
    "response": (("TsGroup", "Ts"),),
    "covariate": (("Tsd", "TsdFrame"), ("IntervalSet",)),
    "epochs": (("IntervalSet",),),
}
_ROLE_NOUNS = {"response": "spike trains", "covariate": "covariates", "epochs": "IntervalSets"}
_ROLE_TYPES = {"response": "TsGroup/Ts", "covariate": "Tsd/TsdFrame/IntervalSet",
               "epochs": "IntervalSet"}
_PYNAPPLE_KINDS = ("TsGroup", "IntervalSet", "TsdFrame", "TsdTensor", "Tsd", "Ts")
_EXAMPLE = '{"spikes": nap.TsGroup(...), "hd": nap.Tsd(t=..., d=...)}'
_WRAP = {
    "response": 'wrap spike times as nap.TsGroup({{0: nap.Ts(t=times_0), 1: nap.Ts(t=times_1)}})'
                ' (nap.Ts(t=times) for one unit) and pass {{"{name}": that_group, ...}}',
    "covariate": "wrap it as nap.Tsd(t=sample_times, d=values) (nap.TsdFrame(t=..., d=...) for "
                 "several columns)",
    "epochs": "wrap it as nap.IntervalSet(start=starts, end=ends)",
}


def _suggest(name: str, groups: list[list[str]]) -> str | None:
    """``"did you mean 'x'?"`` from the first group with a close name.

    The first group is the preferred kind (a Tsd for a covariate); later groups need a closer
    match: a misspelt 'speed' must not be answered with the IntervalSet 'sleep' (a 0/1
    indicator is rarely what a misspelt covariate meant), while 'slep' still finds 'sleep'.
    """
    for cutoff, group in zip((0.6, 0.8, 0.8), groups):
        close = difflib.get_close_matches(name, sorted(set(group)), n=1, cutoff=cutoff)
        if close:
            return f"did you mean '{close[0]}'?"
    return None


def _kind(obj) -> str:
    """The pynapple class name of ``obj`` (subclasses first), or its own type's name."""
    for kind in _PYNAPPLE_KINDS:
        if isinstance(obj, getattr(nap, kind)):
            return kind
    return type(obj).__name__


def _check_mapping(data, response: str | None) -> None:
    """``data`` must map names to objects: a pynapple object passed alone (a bare TsGroup has
    keys too: its unit ids) is refused with the mapping to pass instead."""
    kind = _kind(data)
    if kind in _PYNAPPLE_KINDS:
        response = response or "spikes"
        mapping = (f'{{"{response}": your_{kind.lower()}, ...}}' if kind in ("TsGroup", "Ts")
                   else f'{{"{response}": your_spike_trains, "name": your_{kind.lower()}}}')
        raise DataError(f"data must map names to pynapple objects, e.g. {_EXAMPLE}; got a "
                        f"{kind} alone",
                        hint=f"pass {mapping}, with the names the formula uses")
    if not isinstance(data, Mapping) and not hasattr(data, "keys"):
        raise DataError(f"data must map names to pynapple objects, e.g. {_EXAMPLE}; got a "
                        f"{type(data).__name__}",
                        hint="pass a dict, or what pynapple.load_file() returns")


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


def _select_columns(name: str, obj, signal: Signal, units):
    """Unit ids of a Tsd/TsdFrame response and its columns for the selected ``units``.

    Unit ids of a TsdFrame are its column labels when they are integers (as a TsGroup's
    index), else the column positions; a selection picks columns.
    """
    values = signal.values
    labels = list(getattr(obj, "columns", [])) if values.shape[1] > 1 else []
    all_ids = tuple(int(c) for c in labels) if labels and all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in labels) \
        else tuple(range(values.shape[1]))
    ids = all_ids
    if units is not None:
        missing = [u for u in units if u not in all_ids]
        if missing:
            raise DataError(
                f"unit id(s) {missing} are not in '{name}' (its units: "
                f"{_short(all_ids)})",
                hint=f"select existing units, e.g. {name}[{all_ids[0]}]")
        ids = tuple(u for u in all_ids if u in set(units))
        signal = attrs.evolve(signal, values=values[:, [all_ids.index(u) for u in ids]])
    return ids, signal


def _first_id(group) -> object:
    """The first unit id of a TsGroup (for a suggestion such as ``events[3]``)."""
    ids = list(group.index)
    return ids[0] if ids else 0


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
