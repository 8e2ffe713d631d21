"""REML's host algebra works block by block on block-diagonal penalties: the same traces,
inverses and log-determinants as the dense matrices, and the same criterion derivatives as
finite differences of the criterion."""

import numpy as np
import pytest

from glmformula.backend import reml


def _second_differences(n: int) -> np.ndarray:
    D = np.diff(np.eye(n), 2, axis=0)
    return D.T @ D


def _penalties(U: int = 3, seed: int = 0):
    """Penalties shaped like a real model's: a smooth term (columns 0-5), a history filter
    (6-9), a coupling term with one strength over two source filters (10-13, 14-17), a
    tensor product's two margins over the same columns (18-23) plus a penalty on part of them
    (18-20), unpenalised columns (24, 25) and the intercept (26); one unit does not read
    columns 14-17. The last penalty is on one of the two source filters, a different one
    per unit (as each unit's own history filter in a bank of all sources')."""
    rng = np.random.default_rng(seed)
    p = 27
    blocks = [[(range(0, 6),)], [(range(6, 10),)], [(range(10, 14),), (range(14, 18),)],
              [(range(18, 24),)], [(range(18, 24),)], [(range(18, 21),)],
              [(range(10, 14),), (range(14, 18),)]]
    M = len(blocks)
    S = np.zeros((M, U, p, p))
    for m, parts in enumerate(blocks):
        for j, (cols,) in enumerate(parts):
            idx = np.array(cols)
            for u in range(U):
                if m == M - 1 and j != u % 2:  # the unit's own filter only
                    continue
                R = rng.standard_normal((len(idx), len(idx))) * 0.1
                S[m, u][np.ix_(idx, idx)] = _second_differences(len(idx)) + R @ R.T * (m >= 3)
    mask = np.ones((p, U))
    mask[14:18, 1] = 0
    keep = mask.T
    S = S * keep[None, :, :, None] * keep[None, :, None, :]
    fixed = np.zeros((U, p, p))
    host = reml.HostPenalties(S, fixed, *reml.penalty_basis(S, fixed, mask), mask)
    lam = np.exp(rng.uniform(-2, 3, (M, U)))
    X = rng.standard_normal((400, p))
    H = np.einsum("tp,tq,u->upq", X, X, rng.uniform(0.5, 2, U)) / 10
    H = H * keep[:, :, None] * keep[:, None, :]  # as REML's models: unused coordinates zero
    A = H + host.total(lam)
    idx = np.arange(p)
    A[:, idx, idx] += 1.0 - mask.T
    return host, lam, A, H, rng


def test_block_traces_inverses_and_log_determinants_equal_the_dense_ones():
    host, lam, A, _, _ = _penalties()
    Ainv = np.linalg.inv(A)
    dense = np.einsum("upq,muqr,urs,nusp->mnu", Ainv, host.S, Ainv, host.S)
    np.testing.assert_allclose(reml._pair_traces(Ainv, host.penalty_blocks), dense,
                               rtol=1e-10, atol=1e-12 * np.abs(dense).max())
    inverse, logdet = reml._inverse_and_logdet(A)
    np.testing.assert_allclose(inverse, Ainv, rtol=1e-9, atol=1e-12 * np.abs(Ainv).max())
    np.testing.assert_allclose(logdet, np.linalg.slogdet(A)[1], rtol=1e-12)
    # log|S|_+ and its derivatives from the diagonal blocks equal those of the dense E'S(lam)E
    # (its null-space directions set to the identity)
    E, null = host.basis, host.null
    rotated = np.einsum("uqp,muqr,urs->mups", E, host.S, E)
    B = np.einsum("mu,mupq->upq", lam, rotated) * (1 - null)[:, :, None] * (1 - null)[:, None, :]
    B[:, np.arange(B.shape[-1]), np.arange(B.shape[-1])] += null
    Binv = np.linalg.inv(B)
    sign, logdet_B = np.linalg.slogdet(B)
    assert np.all(sign > 0)
    got_logdet, traces, pairs = host.penalty_log_det(lam, derivatives=True)
    np.testing.assert_allclose(got_logdet, logdet_B, rtol=1e-12)
    np.testing.assert_allclose(host.penalty_log_det(lam), logdet_B, rtol=1e-12)
    np.testing.assert_allclose(traces, np.einsum("upq,muqp->mu", Binv, rotated), rtol=1e-9,
                               atol=1e-12)
    dense_B = np.einsum("upq,muqr,urs,nusp->mnu", Binv, rotated, Binv, rotated)
    np.testing.assert_allclose(pairs, dense_B, rtol=1e-9, atol=1e-12 * np.abs(dense_B).max())
    # the partial penalty (columns 18-20) is its own block of 3 within the tensor's 6 columns
    assert [idx.shape for idx in host.blocks.of_penalties[5]] == [(1, 3)]
    assert [idx.shape for idx in host.blocks.of_penalties[2]] == [(2, 4)]
    # S(lam), S_m b and tr(A^-1 S_m) from the penalties' blocks equal the dense ones
    b = np.random.default_rng(5).standard_normal((A.shape[0], A.shape[-1]))
    dense_total = np.einsum("mu,mupq->upq", lam, host.S) + host.fixed
    np.testing.assert_allclose(host.total(lam), dense_total, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(host.times(b), np.einsum("mupq,uq->mup", host.S, b),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host.traces(Ainv), np.einsum("upq,mupq->mu", Ainv, host.S),
                               rtol=1e-12, atol=1e-12)
    # a subset of units and a scaled problem keep their blocks consistent
    units = np.array([2, 0])
    sub = host.subset(units)
    np.testing.assert_allclose(sub.penalty_log_det(lam[:, units]), logdet_B[units],
                               rtol=1e-12)
    np.testing.assert_allclose(sub.total(lam[:, units]), dense_total[units], rtol=1e-14,
                               atol=1e-14)
    np.testing.assert_allclose(sub.traces(Ainv[units]), host.traces(Ainv)[:, units],
                               rtol=1e-14)
    np.testing.assert_allclose(reml._pair_traces(Ainv[units], sub.penalty_blocks),
                               dense[:, :, units], rtol=1e-10,
                               atol=1e-12 * np.abs(dense).max())


def test_criterion_derivatives_match_finite_differences():
    """The gradient and Hessian that the host's Newton iteration on log-strengths uses equal
    central differences of the quadratic model's criterion (fixed H)."""
    host, lam, _, H, rng = _penalties(seed=1)
    p, U = H.shape[-1], H.shape[0]
    beta = rng.standard_normal((p, U)) * 0.3 * host.mask
    g = rng.standard_normal((p, U)) * host.mask
    model = reml._QuadraticModel(rng.uniform(50, 60, U), g, H, beta)
    rho = np.log(lam)

    def V(r):
        return model.criterion(host, np.exp(r))[0]

    _, A, b, Ainv = model.criterion(host, lam)
    np.testing.assert_allclose(Ainv, np.linalg.inv(A), rtol=1e-8, atol=1e-12)
    grad, hess, _, _ = reml.derivatives(host, None, lam, b.T, A, exact=False, inverse=Ainv)
    h = 1e-4
    for m in range(rho.shape[0]):
        e = np.zeros_like(rho)
        e[m] = h
        np.testing.assert_allclose(grad[m], (V(rho + e) - V(rho - e)) / (2 * h), rtol=1e-5,
                                   atol=1e-7)
        for n in range(rho.shape[0]):
            f = np.zeros_like(rho)
            f[n] = h
            second = (V(rho + e + f) - V(rho + e - f) - V(rho - e + f) + V(rho - e - f)) \
                / (4 * h * h)
            assert hess[m, n] == pytest.approx(second, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("p", [12, reml.CHOLESKY_FROM + 5])
def test_symmetric_inverse_by_cholesky_and_by_lu(p):
    """``A^-1`` of symmetric matrices (Cholesky from CHOLESKY_FROM coefficients, LU below and
    for a matrix that is not positive definite) equals numpy's inverse, exactly symmetric."""
    rng = np.random.default_rng(7)
    B = rng.normal(size=(3, p, 2 * p))
    A = B @ np.swapaxes(B, 1, 2) / p + np.eye(p)
    A[1] = -A[1]  # negative definite
    inverse = reml._symmetric_inverse(A)
    np.testing.assert_allclose(inverse, np.linalg.inv(A), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(inverse, np.swapaxes(inverse, 1, 2))
    # the same inverse with log|A| from one factorisation (inf where |A| is not positive)
    inverse, logdet = reml._inverse_and_logdet(A)
    np.testing.assert_allclose(inverse, np.linalg.inv(A), rtol=1e-10, atol=1e-12)
    sign, expected = np.linalg.slogdet(A)
    np.testing.assert_allclose(logdet, np.where(sign > 0, expected, np.inf), rtol=1e-12)


def test_column_statistics_match_their_definition():
    """Columns seen on rows of positive weight and their weighted sums of squares, including
    a column non-zero only where the weight is 0 and one whose squares underflow."""
    from glmformula.fitting.smoothing import _column_statistics

    rng = np.random.default_rng(3)
    X = rng.standard_normal((10_000, 6))
    X[rng.random(X.shape) < 0.7] = 0.0
    weight = rng.random(10_000) * (rng.random(10_000) > 0.2)
    X[:, 2] = 0.0
    X[weight == 0, 3] = 1.0
    X[weight > 0, 3] = 0.0  # only on rows of weight 0
    X[:, 4] = 0.0
    X[np.flatnonzero(weight > 0)[7], 4] = 1e-170  # its square underflows
    seen, squares = _column_statistics(X, weight, chunk=999)
    positive = weight > 0
    np.testing.assert_array_equal(seen, ((X != 0) & positive[:, None]).any(axis=0))
    np.testing.assert_allclose(squares, weight @ X ** 2, rtol=1e-12)
    assert list(seen) == [True, True, False, False, True, True]
