"""Figures of a fit: a term's curves with their bands, and the coupling matrix.

matplotlib is optional (``pip install glmformula[plot]``). Figures are built on the Agg canvas
directly, without pyplot: nothing is shown, no global backend is switched, and the caller owns
the returned :class:`matplotlib.figure.Figure` (``fig.savefig(...)``; Jupyter displays it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .curves import select_units
from ..errors import ResultError

# Above this many sources per panel, coupling filters are drawn without bands (unreadable).
_MAX_BANDS = 4


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


def plot_curve(result, term: str, *, unit=None, scale: str = "gain", n_points: int = 100):
    """See :meth:`FitResult.plot`."""
    term = result.resolve_term(term)
    frame = result.curve(term, n_points=n_points, scale=scale, unit=unit)
    units = [u for u in select_units(result, unit) if u in frame.columns.get_level_values("unit")]
    if not units:
        raise ResultError(f"no unit has weights for '{term}'", hint="check the unit ids")
    figure, axes = new_figure(len(units))
    ylabel = "gain (x rate)" if scale == "gain" else "log-rate change"
    reference = 1.0 if scale == "gain" else 0.0
    for ax, u in zip(axes, units):
        part = frame[u]
        if isinstance(frame.index, pd.MultiIndex):
            _draw_map(figure, ax, part, scale)
        elif "source" in frame.columns.names:
            _draw_sources(ax, part, reference)
        else:
            _draw_band(ax, frame.index.to_numpy(float), part, reference)
            ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(f"unit {u}", fontsize=9)
        ax.tick_params(labelsize=7)
        if not isinstance(frame.index, pd.MultiIndex):
            ax.set_xlabel(str(frame.index.name), fontsize=8)
    figure.suptitle(term + (" (gain)" if scale == "gain" else " (log rate)"), fontsize=10)
    return figure


def _draw_band(ax, x, part, reference, color="C0", label=None):
    ax.fill_between(x, part["lower"], part["upper"], color=color, alpha=0.25, lw=0)
    ax.plot(x, part["estimate"], color=color, lw=1.5, label=label)
    ax.axhline(reference, color="0.5", lw=0.6, ls=":")


def _draw_sources(ax, part, reference):
    sources = list(dict.fromkeys(part.columns.get_level_values("source")))
    x = part.index.to_numpy(float)
    bands = len(sources) <= _MAX_BANDS
    for i, source in enumerate(sources):
        color = f"C{i % 10}"
        if bands:
            _draw_band(ax, x, part[source], reference, color=color, label=f"from {source}")
        else:
            ax.plot(x, part[source]["estimate"], lw=0.8, color=color, alpha=0.8)
    ax.axhline(reference, color="0.5", lw=0.6, ls=":")
    if bands and len(sources) > 1:
        ax.legend(fontsize=6)


def _draw_map(figure, ax, part, scale):
    index = part.index
    xs, ys = index.levels[0].to_numpy(float), index.levels[1].to_numpy(float)
    values = part["estimate"].to_numpy(float).reshape(len(xs), len(ys))
    image = ax.imshow(values.T, origin="lower", aspect="auto",
                      extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis")
    ax.set_xlabel(str(index.names[0]), fontsize=8)
    ax.set_ylabel(str(index.names[1]), fontsize=8)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.ax.tick_params(labelsize=6)
    colorbar.set_label("gain" if scale == "gain" else "log rate", fontsize=7)


def plot_coupling(result, *, statistic: str = "integral", ax=None):
    """See :meth:`FitResult.plot_coupling`."""
    matrix = result.coupling_matrix(statistic=statistic)
    if ax is None:
        figure, (ax,) = new_figure(1, panel_size=(5.0, 4.2))
    else:
        figure = ax.figure
    draw_matrix(figure, ax, matrix, label=f"coupling {statistic} (log-rate)")
    ax.set_title(f"coupling filters: {statistic} over lag", fontsize=10)
    return figure


def draw_matrix(figure, ax, matrix: pd.DataFrame, *, label: str, cmap: str = "RdBu_r",
                limit: float | None = None):
    """A post x pre heat map centred on 0 (the diagonal, NaN, is left blank); colours span
    +-``limit`` (default: the largest magnitude)."""
    values = matrix.to_numpy(float)
    if limit is None:
        limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    n_post, n_pre = values.shape
    step = max(1, math.ceil(max(n_post, n_pre) / 16))
    ax.set_xticks(range(0, n_pre, step), [str(c) for c in matrix.columns[::step]], fontsize=6,
                  rotation=90)
    ax.set_yticks(range(0, n_post, step), [str(i) for i in matrix.index[::step]], fontsize=6)
    ax.set_xlabel(f"{matrix.columns.name or 'pre'} (source unit)", fontsize=8)
    ax.set_ylabel(f"{matrix.index.name or 'post'} (target unit)", fontsize=8)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.85)
    colorbar.set_label(label, fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    return image


__all__ = ["plot_curve", "plot_coupling", "new_figure", "draw_matrix"]
