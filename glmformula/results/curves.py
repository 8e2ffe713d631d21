"""A term's effect on the firing rate as a function of what it encodes, with 95% bands.

Three kinds of curve, chosen from the term:

* **over covariates** (``rcos``, ``bspline``, ``cyclic``, ``onehot``, bare covariates and their
  transforms, and their interactions): the term's columns evaluated on a grid of covariate
  values (see :mod:`.evaluation`) times its weights. One covariate gives a tuning curve, two
  (``rcos(x, 5):rcos(y, 5)``) a map on a 2-D grid. In an interaction of a basis with a scalar
  (``cyclic(hd, 8):speed``) the scalar is held at 1: the curve is the change of log rate per
  unit of the scalar, as a function of the other covariate (a gain curve).
* **over lag** (``filter``, ``history``, ``coupling``): the filter ``K w`` at lags
  ``j * bin_size`` for ``j = 1 .. window`` (``start + 1 .. start + window`` for an event kernel
  ``filter(events, ..., start=...)``: negative lags are before the event), with ``K`` the very
  kernels the design convolved with (:meth:`~glmformula.graph.nodes.CausalFilter.kernels`).
  ``K w`` is the weight of one spike (or event, or unit of the covariate) ``j`` bins back.
  A temporal term gated by a state (``coupling(all):rest``, ``history(8):speed``) gives the
  change of that filter in the state (per unit of a scalar state); ``curve(term, state=...)``
  and ``coupling_matrix(state=...)`` read the filters in a state (see :mod:`.states`).

Bands are pointwise, by the delta method: the effect ``x' w`` has variance ``x' S x`` with
``S`` the weights' block of :attr:`FitResult.covariance`.

On the **rate** scale (``scale="rate"``, covariate curves only) the curve is a firing rate in
Hz, comparable with pynapple's tuning curves: ``exp(b + f(x) + sum_other mean_t g(t)) /
bin_size``, with ``b`` the intercept, ``f`` the term's effect and every other term (and offset)
at its average contribution over the training rows, ``mean_t g(t) = m' w`` with ``m`` the
means of its design columns over those rows. Its band is that of the whole linear combination
(intercept, the term's weights and the others' weights, by the delta method on the unit's full
covariance). The column means come from :attr:`FitResult.column_means` where a result holds
them, else from the training data passed as ``data=``. It is the model's rate at the other
terms' average contribution, not the average rate: it matches pynapple's tuning curve (the mean
rate at each value) where the other terms do not vary with the covariate, and lies below it
where they do (coupling from co-tuned cells) or make brief large excursions (``exp`` of an
average is below the average of ``exp``). A term constrained to average zero
over the training rows (see :attr:`FitResult.constrained_terms`) has a covariance that is
singular along the constant, so its curve and band are those of the *centred* effect.
"""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd
import pynapple as nap

from ..errors import ResultError
from ..fitting.families import get_family
from ..graph import nodes
from . import states
from .evaluation import (
    GridGraph,
    contains,
    evaluate_columns,
    leaves,
    spike_filter_call,
    term_factor_nodes,
)

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054

SCALES = ("gain", "log", "rate")
LAG_INDEX = "lag (s)"


@attrs.frozen(eq=False)
class WeightBlock:
    """Weights of one curve: a unit's weights of a term, or of one source unit (coupling).

    ``columns`` are stored column indices (rows of ``FitResult.weights``; the covariance index
    is ``columns + 1`` because the intercept comes first).
    """

    unit: object
    unit_index: int
    source: object
    columns: np.ndarray


def weight_blocks(result, term: str, *, group_size: int | None = None) -> list[WeightBlock]:
    """Per unit (and, for lag terms read in groups of ``group_size``, per source) the stored
    columns of ``term``, in the order of the unit's own columns."""
    blocks = []
    for u, unit in enumerate(result.unit_ids):
        labels = result.unit_labels[u]
        own = [(c, label) for c, (t, label) in zip(result.unit_columns[u], labels) if t == term]
        if not own:
            continue
        if group_size is None:
            blocks.append(WeightBlock(unit, u, None, np.asarray([c for c, _ in own], int)))
            continue
        for start in range(0, len(own), group_size):
            group = own[start:start + group_size]
            prefix = group[0][1][:group[0][1].rfind("[")]
            blocks.append(WeightBlock(unit, u, _source_id(result, prefix),
                                      np.asarray([c for c, _ in group], int)))
    return blocks


def _source_id(result, prefix: str):
    """``"[unit 3]"`` -> the unit id 3 (as the TsGroup spells it); ``""`` -> None; other column
    labels (a multi-column covariate's ``"[x]"``) -> the label's text."""
    if not prefix:
        return None
    text = prefix.strip("[]")
    if text.startswith("unit "):
        text = text[len("unit "):]
        for unit in result.unit_ids:
            if str(unit) == text:
                return unit
        try:
            return int(text)
        except ValueError:
            return text
    return text


def select_units(result, unit) -> list:
    """The unit ids asked for (None: all), checked."""
    if unit is None:
        return list(result.unit_ids)
    wanted = list(unit) if isinstance(unit, (list, tuple, np.ndarray)) else [unit]
    missing = [u for u in wanted if u not in result.unit_ids]
    if missing:
        raise ResultError(f"unit(s) {missing} are not in this model",
                          hint="its units: " + ", ".join(map(str, result.unit_ids)))
    return wanted


def band(X: np.ndarray, w: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effect ``X w`` and its pointwise standard error ``sqrt(diag(X S X'))``."""
    effect = X @ w
    var = np.einsum("ij,jk,ik->i", X, S, X)
    return effect, np.sqrt(np.clip(var, 0.0, None))


def _weights_and_cov(result, block: WeightBlock):
    idx = block.columns + 1
    S = result.covariance[block.unit_index][np.ix_(idx, idx)]
    return result.weights[block.columns, block.unit_index], S


def _frame(index, blocks, X, result, scale, with_source: bool) -> pd.DataFrame:
    data, keys = [], []
    for block in blocks:
        w, S = _weights_and_cov(result, block)
        effect, se = band(X(block) if callable(X) else X, w, S)  # X per block: a callable
        lower, upper = effect - Z95 * se, effect + Z95 * se
        if scale == "gain" and _link(result) != "identity":  # identity: the effect is additive
            effect, lower, upper = np.exp(effect), np.exp(lower), np.exp(upper)
        head = (block.unit, block.source) if with_source else (block.unit,)
        for stat, values in (("estimate", effect), ("lower", lower), ("upper", upper)):
            keys.append(head + (stat,))
            data.append(values)
    names = ["unit", "source", "stat"] if with_source else ["unit", "stat"]
    columns = pd.MultiIndex.from_tuples(keys, names=names)
    return pd.DataFrame(np.column_stack(data) if data else np.empty((len(index), 0)),
                        index=index, columns=columns)


def curve(result, term: str, *, n_points: int = 100, scale: str = "gain",
          unit=None, data=None, state=None) -> pd.DataFrame:
    """See :meth:`FitResult.curve`.

    ``scale="rate"`` gives the firing rate in Hz over the covariate, the other terms at their
    average contribution over the training rows (see the module's docstring); it needs the
    design's column means over the training rows: :attr:`FitResult.column_means` (and
    ``offset_mean``) where the result holds them, else ``data``, the data the model was fitted
    on (its design is rebuilt on the training epochs to average them).
    """
    if scale not in SCALES:
        raise ResultError(f"unknown scale {scale!r}",
                          hint="use scale=\"gain\" (multiplicative gain on the rate), "
                               "scale=\"log\" (log-rate) or scale=\"rate\" (Hz)")
    if int(n_points) != n_points or n_points < 2:
        raise ResultError(f"n_points must be an integer >= 2, got {n_points!r}",
                          hint="e.g. n_points=100")
    term = result.resolve_term(term)
    units = select_units(result, unit)
    if not any(t == term for labels in result.unit_labels for t, _ in labels):
        raise ResultError(f"'{term}' has no fitted weights (an offset enters with weight 1)",
                          hint="curves are drawn for terms with weights; see res.coef")
    factor_nodes = term_factor_nodes(result, term)
    gated = states.gated_term(result, term)
    if gated is not None or spike_filter_call(result, term) is not None or (
            len(factor_nodes) == 1 and isinstance(factor_nodes[0], nodes.CausalFilter)):
        if scale == "rate":
            raise ResultError(f"'{term}' is a filter: its curve is the effect of one spike (or "
                              "one unit of the covariate) at each lag, not a rate",
                              hint="use scale=\"gain\" or scale=\"log\" for filters; "
                                   "scale=\"rate\" is for tuning curves over a covariate")
        if gated is not None:
            return _gated_lag_curve(result, gated, factor_nodes, units, scale, state)
        return _state_lag_curve(result, term, factor_nodes[0], units, scale, state)
    if state is not None:
        raise ResultError(f"'{term}' is not a temporal term: state= reads history, coupling "
                          "and filter terms in a state",
                          hint="leave state= out, or pass e.g. curve(\"coupling\", "
                               "state=\"rest\")")
    return _covariate_curve(result, term, factor_nodes, int(n_points), units, scale, data)


def lag_kernels(node: nodes.CausalFilter, bin_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Lags (s) ``j * bin_size`` for ``j = start + 1 .. start + window`` (``start`` 0 but for
    event kernels, negative before the event) and the design's kernels (window, k)."""
    return bin_size * node.lags(), node.kernels()


def _lag_curve(result, term, node, units, scale) -> pd.DataFrame:
    lags, K = lag_kernels(node, result.bin_size)
    blocks = [b for b in weight_blocks(result, term, group_size=node.k) if b.unit in units]
    with_source = any(b.source is not None for b in blocks)
    index = pd.Index(lags, name=LAG_INDEX)
    return _frame(index, blocks, K, result, scale, with_source)


def _gated_lag_curve(result, gated, factor_nodes, units, scale, state) -> pd.DataFrame:
    """The curve of a gated term (``coupling(all):rest``) over lag: the change of the filter
    inside an IntervalSet state, or per unit of a scalar state (held at 1)."""
    if state is not None:
        raise ResultError(
            f"'{gated.term}' is the change of the filter with {gated.state!r}: its curve has "
            "no state=", hint=f"for the filter in a state pass the ungated term, e.g. "
                              f"curve({str(gated.call)!r}, state=...)")
    frame = _lag_curve(result, gated.term, factor_nodes[gated.position], units, scale)
    change = (f"change of the filter inside {gated.state!r}" if gated.interval else
              f"change of the filter per unit of {gated.state!r}")
    frame.attrs.update(term=gated.term, state=gated.state, effect=change)
    return frame


def _state_lag_curve(result, term, node, units, scale, state) -> pd.DataFrame:
    """An ungated temporal term over lag in a state (see :mod:`.states`): its filter plus each
    gated term of the same function (and covariate, for ``filter``) times its state's value,
    with the band of that sum (delta method on the unit's covariance of all their weights; the
    lags of filters with different windows are aligned). ``state=None``: the term alone."""
    call = result.formula.term(term).factors[0]
    # the gated terms of the same filter: the same function (and, for filter(), covariate)
    gated = [g for g in states.gated_terms(result, call.function)
             if call.function != "filter" or g.call.argument("x") == call.argument("x")]
    values = states.state_values(state, gated, call.function)
    if not values:
        frame = _lag_curve(result, term, node, units, scale)
        if gated:
            frame.attrs.update(term=term, state=states.describe({}, gated))
        return frame
    parts = [(term, node, 1.0)] + [(g.term, states.filter_node(result, g), values[g.state])
                                   for g in gated if g.state in values]
    kernels = []
    for text, part, value in parts:
        lags, K = lag_kernels(part, result.bin_size)
        kernels.append((text, part, value, np.rint(lags / result.bin_size).astype(int), K))
    grid = np.unique(np.concatenate([lag_bins for *_, lag_bins, _ in kernels]))
    pieces = {}  # (unit position, unit, source) -> [(stored columns, kernels on the grid)]
    for text, part, value, lag_bins, K in kernels:
        on_grid = np.zeros((len(grid), K.shape[1]))
        on_grid[np.searchsorted(grid, lag_bins)] = value * K
        for b in weight_blocks(result, text, group_size=part.k):
            if b.unit in units:
                pieces.setdefault((b.unit_index, b.unit, b.source), []).append((b.columns,
                                                                                on_grid))
    blocks, designs = [], {}
    for (u, unit, source), found in pieces.items():
        block = WeightBlock(unit, u, source, np.concatenate([c for c, _ in found]))
        blocks.append(block)
        designs[id(block)] = np.hstack([X for _, X in found])
    with_source = any(b.source is not None for b in blocks)
    index = pd.Index(grid * result.bin_size, name=LAG_INDEX)
    frame = _frame(index, blocks, lambda b: designs[id(b)], result, scale, with_source)
    frame.attrs.update(term=term, state=states.describe(values, gated))
    return frame


def covariate_curve(result, term: str, axis, *, scale: str = "rate", unit=None,
                    data=None) -> pd.DataFrame:
    """The curve of a covariate term (canonical text; not a filter) on covariate values of the
    caller's choosing: ``axis(name, leaves)`` returns the grid values of each covariate the term
    reads (``leaves``: its :class:`~glmformula.graph.nodes.Covariate` nodes, which carry the
    period of a circular one). Used by :func:`~glmformula.results.tuning.tuning_curves`."""
    return _covariate_curve(result, term, term_factor_nodes(result, term), 0,
                            select_units(result, unit), scale, data, axis=axis)


def _covariate_curve(result, term, factor_nodes, n_points, units, scale,
                     data=None, axis=None) -> pd.DataFrame:
    has_basis = [contains(n, nodes.Basis) for n in factor_nodes]
    if any(contains(n, nodes.CausalFilter) for n in factor_nodes):
        raise ResultError(f"'{term}' interacts a filter with other factors: it has no curve",
                          hint="read its weights with table(term)")
    # With a basis in the term, scalar factors are held at 1: the curve is the gain per unit
    # of the scalar; without one, every factor is evaluated on the grid.
    gain = {i for i, b in enumerate(has_basis) if any(has_basis) and not b}
    if scale == "rate" and gain:
        raise ResultError(f"'{term}' is a gain curve (its scalar factor is held at 1): it has "
                          "no rate scale", hint="use scale=\"log\" or scale=\"gain\"; "
                          "scale=\"rate\" is for terms over one or two covariates")
    grid_leaves = []
    for i, node in enumerate(factor_nodes):
        if i not in gain:
            grid_leaves.extend(leaf for leaf in leaves(node) if leaf not in grid_leaves)
    names = list(dict.fromkeys(leaf.name for leaf in grid_leaves))
    if len(names) > 2:
        raise ResultError(f"'{term}' reads {len(names)} covariates ({', '.join(names)}); curves "
                          "are drawn over one or two", hint="read its weights with table(term)")
    if axis is None:
        axis = lambda name, found: _axis(result, name, found, n_points)
    axes = {name: axis(name, [x for x in grid_leaves if x.name == name]) for name in names}
    if len(names) == 1:
        index = pd.Index(axes[names[0]], name=names[0])
        values = {names[0]: axes[names[0]]}
    else:
        index = pd.MultiIndex.from_product([axes[names[0]], axes[names[1]]], names=names)
        values = {n: index.get_level_values(n).to_numpy(float) for n in names}
    X = evaluate_columns(factor_nodes, gain, GridGraph(values, result.state))
    blocks = [b for b in weight_blocks(result, term) if b.unit in units]
    if blocks and X.shape[1] != len(blocks[0].columns):
        raise ResultError(f"'{term}': the grid gives {X.shape[1]} columns but the model has "
                          f"{len(blocks[0].columns)} weights", hint="curves of multi-column "
                          "covariates are not supported; read them with table(term)")
    if scale == "rate":
        return _rate_frame(index, blocks, X, result, data)
    return _frame(index, blocks, X, result, scale, with_source=False)


def training_column_means(result, data=None) -> tuple[np.ndarray, float]:
    """Means of the stored design columns (P,) and of the offset over the training rows.

    From the result where it holds them (``column_means``, ``offset_mean``), else from
    ``data`` (the data the model was fitted on: its design is rebuilt on the training epochs).
    """
    held = getattr(result, "column_means", None)
    if held is not None:
        return np.asarray(held, float), float(getattr(result, "offset_mean", 0.0) or 0.0)
    if data is None:
        raise ResultError(
            "scale=\"rate\" holds the other terms at their average over the training rows, "
            "and this result does not store those averages",
            hint="pass the data the model was fitted on: curve(term, scale=\"rate\", "
                 "data=data)")
    epochs = np.asarray(result.epochs, float)
    design = result.design(data, epochs=nap.IntervalSet(start=epochs[:, 0], end=epochs[:, 1]))
    rows = design.rows
    if len(rows) != result.n_rows:
        raise ResultError(f"the data give {len(rows)} training rows, the fit used "
                          f"{result.n_rows}", hint="pass the data the model was fitted on")
    means = np.asarray(design.storage[rows], float).mean(axis=0)
    offset = 0.0 if design.offset is None else float(np.mean(design.offset[rows]))
    return means, offset


def _rate_frame(index, blocks, X, result, data) -> pd.DataFrame:
    """Rate (Hz) over the grid: ``exp(b + X w + m_other' w_other + offset mean) / bin_size``,
    band by the delta method on the unit's (intercept, weights) covariance."""
    means, offset = training_column_means(result, data)
    data_columns, keys = [], []
    for block in blocks:
        u = block.unit_index
        own = np.asarray(result.unit_columns[u], int)         # the unit's stored columns
        position = {c: i + 1 for i, c in enumerate(own)}      # -> index in (intercept, own)
        C = np.zeros((X.shape[0], len(own) + 1))
        C[:, 0] = 1.0
        others = [c for c in own if c not in set(block.columns.tolist())]
        C[:, [position[c] for c in others]] = means[others]
        C[:, [position[c] for c in block.columns]] = X
        theta = np.concatenate([[result.intercepts[u]], result.weights[own, u]])
        idx = np.concatenate([[0], own + 1])
        S = result.covariance[u][np.ix_(idx, idx)]
        eta, se = band(C, theta, S)
        eta = eta + offset
        for stat, values in (("estimate", eta), ("lower", eta - Z95 * se),
                             ("upper", eta + Z95 * se)):
            keys.append((block.unit, stat))
            data_columns.append(_expected(result, values))
    columns = pd.MultiIndex.from_tuples(keys, names=["unit", "stat"])
    return pd.DataFrame(np.column_stack(data_columns) if data_columns
                        else np.empty((len(index), 0)), index=index, columns=columns)


def _link(result) -> str:
    return get_family(getattr(result, "family", "poisson")).link


def _expected(result, eta: np.ndarray) -> np.ndarray:
    """The curve on the response's scale: a rate in Hz for the count families (for bernoulli
    the spike probability per bin over the bin size), the expected value in the response's
    units for gamma and gaussian."""
    family = get_family(getattr(result, "family", "poisson"))
    if family.name == "poisson":
        return np.exp(np.clip(eta, -700, 700)) / result.bin_size
    mean = family.mean(eta)
    return mean / result.bin_size if family.counts else mean


def _axis(result, name: str, name_leaves: list, n_points: int) -> np.ndarray:
    """Grid values of one covariate: a full period for circular ones, 0/1 for an indicator,
    else ``n_points`` evenly spaced over the training range."""
    periods = [leaf.period for leaf in name_leaves if leaf.period is not None]
    if periods:
        return np.linspace(0.0, periods[0], n_points, endpoint=False)
    rng = result.covariate_ranges.get(name)
    if rng is None:
        raise ResultError(f"this result has no training range of '{name}'",
                          hint="refit the model (results saved by an older version lack it)")
    if rng.interval:
        return np.array([0.0, 1.0])
    if rng.n_columns != 1:
        raise ResultError(f"'{name}' has {rng.n_columns} columns; curves are drawn over "
                          "one-column covariates", hint="read the weights with table(term), "
                          "or pass the columns as separate Tsd covariates")
    low, high = float(rng.low[0]), float(rng.high[0])
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ResultError(f"'{name}' had no finite value on the training rows",
                          hint="check the covariate")
    return np.linspace(low, high, n_points)


def coupling_matrix(result, *, statistic: str = "integral", state=None) -> pd.DataFrame:
    """See :meth:`FitResult.coupling_matrix`.

    In a state (see :mod:`.states`) each pair's filter is the ungated coupling filter plus each
    gated coupling term's filter times its state's value; the statistic is taken of that sum.
    """
    statistics = ("integral", "peak")
    if statistic not in statistics:
        raise ResultError(f"unknown statistic {statistic!r}",
                          hint="use statistic=\"integral\" or \"peak\"")
    terms = [t for t in result.formula.terms
             if (call := spike_filter_call(result, t)) is not None and call.function == "coupling"]
    gated = states.gated_terms(result, "coupling")
    if not terms and not gated:
        raise ResultError("the model has no coupling term",
                          hint="add coupling(all) to the formula, e.g. "
                               "\"spikes ~ ... + history(8, log) + coupling(all)\"")
    values = states.state_values(state, gated, "coupling")
    if not terms and not any(values.values()):
        names = ", ".join(repr(g.state) for g in gated)
        raise ResultError(f"this model has coupling only in a state ({names}): outside it the "
                          "coupling is 0 by construction",
                          hint=f"pass the state, e.g. coupling_matrix(state={gated[0].state!r})"
                               if gated[0].interval else
                               f"pass the state's value, e.g. "
                               f"coupling_matrix(state={{{gated[0].state!r}: 1.0}})")
    parts = [(terms[0], term_factor_nodes(result, terms[0])[0], 1.0)] if terms else []
    parts += [(g.term, states.filter_node(result, g), values[g.state]) for g in gated
              if values.get(g.state, 0.0) != 0.0]
    kernels = {}  # (post, pre) -> {lag in bins: filter value}
    sources = list(result.unit_ids)
    for term, node, value in parts:
        lags, K = lag_kernels(node, result.bin_size)
        lag_bins = np.rint(lags / result.bin_size).astype(int)
        for block in weight_blocks(result, term, group_size=node.k):
            kernel = kernels.setdefault((block.unit, block.source), {})
            for lag, v in zip(lag_bins, value * (K @ result.weights[block.columns,
                                                                    block.unit_index])):
                kernel[lag] = kernel.get(lag, 0.0) + v
            sources.append(block.source)
    out = pd.DataFrame(np.nan, index=pd.Index(result.unit_ids, name="post"),
                       columns=pd.Index(list(dict.fromkeys(sources)), name="pre"))
    for (post, pre), kernel in kernels.items():
        filt = np.array([kernel[lag] for lag in sorted(kernel)])
        out.loc[post, pre] = filt.sum() if statistic == "integral" else \
            filt[np.argmax(np.abs(filt))]
    if gated:
        out.attrs["state"] = states.describe(values, gated)
    return out


__all__ = ["curve", "coupling_matrix", "weight_blocks", "band", "Z95", "lag_kernels",
           "training_column_means", "covariate_curve"]
