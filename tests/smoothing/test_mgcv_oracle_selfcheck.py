"""The mgcv oracle (mgcv_oracle.py) itself: its unit conversion, posterior covariance, edf and
REML criterion against a penalised Poisson fit done here with scipy, and its REML and cyclic
smooth fits on simulated tuning curves. Skips where ``Rscript`` with mgcv is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import BSpline
from scipy.optimize import minimize
from scipy.special import gammaln

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # importlib mode: no sibling imports otherwise

from mgcv_oracle import fit_paraPen, fit_smooth_cc, requires_mgcv  # noqa: E402

pytestmark = requires_mgcv

K = 20  # periodic basis functions before the sum-to-zero constraint


# --------------------------------------------------------------------------- helpers


def cyclic_basis(x, k):
    """Periodic cubic B-splines on ``k`` evenly spaced knots over [0, 2 pi) (rows sum to 1)."""
    h = 2 * np.pi / k
    bump = BSpline.basis_element(np.arange(5.0), extrapolate=False)  # support [0, 4) knots
    return np.column_stack([np.nan_to_num(bump(np.mod(x - j * h, 2 * np.pi) / h))
                            for j in range(k)])


def cyclic_penalty(k):
    """Second differences wrapping around, ``D' D`` (null space: the constant)."""
    D = np.zeros((k, k))
    for j in range(k):
        D[j, [j, (j + 1) % k, (j + 2) % k]] = [1.0, -2.0, 1.0]
    return D.T @ D


def constrained_tuning(x, k=K):
    """The basis under the sum-to-zero constraint (mgcv's QR construction), so that ``[1, X]``
    has full rank, and its penalty ``Z' S Z``."""
    B = cyclic_basis(x, k)
    Z = np.linalg.qr(B.sum(axis=0)[:, None], mode="complete")[0][:, 1:]
    return B @ Z, Z.T @ cyclic_penalty(k) @ Z


def full_penalty(p, penalties, strengths):
    """``sum_j s_j S_j`` on ``[intercept, X]`` (zero on the intercept)."""
    S = np.zeros((p + 1, p + 1))
    for (columns, block), s in zip(penalties, strengths, strict=True):
        index = 1 + np.arange(p)[columns]
        S[np.ix_(index, index)] += s * block
    return S


def penalised_fit(X, y, penalties, strengths):
    """Minimise our objective ``mean NLL + 0.5 sum_j s_j w' S_j w`` (exact gradient and
    Hessian, trust-region Newton); returns the coefficients (intercept first) and Hessian."""
    n, p = X.shape
    X1 = np.column_stack([np.ones(n), X])
    S = full_penalty(p, penalties, strengths)

    def objective(b):
        eta = X1 @ b
        return np.mean(np.exp(eta) - y * eta) + 0.5 * b @ S @ b

    gradient = lambda b: X1.T @ (np.exp(X1 @ b) - y) / n + S @ b
    hessian = lambda b: (X1.T * np.exp(X1 @ b)) @ X1 / n + S
    start = np.zeros(p + 1)
    start[0] = np.log(y.mean())
    res = minimize(objective, start, jac=gradient, hess=hessian, method="trust-exact",
                   options={"gtol": 1e-13})
    assert np.abs(gradient(res.x)).max() < 1e-10, res.message
    return res.x, hessian(res.x)


def laplace_reml(X, y, penalties, sp):
    """mgcv's REML criterion for a known scale (the mgcv_oracle docstring's formula), at the
    penalised fit for smoothing parameters ``sp`` in mgcv's units."""
    n, p = X.shape
    b, _ = penalised_fit(X, y, penalties, np.asarray(sp) / n)
    X1 = np.column_stack([np.ones(n), X])
    mu = np.exp(X1 @ b)
    S = full_penalty(p, penalties, sp)
    eigenvalues = np.linalg.eigvalsh(S)
    positive = eigenvalues[eigenvalues > eigenvalues.max() * 1e-10]
    loglik = np.sum(y * np.log(mu) - mu - gammaln(y + 1))
    return (-loglik + 0.5 * b @ S @ b + 0.5 * np.linalg.slogdet((X1.T * mu) @ X1 + S)[1]
            - 0.5 * np.log(positive).sum() - 0.5 * (p + 1 - len(positive)) * np.log(2 * np.pi))


@pytest.fixture(scope="module")
def two_blocks():
    """A cyclic tuning block (19 columns, second-difference penalty) and four linear
    covariates with a ridge penalty: two smoothing parameters."""
    rng = np.random.default_rng(0)
    n = 5000
    x = rng.uniform(0, 2 * np.pi, n)
    tuning, S_tuning = constrained_tuning(x)
    G = rng.normal(size=(n, 4))
    X = np.column_stack([tuning, G])
    y = rng.poisson(np.exp(-1 + 1.5 * np.cos(x - 1) + G @ [0.3, -0.2, 0.1, 0.0])).astype(float)
    penalties = [(slice(0, K - 1), S_tuning), (slice(K - 1, K + 3), np.eye(4))]
    return X, y, penalties


# --------------------------------------------------------------------------- tests


def test_fixed_sp_equals_our_objective_with_sp_over_n(two_blocks):
    """(a) mgcv with fixed sp = our fit with strengths s_j = sp_j / n, to 1e-6 relative; Vp is
    the inverse of n times our Hessian; edf is the trace of the hat matrix per block."""
    X, y, penalties = two_blocks
    n = len(y)
    sp = np.array([30.0, 200.0])
    mgcv = fit_paraPen(X, y, penalties, sp=sp, control={"epsilon": 1e-13})
    np.testing.assert_allclose(mgcv.sp, sp, rtol=1e-12)  # exp(log(sp)) inside mgcv
    np.testing.assert_allclose(mgcv.strength, sp / n, rtol=1e-12)
    ours, hessian = penalised_fit(X, y, penalties, sp / n)
    scale = np.abs(mgcv.coefficients).max()
    np.testing.assert_allclose(ours, mgcv.coefficients, rtol=1e-6, atol=1e-6 * scale)
    # The check can tell conversions apart: a factor 2 either way moves the coefficients.
    for wrong in (sp / (2 * n), 2 * sp / n):
        assert np.abs(penalised_fit(X, y, penalties, wrong)[0] - mgcv.coefficients).max() \
            > 1e-3 * scale
    np.testing.assert_allclose(mgcv.Vp, np.linalg.inv(n * hessian), rtol=1e-6,
                               atol=1e-6 * np.abs(mgcv.Vp).max())
    X1 = np.column_stack([np.ones(n), X])
    information = (X1.T * np.exp(X1 @ ours)) @ X1
    influence = np.diag(np.linalg.solve(n * hessian, information))
    np.testing.assert_allclose(mgcv.edf_coef, influence, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mgcv.edf, [influence[1:K].sum(), influence[K:].sum()],
                               rtol=1e-6)
    assert mgcv.edf_total == pytest.approx(influence.sum(), rel=1e-6)
    assert mgcv.converged and mgcv.outer == "" and not mgcv.warnings


def test_reml_criterion_is_the_laplace_formula(two_blocks):
    """mgcv's ``gcv.ubre`` at fixed sp equals the criterion written in the oracle's docstring
    (so a REML implementation can be checked value for value, not only at its optimum)."""
    X, y, penalties = two_blocks
    sp = np.array([30.0, 200.0])
    mgcv = fit_paraPen(X, y, penalties, sp=sp, control={"epsilon": 1e-13})
    assert mgcv.reml == pytest.approx(laplace_reml(X, y, penalties, sp), rel=1e-9)


def test_reml_selects_a_finite_minimum_on_cyclic_tuning():
    """(b) A von Mises tuning curve on a 20-function periodic basis: REML returns a finite sp,
    block edf between 1 and 19 (total between 2 and 20), and the criterion there is a minimum
    in log sp."""
    rng = np.random.default_rng(1)
    n = 20000
    x = rng.uniform(0, 2 * np.pi, n)
    X, S = constrained_tuning(x)
    y = rng.poisson(np.exp(-2 + 2.0 * np.cos(x - 2.5))).astype(float)
    penalties = [(slice(None), S)]
    mgcv = fit_paraPen(X, y, penalties)
    assert mgcv.outer == "full convergence" and mgcv.converged
    assert np.isfinite(mgcv.sp).all() and (mgcv.sp > 0).all()
    assert 1 < mgcv.edf[0] < K - 1 and 2 < mgcv.edf_total < K
    at_optimum = laplace_reml(X, y, penalties, mgcv.sp)
    assert mgcv.reml == pytest.approx(at_optimum, rel=1e-9)
    for step in (-0.3, 0.3):
        assert laplace_reml(X, y, penalties, mgcv.sp * np.exp(step)) > at_optimum


@pytest.mark.parametrize("engine", ["gam", "bam"])
def test_cyclic_smooth_recovers_tuning_and_predicts(engine):
    """mgcv's own s(x, bs="cc") (gam REML and bam discrete fREML), two response columns at
    once: finite sp, edf within the basis, and predictions at new angles near the true rate."""
    rng = np.random.default_rng(2)
    n = 20000
    x = rng.uniform(-np.pi, np.pi, n)
    prefs = np.array([0.5, -2.0])
    rate = lambda angle: np.exp(-1.5 + 1.5 * np.cos(angle[:, None] - prefs))
    y = rng.poisson(rate(x)).astype(float)
    x_new = np.linspace(-np.pi, np.pi, 50)
    fit = fit_smooth_cc(x, y, K, x_new=x_new, engine=engine)
    assert fit.errors == ("", "") and fit.converged.all()
    assert np.isfinite(fit.sp).all() and (fit.sp > 0).all()
    assert ((fit.edf > 1) & (fit.edf < K - 2)).all()
    np.testing.assert_allclose(fit.edf_total, fit.edf + 1)
    assert fit.coefficients.shape == (K - 1, 2) and fit.predictions.shape == (50, 2)
    assert (fit.seconds > 0).all()
    np.testing.assert_allclose(fit.predictions, rate(x_new), rtol=0.15)


def test_gam_and_bam_agree_given_the_same_knots():
    """With knots given only at the ends, gam places the interior ones at quantiles of x while
    bam(discrete=TRUE) places them nearly evenly (it works on discretised values): different
    bases where the angle's occupancy is uneven. With ``even_knots`` both fit the same model
    and agree (sp read on the unscaled penalty, ``sp_raw``, so that mgcv's rescaling of the
    penalty by a model-matrix norm does not enter)."""
    rng = np.random.default_rng(3)
    n = 20000
    x = np.mod(rng.vonmises(1.0, 1.0, n) + np.pi, 2 * np.pi) - np.pi  # uneven occupancy
    y = rng.poisson(np.exp(-1.5 + 1.5 * np.cos(x[:, None] - np.array([0.5, -2.0])))).astype(float)
    x_new = np.linspace(-np.pi, np.pi, 50)
    gam = fit_smooth_cc(x, y, K, x_new=x_new, even_knots=True)
    bam = fit_smooth_cc(x, y, K, x_new=x_new, even_knots=True, engine="bam")
    np.testing.assert_allclose(gam.knots[:, 0], np.linspace(-np.pi, np.pi, K))
    np.testing.assert_array_equal(gam.knots, bam.knots)
    np.testing.assert_allclose(gam.sp_raw, bam.sp_raw, rtol=0.05)
    np.testing.assert_allclose(gam.edf, bam.edf, rtol=0.01)
    np.testing.assert_allclose(gam.predictions, bam.predictions, rtol=0.01)
    quantile = fit_smooth_cc(x, y[:, :1], K)  # gam's default placement: quantiles of x
    assert np.abs(quantile.knots[:, 0] - gam.knots[:, 0]).max() > 0.5
