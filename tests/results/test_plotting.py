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


# -- axes that say what they show (issue 18) ------------------------------------------------------
def _panels(figure):
    return [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_axis_labels_have_units_and_panels_name_the_units(hd_fit):
    figure = hd_fit.plot("head_direction")
    panels = _panels(figure)
    assert [ax.get_title() for ax in panels] == [f"unit {u}" for u in hd_fit.unit_ids]
    assert {ax.get_xlabel() for ax in panels} == {"head_direction (rad)"}
    assert {ax.get_ylabel() for ax in panels} == {"gain (× rate)"}
    assert "cyclic(head_direction, 8)" in figure.get_suptitle()
    log = _panels(hd_fit.plot("head_direction", scale="log", unit=0))[0]
    assert log.get_ylabel() == "log-rate change"
    history = _panels(hd_fit.plot("history", unit=0))[0]
    assert history.get_xlabel() == "lag (s)" and history.get_ylabel() == "gain (× rate)"


def test_coupling_panels_one_colour_per_source_across_panels(hd_fit):
    from matplotlib.colors import to_rgba
    figure = hd_fit.plot("coupling", unit=[0, 1, 2, 3])
    panels = _panels(figure)
    assert [ax.get_title() for ax in panels] == [f"unit {u} (target)" for u in range(4)]
    assert all(ax.get_ylabel() == "gain (× rate)" and ax.get_xlabel() == "lag (s)"
               for ax in panels)
    colour_of: dict = {}
    for ax in panels:
        for line in ax.get_lines():
            if line.get_label().startswith("from unit"):
                colour = to_rgba(line.get_color())
                assert colour_of.setdefault(line.get_label(), colour) == colour, line.get_label()
    assert len(colour_of) == len(hd_fit.unit_ids)            # every source appears somewhere
    assert len(set(colour_of.values())) == len(colour_of)     # and has its own colour
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [f"from unit {u}"
                                                          for u in hd_fit.unit_ids]


def test_coupling_matrix_diagonal_is_drawn_apart_from_zero(hd_fit):
    from matplotlib.colors import to_rgba
    figure = hd_fit.plot_coupling()
    ax = figure.axes[0]
    image = ax.get_images()[0]
    array = image.get_array()
    n = len(hd_fit.unit_ids)
    assert np.all(np.ma.getmaskarray(array)[np.arange(n), np.arange(n)])
    assert not np.ma.getmaskarray(array)[~np.eye(n, dtype=bool)].any()
    bad, zero = to_rgba(image.cmap.get_bad()), image.cmap(image.norm(0.0))
    assert np.abs(np.subtract(bad, zero)).max() > 0.1     # not the colour of a coupling of 0
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == n
    assert "grey hatched" in ax.get_xlabel() and "source unit" in ax.get_xlabel()
    assert "target unit" in ax.get_ylabel()


def _l_shaped_track(seed=0, duration=200.0):
    """An animal that never enters the top-right quarter of a 100 x 100 cm box."""
    import pynapple as nap
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration, 0.02)
    x = 50 + 49.5 * np.sin(2 * np.pi * 0.0731 * t)           # a Lissajous path over the box,
    y = 50 + 49.5 * np.sin(2 * np.pi * 0.1173 * t + 1.0)     # with its top-right quarter
    y = np.where((x > 55) & (y > 55), 110 - y, y)            # folded down
    rate = 4 * np.exp(-((x - 30) ** 2 + (y - 30) ** 2) / 400)
    counts = rng.poisson(rate * 0.02)
    spikes = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(0, 0.02, counts.sum())))
    support = nap.IntervalSet(0.0, duration)
    return {"spikes": nap.TsGroup({7: spikes}, time_support=support),
            "x": nap.Tsd(t=t, d=x, time_support=support),
            "y": nap.Tsd(t=t, d=y, time_support=support)}


def test_map_masks_where_the_animal_never_went(tmp_path):
    import warnings

    import glmformula as gf
    from glmformula.results.plotting import plot_curve
    data = _l_shaped_track()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ rcos(x, 4):rcos(y, 4)", data, bin_size="20ms",
                     regularizer=gf.Ridge(1e-3))
    figure = plot_curve(res, "rcos(x, 4):rcos(y, 4)", n_points=40, data=data)
    ax = _panels(figure)[0]
    assert ax.get_title() == "unit 7" and (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    image = ax.get_images()[0]
    mask = np.ma.getmaskarray(image.get_array())           # rows y, columns x
    grid = res.curve("rcos(x, 4):rcos(y, 4)", n_points=40).index
    xs, ys = grid.levels[0].to_numpy(float), grid.levels[1].to_numpy(float)
    top_right = np.ix_(ys > 66, xs > 66)  # the quarter, less one occupancy cell
    bottom_left = np.ix_(ys < 50, xs < 50)
    assert mask[top_right].all() and not mask[bottom_left].any()
    assert "never visited" in figure.get_suptitle()
    unmasked = _panels(res.plot("rcos(x, 4):rcos(y, 4)", n_points=40))[0].get_images()[0]
    assert not np.ma.getmaskarray(unmasked.get_array()).any()   # no data: nothing masked
    figure.savefig(tmp_path / "map.png")
    assert _no_pyplot_figures()


def test_rate_scale_is_labelled_in_hz(tmp_path):
    import warnings

    import glmformula as gf
    from glmformula.results.plotting import plot_curve
    data = _l_shaped_track()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ bspline(x, 5) + bspline(y, 5)", data, bin_size="20ms")
    figure = plot_curve(res, "x", scale="rate", data=data)
    ax = _panels(figure)[0]
    assert ax.get_ylabel() == "rate (Hz)" and ax.get_xlabel() == "x"
    assert "rate (Hz)" in figure.get_suptitle()


def test_comparison_figure_has_labelled_axes():
    import pandas as pd

    from glmformula.compare.plotting import plot_comparison
    table = pd.DataFrame({"cv_bits_per_spike": [-0.1, 0.5], "cv_bits_per_spike_se": [0.05, 0.04],
                          "train_bits_per_spike": [0.0, 0.6]},
                         index=pd.Index(["null", "hd"], name="model"))
    figure = plot_comparison(table)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "model" and "bits / spike" in ax.get_ylabel()
    assert _no_pyplot_figures()
