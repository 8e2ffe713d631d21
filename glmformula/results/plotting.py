"""Figures of a fit: a term's curves with their bands, and the coupling matrix.

matplotlib is optional (``pip install glmformula[plot]``). Figures are built on the Agg canvas
directly, without pyplot: nothing is shown, no global backend is switched, and the caller owns
the returned :class:`matplotlib.figure.Figure` (``fig.savefig(...)``; Jupyter displays it).

Every axis says what it shows and in which unit: the covariate's name (with ``rad`` or ``deg``
for a circular covariate of period 2π or 360), ``lag (s)`` for filters, and ``gain (× rate)``,
``log-rate change`` or ``rate (Hz)`` for the effect. Panels are titled by the unit ids of the
TsGroup. Coupling filters are drawn in one colour per source unit, the same in every panel, with
one legend for the figure.

Where the animal went: a :class:`FitResult` keeps only the range of each covariate over the
training rows (:attr:`FitResult.covariate_ranges`), which the curves' grids span, not the
occupancy inside that range. A 2-D map is therefore drawn over the whole rectangle unless the
training data are given (``data=``), in which case the cells the animal never visited on the
training rows are masked (drawn blank, with a note).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import ResultError
from .curves import LAG_INDEX, select_units
from .curves import curve as term_curve
from .evaluation import leaves, term_factor_nodes

# Above this many sources per panel, coupling filters are drawn without bands (unreadable).
_MAX_BANDS = 4
# Above this many sources the figure has no legend of source colours (a colour bar instead).
_MAX_LEGEND = 20
#: y-axis label of each curve scale.
SCALE_LABELS = {"gain": "gain (× rate)", "log": "log-rate change", "rate": "rate (Hz)"}
#: Where the effect is "no effect" on each scale (a dotted reference line).
_REFERENCE = {"gain": 1.0, "log": 0.0, "rate": None}
#: Colour of the coupling matrix's cells that have no filter (the diagonal).
NOT_MODELLED = "0.8"
# Occupancy of 2-D maps is counted on at most this many cells per axis.
_OCCUPANCY_CELLS = 20


def new_figure(n_panels: int, *, panel_size=(2.6, 2.0), max_columns: int = 6):
    """A figure with a grid of ``n_panels`` axes (the unused ones hidden) on the Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ResultError("plots need matplotlib", hint="pip install matplotlib "
                          "(or glmformula[plot])") from None
    n_cols = min(max_columns, max(1, math.ceil(math.sqrt(n_panels))))
    n_rows = math.ceil(n_panels / n_cols)
    figure = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows + 0.6),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, list(axes[:n_panels])


def covariate_label(name: str, period: float | None = None) -> str:
    """Axis label of a covariate: its name, with the unit of a circular one (period 2π: rad,
    360: deg)."""
    if period is None:
        return str(name)
    if np.isclose(period, 2 * np.pi):
        return f"{name} (rad)"
    if np.isclose(period, 360.0):
        return f"{name} (deg)"
    return f"{name} (period {period:g})"


def _periods(result, term: str) -> dict:
    """Covariate name -> its period (None if not circular) in the term's factors."""
    try:
        found = [leaf for node in term_factor_nodes(result, term) for leaf in leaves(node)]
    except Exception:  # noqa: BLE001 - labels only: fall back to the bare names
        return {}
    periods: dict = {}
    for leaf in found:
        if periods.get(leaf.name) is None:
            periods[leaf.name] = getattr(leaf, "period", None)
    return periods


def source_colors(sources) -> dict:
    """One colour per source unit, fixed by its position in ``sources`` (the same in every
    panel): tab10 up to 10 sources, tab20 up to 20, evenly spaced hues beyond."""
    from matplotlib import colormaps
    sources = list(sources)
    n = len(sources)
    if n <= 10:
        return {s: f"C{i}" for i, s in enumerate(sources)}
    cmap = colormaps["tab20" if n <= 20 else "hsv"]
    positions = np.arange(n) if n <= 20 else np.arange(n) / n
    return {s: cmap(p) for s, p in zip(sources, positions)}


def plot_curve(result, term: str, *, unit=None, scale: str = "gain", n_points: int = 100,
               data=None):
    """See :meth:`FitResult.plot`.

    ``data`` (the training data) is needed for ``scale="rate"`` where the result does not
    hold the design's column means, and masks a 2-D map's cells the animal never visited on
    the training rows; without it a map spans the training range of each covariate
    (:attr:`FitResult.covariate_ranges`), visited or not.
    """
    term = result.resolve_term(term)
    frame = term_curve(result, term, n_points=n_points, scale=scale, unit=unit, data=data)
    units = [u for u in select_units(result, unit) if u in frame.columns.get_level_values("unit")]
    if not units:
        raise ResultError(f"no unit has weights for '{term}'", hint="check the unit ids")
    figure, axes = new_figure(len(units))
    ylabel = SCALE_LABELS[scale]
    reference = _REFERENCE[scale]
    periods = _periods(result, term)
    coupling = "source" in frame.columns.names
    colors = None
    mask = None
    if isinstance(frame.index, pd.MultiIndex) and data is not None:
        mask = _unvisited(result, term, frame.index, data)
    if coupling:
        sources = list(dict.fromkeys(frame.columns.get_level_values("source")))
        ordered = [u for u in result.unit_ids if u in sources] + \
                  [s for s in sources if s not in result.unit_ids]
        colors = source_colors(ordered)
    for ax, u in zip(axes, units):
        part = frame[u]
        if isinstance(frame.index, pd.MultiIndex):
            _draw_map(figure, ax, part, scale, periods, mask)
        elif coupling:
            _draw_sources(ax, part, reference, colors)
            ax.set_ylabel(ylabel, fontsize=8)
        else:
            _draw_band(ax, frame.index.to_numpy(float), part, reference)
            ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(f"unit {u}" + (" (target)" if coupling else ""), fontsize=9)
        ax.tick_params(labelsize=7)
        if not isinstance(frame.index, pd.MultiIndex):
            name = str(frame.index.name)
            ax.set_xlabel(name if name == LAG_INDEX else covariate_label(name, periods.get(name)),
                          fontsize=8)
    what = {"gain": "gain on the rate", "log": "log-rate change", "rate": "rate (Hz), other "
            "terms at their training average"}[scale]
    title = f"{term}: {what}"
    if not isinstance(frame.index, pd.MultiIndex):
        title += ", 95% bands"
    if coupling:
        title += "; one colour per source unit"
        if len(colors) <= _MAX_LEGEND:
            handles = [_line_handle(colors[s], f"from unit {s}") for s in colors]
            figure.legend(handles=handles, loc="outside right center", fontsize=7,
                          title="source", title_fontsize=7, frameon=False)
    if mask is not None and mask.any():
        title += "; blank: never visited in training"
    import textwrap
    width = max(30, int(figure.get_figwidth() * 13))  # characters of 10 pt text per line
    figure.suptitle(textwrap.fill(title, width), fontsize=10)
    return figure


def _line_handle(color, label):
    from matplotlib.lines import Line2D
    return Line2D([], [], color=color, lw=1.5, label=label)


def _draw_band(ax, x, part, reference, color="C0", label=None):
    ax.fill_between(x, part["lower"], part["upper"], color=color, alpha=0.25, lw=0)
    ax.plot(x, part["estimate"], color=color, lw=1.5, label=label)
    if reference is not None:
        ax.axhline(reference, color="0.5", lw=0.6, ls=":")


def _draw_sources(ax, part, reference, colors):
    sources = list(dict.fromkeys(part.columns.get_level_values("source")))
    x = part.index.to_numpy(float)
    bands = len(sources) <= _MAX_BANDS
    for source in sources:
        color = colors[source]
        if bands:
            _draw_band(ax, x, part[source], reference, color=color, label=f"from unit {source}")
        else:
            ax.plot(x, part[source]["estimate"], lw=0.8, color=color, alpha=0.8,
                    label=f"from unit {source}")
    if reference is not None:
        ax.axhline(reference, color="0.5", lw=0.6, ls=":")


def _unvisited(result, term, index: pd.MultiIndex, data) -> np.ndarray:
    """Grid points (x, y) of a 2-D map far from every training row, (n_x, n_y) bool.

    Occupancy is counted on at most ``_OCCUPANCY_CELLS`` cells per axis, and a cell counts as
    visited when it or one of its 8 neighbours holds a training row (so a path's gaps between
    visited cells are not masked); the rest is masked."""
    import pynapple as nap
    names = list(index.names)
    found = {leaf.name: leaf for node in term_factor_nodes(result, term) for leaf in leaves(node)}
    epochs = np.asarray(result.epochs, float)
    design = result.design(data, epochs=nap.IntervalSet(start=epochs[:, 0], end=epochs[:, 1]))
    values = [np.asarray(design.graph.evaluate(found[n]), float)[design.valid][:, 0]
              for n in names]
    xs, ys = index.levels[0].to_numpy(float), index.levels[1].to_numpy(float)
    edges = [np.linspace(g[0], g[-1], min(len(g), _OCCUPANCY_CELLS) + 1) for g in (xs, ys)]
    finite = np.isfinite(values[0]) & np.isfinite(values[1])
    counts, _, _ = np.histogram2d(values[0][finite], values[1][finite], bins=edges)
    padded = np.pad(counts > 0, 1)
    visited = np.zeros_like(counts, dtype=bool)
    for dx in (0, 1, 2):
        for dy in (0, 1, 2):
            visited |= padded[dx:dx + counts.shape[0], dy:dy + counts.shape[1]]
    cx = np.clip(np.searchsorted(edges[0], xs, side="right") - 1, 0, len(edges[0]) - 2)
    cy = np.clip(np.searchsorted(edges[1], ys, side="right") - 1, 0, len(edges[1]) - 2)
    return ~visited[np.ix_(cx, cy)]


def _draw_map(figure, ax, part, scale, periods, mask=None):
    from matplotlib import colormaps
    index = part.index
    xs, ys = index.levels[0].to_numpy(float), index.levels[1].to_numpy(float)
    values = part["estimate"].to_numpy(float).reshape(len(xs), len(ys))
    if mask is not None:
        values = np.ma.masked_array(values, mask=mask)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(values.T, origin="lower", aspect="auto",
                      extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap)
    ax.set_xlabel(covariate_label(index.names[0], periods.get(index.names[0])), fontsize=8)
    ax.set_ylabel(covariate_label(index.names[1], periods.get(index.names[1])), fontsize=8)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.ax.tick_params(labelsize=6)
    colorbar.set_label(SCALE_LABELS[scale], fontsize=7)


def plot_coupling(result, *, statistic: str = "integral", ax=None, state=None):
    """See :meth:`FitResult.plot_coupling`."""
    matrix = result.coupling_matrix(statistic=statistic, state=state)
    if ax is None:
        figure, (ax,) = new_figure(1, panel_size=(5.0, 4.4))
    else:
        figure = ax.figure
    draw_matrix(figure, ax, matrix, label=f"coupling {statistic} (log-rate)")
    where = f" ({matrix.attrs['state']})" if "state" in matrix.attrs else ""
    ax.set_title(f"coupling filters: {statistic} over lag{where}", fontsize=10)
    return figure


def draw_matrix(figure, ax, matrix: pd.DataFrame, *, label: str, cmap: str = "RdBu_r",
                limit: float | None = None):
    """A post x pre heat map centred on 0; colours span +-``limit`` (default: the largest
    magnitude). Cells without a value (NaN: the diagonal, where a unit's own past is its
    history term, and pairs not modelled) are grey and hatched, distinct from a coupling of 0
    (white), with a note under the axes."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle
    values = matrix.to_numpy(float)
    if limit is None:
        limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    colours = colormaps[cmap].with_extremes(bad=NOT_MODELLED)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=-limit, vmax=limit,
                      interpolation="nearest")
    missing = np.argwhere(~np.isfinite(values))
    for row, column in missing:
        ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, facecolor="none",
                               edgecolor="0.5", hatch="////", lw=0, gid="not modelled"))
    n_post, n_pre = values.shape
    step = max(1, math.ceil(max(n_post, n_pre) / 16))
    ax.set_xticks(range(0, n_pre, step), [str(c) for c in matrix.columns[::step]], fontsize=6,
                  rotation=90)
    ax.set_yticks(range(0, n_post, step), [str(i) for i in matrix.index[::step]], fontsize=6)
    note = "\ngrey hatched: no filter (a unit's own past is its history term)" \
        if len(missing) else ""
    ax.set_xlabel(f"{matrix.columns.name or 'pre'} (source unit){note}", fontsize=8)
    ax.set_ylabel(f"{matrix.index.name or 'post'} (target unit)", fontsize=8)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.85)
    colorbar.set_label(label, fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    return image


__all__ = ["plot_curve", "plot_coupling", "new_figure", "draw_matrix", "source_colors",
           "covariate_label", "SCALE_LABELS"]
