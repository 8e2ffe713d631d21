"""res.curve(): tuning curves, maps, gain curves and filters, with delta-method bands.

What is compared with the truth: a term that spans the constant (cyclic, bspline) is
constrained to average zero over the training rows, so its curve on the log scale estimates the
true effect minus the true effect's mean over the training rows; that centred truth is what the
bands must cover.
"""

from __future__ import annotations

import numpy as np
import pytest

import glmformula as gf
from glmformula.bases import bspline, cyclic_bspline
from glmformula.graph import nodes
from glmformula.results.evaluation import GridGraph, evaluate_columns, term_factor_nodes


@pytest.fixture(scope="module")
def lnp(make_lnp):
    data, truth = make_lnp(seed=11)
    # unpenalised: these tests check the delta-method bands of the maximum-likelihood fit at
    # their nominal rate (the Bayesian bands of smoothing="auto": tests/smoothing/)
    res = gf.fit("counts ~ cyclic(angle, 8) + bspline(speed, 5)", data, bin_size=0.02,
                 smoothing=None)
    return data, truth, res


def test_bands_cover_the_centred_truth_at_the_nominal_rate(lnp):
    """40 independent units x 2 terms x 25 grid points: 95% bands cover the centred truth
    between 85% and 100% of the time, and the standardised errors have unit spread (so bands
    that are too wide fail as well as bands that are too narrow)."""
    data, truth, res = lnp
    angle, speed = data["angle"].values, data["speed"].values
    checks = [("cyclic(angle, 8)", lambda x: cyclic_bspline(x, 8), truth["angle_weights"], angle),
              ("bspline(speed, 5)", lambda x: bspline(x, 5, bounds=truth["speed_bounds"]),
               truth["speed_weights"], speed)]
    covered, z = [], []
    for term, basis, weights, trained_on in checks:
        curve = res.curve(term, n_points=25, scale="log")
        grid = curve.index.to_numpy(float)
        true_curve = basis(grid) @ weights
        true_centred = true_curve - (basis(trained_on) @ weights).mean(axis=0)
        for u in res.unit_ids:
            est, lo, hi = (curve[(u, s)].to_numpy() for s in ("estimate", "lower", "upper"))
            target = true_centred[:, u]
            covered.append((lo <= target) & (target <= hi))
            z.append((est - target) / ((hi - lo) / (2 * 1.959963984540054)))
    coverage = np.mean(np.concatenate(covered))
    spread = np.std(np.concatenate(z))
    print(f"coverage of 95% bands: {coverage:.3f}; sd of standardised errors: {spread:.3f}")
    assert 0.85 <= coverage <= 1.0
    assert 0.8 < spread < 1.25


def test_curves_of_constrained_terms_average_zero_over_the_training_rows(lnp):
    data, _, res = lnp
    X = gf.design_matrix("counts ~ cyclic(angle, 8)", data, bin_size=0.02)
    block = X.term_slices["cyclic(angle, 8)"]
    effect = X.to_numpy(intercept=False)[:, block] @ res.coef[3].xs("cyclic(angle, 8)").values
    assert abs(effect.mean()) < 1e-8


def test_gain_curve_holds_the_scalar_at_one(lnp):
    data, _, _ = lnp
    two = dict(data, counts=data["counts"][:, :2])
    res = gf.fit("counts ~ cyclic(angle, 6) + cyclic(angle, 6):speed", two, bin_size=0.02)
    curve = res.curve("cyclic(angle, 6):speed", n_points=12, scale="log")
    assert curve.index.name == "angle"
    grid = curve.index.to_numpy(float)
    assert np.allclose(grid, np.linspace(0, 2 * np.pi, 12, endpoint=False))
    w = res.coef[1].xs("cyclic(angle, 6):speed").values
    assert np.allclose(curve[(1, "estimate")], cyclic_bspline(grid, 6) @ w, atol=1e-12)
    gain = res.curve("cyclic(angle, 6):speed", n_points=12)
    assert np.allclose(gain[(1, "estimate")], np.exp(curve[(1, "estimate")]))
    assert np.allclose(gain[(1, "upper")], np.exp(curve[(1, "upper")]))


def test_curve_columns_are_the_design_columns(maze):
    """Rebuilt nodes evaluated on the design's own covariate values, with the training state,
    give exactly the design's columns: curves use the same basis and statistics."""
    formula = ("spikes ~ rcos(position, 5) + center(speed) + bspline(log(speed), 4) "
               "+ onehot(position, 6) + rcos(position, 4):speed")
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run")
    design = res.design(maze, epochs="run")
    values = {name: design.graph.evaluate(nodes.Covariate(name))[design.rows, 0]
              for name in ("position", "speed")}
    grid = GridGraph(values, res.state)
    for term in res.formula.terms:
        columns = evaluate_columns(term_factor_nodes(res, term), set(), grid)
        stored = design.storage[design.rows][:, res.term_storage[term]]
        assert np.allclose(columns, stored, rtol=0, atol=1e-12), term
    # Bare covariates and transforms span the training range of the covariate.
    curve = res.curve("center(speed)", n_points=7, scale="log")
    assert curve.index.name == "speed"
    assert curve.index[0] == pytest.approx(values["speed"].min())
    assert curve.index[-1] == pytest.approx(values["speed"].max())
    # center(speed): the effect is w * (speed - training mean)
    mean = res.state[repr(term_factor_nodes(res, "center(speed)")[0])][0]
    w = res.coef[1].xs("center(speed)").values[0]
    assert np.allclose(curve[(1, "estimate")], w * (curve.index.to_numpy() - mean))


def test_terms_are_addressed_by_text_and_alias(maze):
    res = gf.fit("spikes ~ rcos(position, 5) + speed", maze, bin_size="20ms", epochs="run")
    assert res.curve("position").equals(res.curve("rcos(position, 5)"))
    assert res.curve("rcos(position,5)").equals(res.curve("rcos(position, 5)"))
    curve = res.curve("speed", unit=1)
    assert list(curve.columns) == [(1, "estimate"), (1, "lower"), (1, "upper")]
    with pytest.raises(gf.FormulaError, match="no term"):
        res.curve("history")
    with pytest.raises(gf.FormulaError, match="scale"):
        res.curve("speed", scale="linear")
    with pytest.raises(gf.FormulaError, match="not in this model"):
        res.curve("speed", unit=7)


def test_two_dimensional_map_peaks_at_the_place_field(place_fit):
    data, res = place_fit
    curve = res.curve("rcos(x, 5):rcos(y, 5)", n_points=30)
    assert curve.index.names == ["x", "y"] and len(curve) == 900
    centres = np.asarray(data.truth["centers"])
    for u in res.unit_ids:
        # The lower band peaks where the field is surely high; the estimate alone may peak in
        # a corner the animal hardly visited, where the band is wide.
        x, y = curve[(u, "lower")].idxmax()
        assert np.hypot(x - centres[u, 0], y - centres[u, 1]) < 10.0
        corner = curve[u].loc[(curve.index.levels[0][-1], curve.index.levels[1][0])]
        centre = curve[u].loc[(x, y)]
        assert corner["upper"] / corner["lower"] > centre["upper"] / centre["lower"]


def test_filter_and_history_curves_recover_the_current_injection_truth(injection_fit):
    """The stimulus filter is a density (log-Hz per pA per s): the per-bin weight at lag tau is
    about stimulus_filter(tau) * bin_size. Shapes agree (correlation > 0.9) for both filters."""
    data, res = injection_fit
    truth = data.truth
    stim = res.curve("filter", scale="log")
    assert stim.index.name == "lag (s)"
    lags = stim.index.to_numpy()
    assert np.allclose(lags, 0.002 * np.arange(1, 101))
    expected = truth["stimulus_filter"](lags) * res.bin_size
    r_stim = np.corrcoef(stim[(0, "estimate")], expected)[0, 1]
    hist = res.curve("history", scale="log")
    true_history = truth["history_filter"](hist.index.to_numpy())
    r_hist = np.corrcoef(hist[(0, "estimate")], true_history)[0, 1]
    print(f"stimulus filter r = {r_stim:.3f}, history filter r = {r_hist:.3f}")
    assert r_stim > 0.9 and r_hist > 0.9
    # The curve is the design's kernels times the weights: K w at lag j * bin_size.
    K = nodes.CausalFilter(nodes.Covariate("current"), 10, 100, True).kernels()
    assert np.allclose(stim[(0, "estimate")], K @ res.coef[0].xs(res.resolve_term("filter")).values)
