"""A design laid out columns first (Fortran order, as a group of units' columns is copied for
Newton) is read without a row-major copy: its sums equal the row-major kernel's, Newton
reaches the same answer in the same iterations and passes as on the same design in rows, and
every other solver gets the row-major copy it reads."""

import jax
import numpy as np
import pytest

from glmformula._memory import aligned_zeros
from glmformula.backend import Lasso, Problem, Ridge, newton, solve
from glmformula.backend import problem as pb


def _columns_first(X: np.ndarray) -> np.ndarray:
    """``X`` copied into an aligned array laid out columns first (its transpose C-ordered)."""
    out = aligned_zeros(X.shape[::-1], X.dtype).T
    out[:] = X
    return out


def _data(T: int = 20_011, P: int = 9, U: int = 3, seed: int = 5):
    """Smooth tuning-like columns and units at 0.02-0.3 spikes per bin, some rows weighted
    out (a fold) and a per-unit offset (log bin width and a known gain)."""
    rng = np.random.default_rng(seed)
    angle = np.cumsum(rng.normal(0, 0.05, T))
    centres = np.linspace(0, 2 * np.pi, P, endpoint=False)
    X = np.exp(2.0 * (np.cos(angle[:, None] - centres[None, :]) - 1.0))
    X[:, -1] = np.tanh(np.convolve(rng.normal(0, 1, T + 49), np.ones(50) / 7, mode="valid"))
    W = rng.normal(0, 0.7, (P, U))
    offset = np.log(0.01) + rng.normal(0, 0.1, (T, U))
    Y = rng.poisson(np.exp(X @ W + 2.5 + offset)).astype(float)
    row_weight = (rng.random(T) > 0.2).astype(float)
    return X, Y, offset, row_weight


@pytest.fixture(scope="module")
def data():
    return _data()


def test_columns_first_detects_fortran_aligned_arrays(data):
    X = data[0]
    assert not pb.columns_first(X)
    F = _columns_first(X)
    assert pb.columns_first(F)
    assert not pb.columns_first(np.asfortranarray(X[:, :1]))  # one column: also C-ordered
    # the Problem keeps the caller's aligned array as it is (no row-major copy)
    assert Problem(F, data[1]).X is F


@pytest.mark.parametrize("sums", [pb.MODEL_SUMS, ("loss",), ("hessian",), ("grad", "magnitude")])
def test_column_chunk_sums_equal_the_row_chunk_sums(data, sums):
    X, Y, offset, rw = data
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.3, (X.shape[1], Y.shape[1]))
    b = np.full(Y.shape[1], -2.0)
    with jax.enable_x64(True):
        rows = pb.poisson_model_sums(X, Y, rw, offset, W, b, sums)
        columns = pb.poisson_model_sums_columns(np.ascontiguousarray(X.T), Y, rw, offset, W, b,
                                                sums)
        for name, r, c in zip(sums, rows, columns):
            np.testing.assert_allclose(c, r, rtol=1e-11, atol=1e-9, err_msg=name)
        # float32 Hessian products: close, summed in float64
        if "hessian" in sums:
            low = pb.poisson_model_sums_columns(np.ascontiguousarray(X.T), Y, rw, offset, W, b,
                                                ("hessian",), np.float32)[0]
            assert low.dtype == np.float64
            np.testing.assert_allclose(low, rows[sums.index("hessian")], rtol=1e-4)


def test_fewer_rows_than_one_chunk(data):
    X, Y, offset, rw = (a[:300] for a in data)
    W = np.zeros((X.shape[1], Y.shape[1]))
    b = np.full(Y.shape[1], -1.0)
    with jax.enable_x64(True):
        rows = pb.poisson_model_sums(X, Y, rw, offset, W, b)
        columns = pb.poisson_model_sums_columns(np.ascontiguousarray(X.T), Y, rw, offset, W, b)
    for r, c in zip(rows, columns):
        np.testing.assert_allclose(c, r, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("case", ["offset per unit", "shared offset", "one unit", "penalised",
                                  "information"])
def test_newton_reads_columns_first_to_the_same_answer(data, case):
    X, Y, offset, rw = data
    options = {}
    if case == "shared offset":
        offset = offset[:, 0]
    if case == "one unit":
        Y, offset = Y[:, :1], offset[:, :1]
    if case == "penalised":
        P = X.shape[1]
        D = np.diff(np.eye(P), 2, axis=0)
        options = {"regularizer": Ridge(1e-4)}
        penalty = np.broadcast_to(1e-3 * D.T @ D, (Y.shape[1], P, P)).copy()
    else:
        penalty = None
    if case == "information":
        options = {"information": True}

    def fit(design):
        user = design.copy(order="K")
        out = solve(Problem(design, Y, offset=offset, row_weight=rw, penalty_matrix=penalty),
                    solver="newton", tol=1e-11, **options)
        np.testing.assert_array_equal(design, user)  # nothing the caller passed is modified
        return out

    # the row-major loop stores the linear predictor, this one forms it: the same steps to
    # rounding, so both stop at the same optimum (to well within the tolerance asked)
    rows, columns = fit(X), fit(_columns_first(X))
    np.testing.assert_allclose(columns.weights, rows.weights, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(columns.intercept, rows.intercept, rtol=1e-9, atol=1e-10)
    assert np.abs(columns.n_iter - rows.n_iter).max() <= 1
    assert columns.converged.all()
    assert abs(columns.n_hessian_passes - rows.n_hessian_passes) <= 1
    if case == "information":
        for c, r in zip(columns.information, rows.information):
            np.testing.assert_allclose(c, r, rtol=1e-10)


def test_newton_never_makes_the_row_major_copy(data, monkeypatch):
    """The columns-first design reaches Newton's loop as the block's only copy."""
    X, Y, offset, rw = data
    seen = []
    real = newton.second_order_loop

    def recorded(fit_data, *args, **static):
        seen.append((fit_data.block.X is None, fit_data.block.Xt.shape, static["formed"]))
        return real(fit_data, *args, **static)

    monkeypatch.setattr(newton, "second_order_loop", recorded)
    monkeypatch.setattr(pb, "_COMPILED", {})
    solve(Problem(_columns_first(X), Y, offset=offset, row_weight=rw), solver="newton")
    assert seen == [(True, X.shape[::-1], True)]


@pytest.mark.parametrize("solver, options", [
    ("lbfgs", {}), ("proximal", {"regularizer": Lasso(1e-4)}), ("newton", {"family": "gamma"})])
def test_other_solvers_read_a_row_major_copy(data, solver, options):
    X, Y, offset, rw = data
    if options.get("family") == "gamma":
        Y = Y + 0.5
    rows = solve(Problem(X, Y, offset=offset, row_weight=rw), solver=solver, **options)
    columns = solve(Problem(_columns_first(X), Y, offset=offset, row_weight=rw), solver=solver,
                    **options)
    np.testing.assert_allclose(columns.weights, rows.weights, rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(columns.n_iter, rows.n_iter)


def test_sampled_curvature_is_not_read_columns_first():
    assert newton.reads_columns_first(newton.Newton())
    assert newton.reads_columns_first(newton.Newton(lazy=False))
    assert not newton.reads_columns_first(newton.Newton(lazy=False, sampled_curvature=True))
