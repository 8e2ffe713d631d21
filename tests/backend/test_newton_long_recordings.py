"""Lazy Newton on recordings long enough for its row-sampled early Hessians
(``EARLY_CURVATURE_ROWS``) and with spike-history filters whose weights walk far from 0
(the slow, halving phase that the chord-step rule ``CHORD_STEPS`` must not prolong): the
answer is statsmodels' and the same as with every Hessian from all rows."""

import numpy as np
import pytest
import statsmodels.api as sm

from glmformula.backend import Problem, newton, solve


def _history_design(T: int, seed: int):
    """A bursting, refractory cell: counts whose own filtered past (3 lags of 10 ms bins
    summed in windows) drives strong negative and positive weights, plus two covariates."""
    rng = np.random.default_rng(seed)
    angle = np.cumsum(rng.normal(0, 0.05, T))
    cov = np.c_[np.cos(angle), np.sin(angle)]
    y = np.zeros(T)
    past = np.zeros((T, 3))
    windows = [(1, 1), (2, 4), (5, 12)]  # lags of each history column
    true = np.array([-4.0, 0.5, -0.2])
    for t in range(T):
        for j, (a, b) in enumerate(windows):
            past[t, j] = y[max(t - b, 0):max(t - a + 1, 0)].sum()
        eta = -3.0 + 0.8 * cov[t, 0] - 0.3 * cov[t, 1] + past[t] @ true
        y[t] = rng.poisson(np.exp(min(eta, 3.0)))
    return np.c_[cov, past], y


@pytest.fixture(scope="module")
def long_recording():
    return _history_design(60_000, seed=7)


def test_early_stride_only_on_long_recordings():
    assert newton.early_curvature_stride(30_000) == 1
    assert newton.early_curvature_stride(60_000) == 60_000 // newton.EARLY_CURVATURE_ROWS >= 2


def test_matches_statsmodels_with_sampled_early_hessians(long_recording):
    X, y = long_recording
    sol = solve(Problem(X, y), solver="newton")
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-13,
                                                                         maxiter=200)
    assert sol.converged.all() and sol.criterion[0] <= 1e-8
    scale = np.max(np.abs(ref.params[1:]))
    assert np.max(np.abs(sol.weights[:, 0] - ref.params[1:])) < 1e-6 * scale
    assert abs(sol.intercept[0] - ref.params[0]) < 1e-6 * max(1.0, abs(ref.params[0]))
    assert ref.params[3] < -2  # the refractory weight walked far from the start


def test_same_answer_as_hessians_from_all_rows(long_recording, monkeypatch):
    X, y = long_recording
    Y = np.c_[y, np.roll(y, 5000)]  # two units (the second: a shifted copy)
    strides = []  # the row strides the compiled loop samples its Hessians with
    real = newton.sampled_hessian_sum

    def recorded(X_, D, strategy, stride=1, compute=None):
        strides.append(stride)
        return real(X_, D, strategy, stride, compute)

    monkeypatch.setattr(newton, "sampled_hessian_sum", recorded)
    sampled = solve(Problem(X, Y), solver="newton")
    assert strides and set(strides) == {newton.early_curvature_stride(len(y))}  # built
    monkeypatch.setattr(newton, "EARLY_CURVATURE_ROWS", 10**12)
    assert newton.early_curvature_stride(len(y)) == 1
    every_row = solve(Problem(X, Y), solver="newton")
    assert sampled.converged.all() and every_row.converged.all()
    np.testing.assert_allclose(sampled.weights, every_row.weights, rtol=0, atol=1e-7)
    np.testing.assert_allclose(sampled.intercept, every_row.intercept, rtol=0, atol=1e-7)
    # the sampled Hessians only replace early float32 passes: never more passes in all
    assert sampled.n_hessian_passes <= every_row.n_hessian_passes + 1


def test_rank_deficiency_still_reported(long_recording):
    """A sample's singular Hessian asks for nothing; the design's own rank is still found."""
    X, y = long_recording
    X2 = np.c_[X, X[:, 0] + X[:, 1]]  # a column that is the sum of two others
    with pytest.warns(Warning, match="(?i)rank|collinear|identif"):
        sol = solve(Problem(X2, y), solver="newton")
    assert sol.rank_deficient.all()
