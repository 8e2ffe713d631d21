"""Tuning curves as xarray, laid out as ``pynapple.compute_tuning_curves`` lays out its own.

``res.tuning_curves(term, bins, range)`` is the model's firing rate (Hz) over the covariate(s) of
a term, the other terms at their average contribution over the training rows: the rate curve of
:func:`~glmformula.results.curves.curve` (``scale="rate"``), evaluated at the centres of the bins
that pynapple would use. The result is an ``xarray.DataArray`` shaped as pynapple's (pynapple
0.10 and later):

* dims ``("unit", feature, ...)``: ``"unit"`` holds the unit ids (int64, as a TsGroup's keys),
  one dimension per covariate, named as pynapple names them: ``"0"`` for one covariate (what
  pynapple calls the one column of a Tsd), ``"0"``, ``"1"`` for two, or ``feature_names``
  (pynapple's own argument);
* the feature coordinates are the bin centres ``edges[:-1] + diff(edges) / 2``, computed as
  pynapple computes them (``numpy.histogramdd``'s edges: ``linspace(low, high, bins + 1)`` for a
  number of bins), so the same ``bins`` and ``range`` give identical coordinates and the two
  arrays align: ``res.tuning_curves(t, bins=12, range=(0, 2 * np.pi)) -
  nap.compute_tuning_curves(spikes, hd, bins=12, range=(0, 2 * np.pi))`` is their difference in
  Hz, unit by unit and bin by bin (pynapple's ``tc.attrs["bin_edges"]`` may be passed as
  ``bins``);
* values in Hz; the 95% pointwise band rides along as two extra coordinates ``lower`` and
  ``upper`` (dims as the data, Hz), so arithmetic and plotting act on the estimate while
  ``tc.lower``/``tc.upper`` stay at hand (after a subtraction they are still the model's band,
  not a band of the difference);
* attrs: ``bin_edges`` (as pynapple's), ``units`` ("Hz"), ``term``, ``covariates`` (the data
  names the feature dimensions stand for), ``bin_size`` (s).

It is the model's rate at each bin centre, not pynapple's average over the samples in the bin;
where other terms (history, coupling) carry part of the tuning it runs lower than pynapple's
(see :mod:`.curves`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ResultError
from ..graph import nodes
from .curves import covariate_curve, select_units
from .evaluation import contains, leaves, spike_filter_call, term_factor_nodes

#: The default number of bins, as pynapple's.
DEFAULT_BINS = 10


def tuning_curves(result, term: str, bins=DEFAULT_BINS, range=None, *, unit=None,
                  data=None, feature_names=None) -> xr.DataArray:
    """See :meth:`FitResult.tuning_curves`."""
    term = result.resolve_term(term)
    units = select_units(result, unit)
    if not any(t == term for labels in result.unit_labels for t, _ in labels):
        raise ResultError(f"'{term}' has no fitted weights (an offset enters with weight 1)",
                          hint="tuning curves are drawn for terms with weights; see res.coef")
    factor_nodes = term_factor_nodes(result, term)
    if spike_filter_call(result, term) is not None or any(
            contains(n, nodes.CausalFilter) for n in factor_nodes):
        raise ResultError(f"'{term}' is a filter over lag, not a tuning over a covariate",
                          hint=f"use res.curve({term!r}) for its kernel over lag; "
                               "tuning_curves() is for terms over one or two covariates, "
                               "e.g. res.tuning_curves(\"cyclic(hd, 12)\")")
    n_features = len({leaf.name for node in factor_nodes for leaf in leaves(node)})
    binning = _Binning(result, bins, range, n_features)
    frame = covariate_curve(result, term, binning.axis, scale="rate", unit=units, data=data)
    names = binning.names
    dims = ["unit", *_feature_dims(feature_names, len(names))]
    shape = [len(units), *(len(c) for c in binning.centres)]

    def block(stat: str) -> np.ndarray:
        return np.stack([frame[(u, stat)].to_numpy(float) for u in units]).reshape(shape)

    coords = {"unit": np.asarray(units)}
    coords.update({dim: c for dim, c in zip(dims[1:], binning.centres)})
    coords["lower"] = (dims, block("lower"))
    coords["upper"] = (dims, block("upper"))
    attrs = {"bin_edges": binning.edges, "units": "Hz", "term": term,
             "covariates": list(names), "bin_size": float(result.bin_size)}
    return xr.DataArray(block("estimate"), dims=dims, coords=coords, attrs=attrs,
                        name="firing rate")


def _feature_dims(feature_names, n: int) -> list[str]:
    """pynapple's names: ``"0"`` (``"1"``, ...) unless ``feature_names`` are given."""
    if feature_names is None:
        return [str(i) for i in range(n)]
    if isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names):
        raise ResultError(f"feature_names must be a list of strings, got {feature_names!r}",
                          hint="e.g. feature_names=[\"head_direction\"], as in pynapple")
    if len(feature_names) != n:
        raise ResultError(f"feature_names has {len(feature_names)} name(s) for {n} "
                          f"covariate(s)", hint=f"give {n} name(s), one per covariate")
    if "unit" in feature_names or len(set(feature_names)) != n:
        raise ResultError(f"feature_names must be distinct and other than 'unit', got "
                          f"{list(feature_names)}", hint="e.g. feature_names=[\"x\", \"y\"]")
    return list(feature_names)


class _Binning:
    """The bins of each covariate, from pynapple's ``bins`` and ``range`` arguments.

    ``axis(name, leaves)`` is called by the curve once per covariate, in the order of the
    feature dimensions, and returns that covariate's bin centres.
    """

    def __init__(self, result, bins, range, n_features: int):
        self.result = result
        self.bins = bins
        self.range = range
        self.n_features = n_features
        self.names: list[str] = []
        self.edges: list[np.ndarray] = []
        self.centres: list[np.ndarray] = []

    def axis(self, name: str, leaves: list) -> np.ndarray:
        i = len(self.names)
        edges = self._edges(name, leaves, self._spec(self.bins, i, "bins"),
                            self._spec(self.range, i, "range"))
        self.names.append(name)
        self.edges.append(edges)
        # pynapple's centres, to the last bit, so that the coordinates align
        self.centres.append(edges[:-1] + np.diff(edges) / 2)
        return self.centres[-1]

    def _spec(self, value, i: int, what: str):
        """The ``i``-th covariate's entry of a per-feature specification, by pynapple's rules:
        a number (or None) applies to every covariate; for one covariate, an edge array or a
        (low, high) pair is its own; for several, a sequence gives one entry per covariate."""
        if not isinstance(value, (list, tuple, np.ndarray)):
            return value
        items = list(value)
        if self.n_features == 1:
            scalars = all(v is not None and np.ndim(v) == 0 for v in items)
            if scalars and (len(items) > 1 if what == "bins" else len(items) == 2):
                return value
        if len(items) != self.n_features:
            example = "bins=[12, 12]" if what == "bins" else "range=[(0, 1), (0, 2)]"
            raise ResultError(f"{what} gives {len(items)} specification(s) for "
                              f"{self.n_features} covariate(s): {value!r}",
                              hint=f"give one entry per covariate, e.g. {example}, as in "
                                   "pynapple")
        return items[i]

    def _edges(self, name: str, leaves: list, bins, low_high) -> np.ndarray:
        if bins is None:
            bins = DEFAULT_BINS
        if np.ndim(bins) == 1:
            edges = np.asarray(bins, dtype=float)
            if len(edges) < 2 or not np.all(np.diff(edges) > 0) or \
                    not np.isfinite(edges).all():
                raise ResultError(f"the bin edges of '{name}' must increase monotonically",
                                  hint="pass e.g. bins=np.linspace(0, 2 * np.pi, 13), or a "
                                       "number of bins")
            return edges
        if np.ndim(bins) != 0 or int(bins) != bins or bins < 1:
            raise ResultError(f"bins must be a number of bins (>= 1) or bin edges, got "
                              f"{bins!r}", hint="e.g. bins=12, as in pynapple")
        low, high = low_high if low_high is not None else self._default_range(name, leaves)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ResultError(f"the range of '{name}' must be (low, high) with low < high, got "
                              f"({low!r}, {high!r})", hint="e.g. range=(0, 2 * np.pi)")
        # numpy.histogramdd's edges for a number of bins, as pynapple gets them
        return np.linspace(float(low), float(high), int(bins) + 1)

    def _default_range(self, name: str, leaves: list) -> tuple[float, float]:
        """A full period for a circular covariate, else its training range."""
        periods = [leaf.period for leaf in leaves if leaf.period is not None]
        if periods:
            return 0.0, float(periods[0])
        found = self.result.covariate_ranges.get(name)
        if found is None:
            raise ResultError(f"this result has no training range of '{name}'",
                              hint="pass range=(low, high), or refit the model")
        if found.interval:
            raise ResultError(f"'{name}' is an IntervalSet indicator: it takes the values 0 "
                              "and 1 only, with no tuning over a range",
                              hint="read it with res.curve(term, scale=\"rate\") or "
                                   "res.table(term)")
        if found.n_columns != 1:
            raise ResultError(f"'{name}' has {found.n_columns} columns; tuning curves are "
                              "drawn over one-column covariates",
                              hint="pass the columns as separate Tsd covariates")
        return float(found.low[0]), float(found.high[0])


__all__ = ["tuning_curves", "DEFAULT_BINS"]
