"""Cold Newton starts from tuning curves (:mod:`glmformula.fitting.starts`): the start of a
one-hot term is that term's own maximum-likelihood answer, a second term is adjusted for the
first, bases that are not partitions of unity are left at zero, and a fit from the start
reaches the same optimum as from zero weights in fewer Newton iterations (only Newton: L-BFGS
begins as without it)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula import backend
from glmformula.fitting import engine, starts
from glmformula.fitting.identifiability import sum_to_zero_rotation
from glmformula.fitting.information import rows_in_memory
from glmformula.graph.design import build, prepare


def _one_hot(levels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[levels]


def _start(X, counts, offset, used, constraints, storage):
    rows = rows_in_memory(X, counts, offset, np.asarray(used, float))
    return starts.tuning_curve_start(rows, constraints, storage)


def _constraints(X: np.ndarray, storage: dict) -> dict:
    return {text: sum_to_zero_rotation(X[:, block].mean(axis=0)) for text, block in storage.items()}


@pytest.fixture
def no_pseudo_spikes(monkeypatch):
    monkeypatch.setattr(starts, "PSEUDO_SPIKES", 0.0)


def test_a_one_hot_term_starts_at_its_own_maximum_likelihood(no_pseudo_spikes):
    rng = np.random.default_rng(0)
    T, k, U = 5000, 6, 3
    level = rng.integers(0, k, T)
    offset = rng.normal(0.0, 0.3, T)
    counts = rng.poisson(np.exp(rng.normal(-1.0, 1.0, (k, U))[level] + offset[:, None]))
    X = np.hstack([rng.normal(size=(T, 2)), _one_hot(level, k)])  # a first term not a basis
    storage = {"x": slice(0, 2), "onehot(level)": slice(2, 2 + k)}
    used = rng.random(T) < 0.8
    W, b = _start(X, counts, offset, used, _constraints(X, storage), storage)
    rate = np.exp(b + W[2:])  # (k, U) per exposure
    for j in range(k):
        rows = used & (level == j)
        np.testing.assert_allclose(rate[j] * np.exp(offset[rows]).sum(),
                                   counts[rows].sum(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(W[:2], 0.0)
    # centred as the constraint parametrises the term: its contribution averages zero
    np.testing.assert_allclose(X[used, 2:].mean(axis=0) @ W[2:], 0.0, atol=1e-12)


def test_a_second_term_is_adjusted_for_the_first(no_pseudo_spikes):
    rng = np.random.default_rng(1)
    T = 20000
    a = rng.integers(0, 4, T)
    b = np.where(rng.random(T) < 0.7, a % 3, rng.integers(0, 3, T))  # correlated with a
    counts = rng.poisson(np.exp(np.array([-2.0, -1.0, 0.0, 0.5])[a]
                                + np.array([0.0, -1.5, 1.0])[b]))[:, None]
    X = np.hstack([_one_hot(a, 4), _one_hot(b, 3)])
    storage = {"onehot(a)": slice(0, 4), "onehot(b)": slice(4, 7)}
    used = np.ones(T, bool)
    W, b0 = _start(X, counts, None, used, _constraints(X, storage), storage)
    mu = np.exp(X @ W + b0)
    # the last term's margins are matched given the first (a sweep of iterative proportional
    # fitting); each term taken from the constant rate alone would miss them
    np.testing.assert_allclose(X[:, 4:].T @ mu, X[:, 4:].T @ counts, rtol=1e-10)
    alone = np.log((X[:, 4:].T @ counts)[:, 0] / X[:, 4:].sum(axis=0) / counts.mean())
    assert not np.allclose(W[4:, 0] - W[4:, 0].mean(), alone - alone.mean(), atol=0.05)


def test_columns_that_are_not_a_partition_of_unity_give_no_start():
    rng = np.random.default_rng(2)
    T = 1000
    x = rng.uniform(-1.0, 2.0, T)
    counts = rng.poisson(1.0, (T, 2))
    used = np.ones(T, bool)
    storage = {"t": slice(0, 2)}
    signed = np.column_stack([x, 1 - x])  # spans the constant, rows sum to 1, values < 0
    doubled = 2 * _one_hot(rng.integers(0, 2, T), 2)  # rows sum to 2
    for X in (signed, doubled):
        assert _start(X, counts, None, used, _constraints(X, storage), storage) is None
    assert _start(doubled, counts, None, used, {}, storage) is None


def test_a_unit_without_spikes_starts_at_zero_weights():
    rng = np.random.default_rng(3)
    level = rng.integers(0, 5, 2000)
    X = _one_hot(level, 5)
    counts = np.column_stack([rng.poisson(2.0, 2000), np.zeros(2000)])
    storage = {"onehot(level)": slice(0, 5)}
    W, b = _start(X, counts, None, np.ones(2000, bool), _constraints(X, storage), storage)
    np.testing.assert_array_equal(W[:, 1], 0.0)
    assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    assert np.any(W[:, 0] != 0.0)


@pytest.fixture(scope="module")
def population():
    # sharp head-direction cells; enough units and rows for the history model's groups
    return gf.datasets.head_direction(n_units=16, duration=600.0, seed=5)


@pytest.mark.parametrize("formula", [
    "spikes ~ cyclic(head_direction, 12)",  # one population Newton solve
    "spikes ~ cyclic(head_direction, 12) + history(4, log, window=60ms)",  # in groups
])
def test_newton_reaches_the_same_optimum_in_fewer_iterations(population, formula, monkeypatch):
    design = build(prepare(formula, population, bin_size=0.01, epochs=population["wake"]))
    options = engine.FitOptions(smoothing=None)
    fits = {}
    for tuned in (True, False):
        if not tuned:
            monkeypatch.setattr(engine, "_tuning_curve_start", lambda *args: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[tuned] = engine.fit_design(design, options)
    tuned, cold = fits[True], fits[False]
    assert fits[True].diagnostics.solver == "newton"
    assert ("history" in formula) == engine.fitted_in_groups(design, engine.design_constraints(
        design), design.valid)
    assert np.all(tuned.diagnostics.converged) and np.all(cold.diagnostics.converged)
    np.testing.assert_allclose(tuned.diagnostics.log_likelihood, cold.diagnostics.log_likelihood,
                               rtol=1e-10)
    np.testing.assert_allclose(tuned.weights, cold.weights, atol=1e-5)
    assert np.sum(tuned.diagnostics.n_iter) < np.sum(cold.diagnostics.n_iter)
    assert tuned.diagnostics.n_hessian_passes < cold.diagnostics.n_hessian_passes


def _problem(seed: int = 4):
    rng = np.random.default_rng(seed)
    T, U = 4000, 3
    level = rng.integers(0, 8, T)
    X = _one_hot(level, 8)[:, :7]  # the last level as reference: identifiable
    counts = rng.poisson(np.exp(rng.normal(-1.0, 1.5, (8, U))[level]))
    return backend.Problem(X=X, y=counts.astype(float)), level


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_only_newton_begins_at_a_cold_start(solver):
    problem, _ = _problem()
    start = backend.ColdStart(np.full((7, 3), 2.0), np.full(3, -3.0))
    plain = backend.solve(problem, solver=solver)
    cold = backend.solve(problem, solver=solver, init=start)
    warm = backend.solve(problem, solver=solver, init=(start.weights, start.intercept))
    assert np.any(np.asarray(warm.n_iter) != np.asarray(plain.n_iter))  # the start matters
    np.testing.assert_allclose(cold.weights, plain.weights, atol=1e-6)  # the same optimum
    # Newton begins there as at a warm start; L-BFGS begins as without one
    like = warm if solver == "newton" else plain
    np.testing.assert_array_equal(np.asarray(cold.n_iter), np.asarray(like.n_iter))
    np.testing.assert_array_equal(cold.weights, like.weights)


def test_a_start_part_keeps_its_kind():
    W, b = np.arange(12.0).reshape(4, 3), np.array([1.0, 2.0, 3.0])
    part = backend.start_part(backend.ColdStart(W, b), np.array([0, 2]), np.array([1, 2]))
    assert isinstance(part, backend.ColdStart)
    np.testing.assert_array_equal(part.weights, W[np.ix_([0, 2], [1, 2])])
    np.testing.assert_array_equal(part.intercept, b[[1, 2]])
    plain = backend.start_part((W, b), units=np.array([0]))
    assert isinstance(plain, tuple)
    np.testing.assert_array_equal(plain[0], W[:, [0]])
    assert backend.start_part(None, units=np.array([0])) is None


def test_only_newton_fits_without_reml_start_there_blocked_as_in_memory(monkeypatch):
    """A REML search (``smoothing="auto"``) begins at its own cold start and L-BFGS at zero
    weights, neither at the tuning curves; a blocked fit without REML computes the start an
    in-memory fit computes, and reaches the same weights."""
    population = gf.datasets.head_direction(n_units=3, duration=300.0, seed=7)
    formula = "spikes ~ cyclic(head_direction, 12) + history(3, log, window=60ms)"
    starts_made = []
    original = engine._tuning_curve_start

    def spy(*args):
        found = original(*args)
        starts_made.append(found)
        return found

    monkeypatch.setattr(engine, "_tuning_curve_start", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gf.fit(formula, population, bin_size="10ms", epochs="wake", chunk_size=0)
        assert starts_made == []
        whole = gf.fit(formula, population, bin_size="10ms", epochs="wake", chunk_size=0,
                       smoothing=None, tol=1e-10)
        blocks = gf.fit(formula, population, bin_size="10ms", epochs="wake",
                        chunk_size=20000, smoothing=None, tol=1e-10)
        # L-BFGS would ignore it: not even computed
        gf.fit(formula, population, bin_size="10ms", epochs="wake", chunk_size=0,
               smoothing=None, solver="lbfgs")
    assert len(starts_made) == 2
    in_memory, blocked = starts_made
    np.testing.assert_allclose(blocked.weights, in_memory.weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(blocked.intercept, in_memory.intercept, rtol=1e-10)
    assert np.any(in_memory.weights != 0)
    np.testing.assert_allclose(whole.coef, blocks.coef, rtol=1e-8, atol=1e-10)
