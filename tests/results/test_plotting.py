"""Figures: one panel per unit with bands, maps as images, the coupling heat map; no pyplot."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")


def _no_pyplot_figures():
    import matplotlib.pyplot as plt
    return plt.get_fignums() == []


def test_tuning_curves_one_panel_per_unit_with_bands(hd_fit, tmp_path):
    figure = hd_fit.plot("head_direction")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == len(hd_fit.unit_ids)
    ax = visible[3]
    assert ax.get_title() == f"unit {hd_fit.unit_ids[3]}"
    line = ax.get_lines()[0]
    curve = hd_fit.curve("head_direction")
    assert np.allclose(line.get_ydata(), curve[(hd_fit.unit_ids[3], "estimate")])
    assert len(ax.collections) == 1  # the band
    figure.savefig(tmp_path / "tuning.png")
    assert (tmp_path / "tuning.png").stat().st_size > 10_000
    assert _no_pyplot_figures()


def test_filters_against_lag_and_one_unit(hd_fit):
    figure = hd_fit.plot("history", unit=[0, 1], scale="log")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 2 and visible[0].get_xlabel() == "lag (s)"
    coupling = hd_fit.plot("coupling", unit=2)
    ax = [a for a in coupling.axes if a.get_visible()][0]
    assert len(ax.get_lines()) >= len(hd_fit.unit_ids) - 1  # one filter per source


def test_coupling_heat_map(hd_fit, tmp_path):
    figure = hd_fit.plot_coupling()
    image = figure.axes[0].get_images()[0]
    data = np.ma.filled(image.get_array().astype(float), np.nan)
    assert np.allclose(data, hd_fit.coupling_matrix().to_numpy(), equal_nan=True)
    low, high = image.get_clim()
    assert low == -high  # centred on 0
    figure.savefig(tmp_path / "coupling.png")
    assert _no_pyplot_figures()


def test_map_is_an_image(place_fit):
    _, res = place_fit
    figure = res.plot("rcos(x, 5):rcos(y, 5)", n_points=20)
    images = [ax.get_images()[0] for ax in figure.axes if ax.get_images()]
    assert len(images) == 3 and images[0].get_array().shape == (20, 20)
    curve = res.curve("rcos(x, 5):rcos(y, 5)", n_points=20)
    # image rows are y, columns x
    assert np.allclose(images[1].get_array(), curve[(1, "estimate")].to_numpy().reshape(20, 20).T)
