"""Plot a comparison table: held-out bits/spike per model with error bars (matplotlib).

The figure is built on the Agg canvas without pyplot (nothing shown, no backend switched); the
caller owns it (``fig.savefig(path)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: y-axis label: what a bit per spike measures.
YLABEL = "bits / spike (over a constant rate)"
#: ... and the deviance explained, the score of continuous families (gamma, gaussian).
YLABEL_DEVIANCE = "deviance explained (1 - D / D_null)"


def plot_comparison(table: pd.DataFrame, ax=None):
    """Bits/spike per model (mean over folds, with standard errors); per-unit lines when the
    table has one row per (model, unit); the deviance explained for a comparison of a
    continuous family. Returns the figure (never shows it)."""
    score = "bits_per_spike" if "cv_bits_per_spike" in table.columns else "deviance_explained"
    ylabel = YLABEL if score == "bits_per_spike" else YLABEL_DEVIANCE
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        figure = Figure(figsize=(6.5, 4), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    if isinstance(table.index, pd.MultiIndex):
        models = list(dict.fromkeys(table.index.get_level_values("model")))
        wide = table[f"cv_{score}"].unstack("unit").reindex(models)
        x = np.arange(len(models))
        for unit in wide.columns:
            ax.plot(x, wide[unit], color="0.6", lw=0.8, alpha=0.7)
        ax.plot([], [], color="0.6", lw=0.8, label="one unit")
        ax.plot(x, wide.mean(axis=1), "o-", color="C0", lw=2, label="mean over units")
        ax.set_ylabel("held-out " + ylabel)
        ax.legend(frameon=False)
    else:
        models = list(table.index)
        x = np.arange(len(models))
        ax.errorbar(x, table[f"cv_{score}"], yerr=table[f"cv_{score}_se"],
                    fmt="o", capsize=4, color="C0", label="held out (mean ± s.e. over folds)")
        ax.plot(x, table[f"train_{score}"], "x", color="C1", label="training")
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False)
    ax.set_xticks(x)
    ax.set_xticklabels(models, rotation=20, ha="right")
    ax.set_xlabel("model")
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_title("Model comparison (cross-validated log-likelihood)")
    return figure
