"""L-BFGS started near its answer (a cross-validation fold started at the fit on all rows) is
preconditioned by the Hessian at the start: it finishes in a few iterations, at the same
optimum as a cold start."""

import numpy as np
import pytest

from glmformula.backend import Problem, solve


def test_a_warm_fold_fit_is_nearly_newton_and_matches_the_cold_one(simulator):
    # strongly modulated rates: the start's Gram preconditioner (rate ybar everywhere) is poor
    X, Y, _, _ = simulator(20_000, 20, 8, seed=3, rate=0.1, gain=2.0)
    full = solve(Problem(X, Y), solver="lbfgs")
    fold = np.ones(len(X))
    fold[: len(X) // 5] = 0.0  # the first fifth held out
    problem = Problem(X, Y, row_weight=fold)
    cold = solve(problem, solver="lbfgs")
    warm = solve(problem, solver="lbfgs", init=full)
    assert cold.converged.all() and warm.converged.all()
    scale = np.abs(cold.weights).max()
    np.testing.assert_allclose(warm.weights, cold.weights, atol=1e-6 * scale)
    np.testing.assert_allclose(warm.intercept, cold.intercept, atol=1e-6)
    # the Gram matrix (rank) and the Hessian at the start; no refresh needed
    assert warm.n_hessian_passes == 2
    assert warm.n_iter.max() <= 8 < cold.n_iter.max()


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_the_last_units_continue_alone_to_the_same_answer(simulator, monkeypatch, family):
    from glmformula.backend import lbfgs

    X, _, W, b = simulator(20_000, 20, 12, seed=4, rate=0.1)
    gains = np.linspace(0.3, 3.0, 12)  # strongly modulated units need more iterations
    Y = np.random.default_rng(5).poisson(np.exp(X @ (W * gains) + b)).astype(float)
    # a per-unit offset and (negative binomial) a per-unit dispersion travel with the units
    offset = np.random.default_rng(6).normal(0, 0.1, Y.shape)
    continued = []
    original = lbfgs._of_units
    monkeypatch.setattr(lbfgs, "_of_units",
                        lambda data, st, units: continued.append(units) or original(data, st,
                                                                                   units))
    narrow = solve(Problem(X, Y, offset=offset), solver="lbfgs", family=family)
    assert continued and len(continued[0]) == lbfgs.NARROW_UNITS
    calls = len(continued)
    together = solve(Problem(X, Y, offset=offset), solver="lbfgs", family=family,
                     narrow_units=0)
    assert len(continued) == calls  # the option turned the continuation off
    assert narrow.converged.all() and together.converged.all()
    np.testing.assert_allclose(narrow.weights, together.weights,
                               atol=1e-6 * np.abs(together.weights).max())
    assert np.abs(narrow.n_iter - together.n_iter).max() <= 2


def test_the_last_units_continue_in_ever_narrower_batches(simulator, monkeypatch):
    """24 units: once at most 8 are left they continue in a batch of 8, then of 4 (padded), and
    end where one batch of all units ends."""
    from glmformula.backend import lbfgs

    X, _, W, b = simulator(20_000, 20, 24, seed=9, rate=0.1)
    gains = np.geomspace(0.1, 6.0, 24)  # the units need 4 to 15 iterations
    Y = np.random.default_rng(8).poisson(np.exp(X @ (W * gains) + b)).astype(float)
    widths = []
    original = lbfgs._of_units
    monkeypatch.setattr(lbfgs, "_of_units",
                        lambda data, st, units: widths.append(len(units)) or original(data, st,
                                                                                      units))
    narrowed = solve(Problem(X, Y), solver="lbfgs")
    assert widths == [8, 4]
    together = solve(Problem(X, Y), solver="lbfgs", narrow_units=0)
    assert narrowed.converged.all() and together.converged.all()
    np.testing.assert_allclose(narrowed.weights, together.weights,
                               atol=1e-6 * np.abs(together.weights).max())
    assert np.abs(narrowed.n_iter - together.n_iter).max() <= 2


def test_the_memory_keeps_its_newest_slot_through_narrow_batches(simulator, monkeypatch):
    """Every iteration writes its pair into slot ``it % history`` of the ring and moves the
    newest slot on: a unit continuing in a narrower batch must carry that slot, or the next
    batch overwrites recent pairs and reads its memory out of order. Checked on every state
    merged after a narrow batch (the last is the one returned)."""
    from glmformula.backend import lbfgs

    X, _, W, b = simulator(20_000, 20, 24, seed=9, rate=0.1)
    gains = np.geomspace(0.1, 6.0, 24)  # the units need 4 to 15 iterations
    Y = np.random.default_rng(8).poisson(np.exp(X @ (W * gains) + b)).astype(float)
    history = 4
    merged = []
    original = lbfgs._merge
    monkeypatch.setattr(lbfgs, "_merge",
                        lambda st, part, units: merged.append(original(st, part, units))
                        or merged[-1])
    result = solve(Problem(X, Y), solver="lbfgs", history=history, refresh=0)
    assert result.converged.all()
    assert len(merged) >= 2  # a second narrow batch continued from a merged state
    for state in merged:
        assert int(state.head) == int(state.it) % history


def test_a_cold_population_refreshes_early_and_reaches_the_same_answer(simulator, monkeypatch):
    """A population's cold start renews its constant-rate preconditioner every COLD_REFRESH
    iterations (at most COLD_REFRESHES times); a warm start keeps the (P+1)/16 schedule. Both
    schedules end at the same optimum."""
    from glmformula.backend import lbfgs

    X, _, W, b = simulator(20_000, 20, 8, seed=11, rate=0.1)
    Y = np.random.default_rng(12).poisson(np.exp(X @ (2.5 * W) + b)).astype(float)
    schedules = []
    original = lbfgs.compiled_call
    monkeypatch.setattr(lbfgs, "compiled_call", lambda fn, static, *args: schedules.append(
        (static["warm"], static["refresh"], static["refreshes"])) or original(fn, static, *args))
    cold = solve(Problem(X, Y), solver="lbfgs", narrow_units=0)
    assert schedules == [(False, lbfgs.COLD_REFRESH, lbfgs.COLD_REFRESHES)]
    assert cold.n_hessian_passes >= 2  # at least one refresh happened on this problem
    previous = solve(Problem(X, Y), solver="lbfgs", narrow_units=0, refresh=10, refreshes=2)
    assert cold.converged.all() and previous.converged.all()
    np.testing.assert_allclose(cold.weights, previous.weights,
                               atol=1e-6 * np.abs(previous.weights).max())
    schedules.clear()
    solve(Problem(X, Y), solver="lbfgs", narrow_units=0, init=previous)
    assert schedules == [(True, 10, 2)]  # a warm start: max(10, (P+1)/16), at most 2


def test_a_cold_population_keeps_the_cost_rule_where_hessians_are_dear(simulator, monkeypatch):
    """The early renewals pay where a Hessian pass costs a few iterations (dense 20 columns:
    21/16); on a wide dense design (200 columns: 201/16 = 12.6 iterations, more than
    COLD_REFRESH) the cold start keeps the (P+1)/16 schedule, as a warm start does."""
    from glmformula.backend import lbfgs

    assert lbfgs.COLD_REFRESH < 201 / 16
    X, _, W, b = simulator(4_000, 200, 8, seed=13, rate=0.1)
    Y = np.random.default_rng(14).poisson(np.exp(X @ (0.5 * W) + b)).astype(float)
    schedules, costs = [], []
    original, cost = lbfgs.compiled_call, lbfgs.hessian_iterations
    monkeypatch.setattr(lbfgs, "compiled_call", lambda fn, static, *args: schedules.append(
        (static["warm"], static["refresh"], static["refreshes"])) or original(fn, static, *args))
    monkeypatch.setattr(lbfgs, "hessian_iterations",
                        lambda data: costs.append(cost(data)) or costs[-1])
    result = solve(Problem(X, Y), solver="lbfgs", narrow_units=0)
    assert costs == [pytest.approx(201 / 16)]  # dense: no tiles, the flops rule
    assert schedules == [(False, 12, 2)]
    assert result.converged.all()


def test_a_fold_given_the_full_fits_preconditioner_forms_no_hessian_at_its_start(simulator):
    """A warm start given the preconditioner of the fit on all rows (``Solution.
    preconditioner``) skips the Gram and Hessian passes at its start and reaches the same
    optimum as a cold start, in about as many iterations as forming its own Hessian."""
    X, Y, _, _ = simulator(20_000, 20, 8, seed=3, rate=0.1, gain=2.0)
    full = solve(Problem(X, Y), solver="lbfgs")
    assert full.preconditioner is not None
    assert full.preconditioner.factor.shape == (8, 21, 21)
    fold = np.ones(len(X))
    fold[: len(X) // 5] = 0.0
    problem = Problem(X, Y, row_weight=fold)
    cold = solve(problem, solver="lbfgs")
    own = solve(problem, solver="lbfgs", init=full)
    given = solve(problem, solver="lbfgs", init=full, preconditioner=full.preconditioner)
    assert given.converged.all()
    scale = np.abs(cold.weights).max()
    np.testing.assert_allclose(given.weights, cold.weights, atol=1e-6 * scale)
    np.testing.assert_allclose(given.intercept, cold.intercept, atol=1e-6)
    assert own.n_hessian_passes == 2 and given.n_hessian_passes == 0
    # its preconditioner is from the full fit's last refresh, not at the answer: more iterations
    # than a Hessian formed at the start, fewer than a cold start
    assert own.n_iter.max() <= given.n_iter.max() < cold.n_iter.max()


def test_a_preconditioner_that_does_not_fit_the_problem_is_not_used(simulator):
    """Another column mask (a column all zero in the fold's rows), another ridge or a cold
    start: the solver forms its own preconditioner, and the answer is unchanged."""
    from glmformula.backend import Ridge

    X, Y, _, _ = simulator(20_000, 20, 8, seed=3, rate=0.1, gain=2.0)
    full = solve(Problem(X, Y), solver="lbfgs")
    fold = np.ones(len(X))
    fold[: len(X) // 5] = 0.0
    zeroed = X.copy()
    zeroed[len(X) // 5:, 3] = 0.0  # column 3 is empty in the fold's rows: masked there
    for problem, options in [(Problem(zeroed, Y, row_weight=fold), {}),
                             (Problem(X, Y, row_weight=fold), {"regularizer": Ridge(1e-3)})]:
        reference = solve(problem, solver="lbfgs", init=full, **options)
        given = solve(problem, solver="lbfgs", init=full, preconditioner=full.preconditioner,
                      **options)
        assert given.n_hessian_passes == reference.n_hessian_passes >= 2  # Gram, Hessian
        np.testing.assert_array_equal(given.weights, reference.weights)
    cold = solve(Problem(X, Y, row_weight=fold), solver="lbfgs",
                 preconditioner=full.preconditioner)
    assert cold.n_hessian_passes >= 1 and cold.converged.all()  # B0 from the Gram matrix


def test_only_lbfgs_on_all_units_at_once_keeps_its_preconditioner(simulator, monkeypatch):
    import importlib

    # by its module path: the attribute glmformula.backend.solve is the function
    solve_module = importlib.import_module("glmformula.backend.solve")

    X, Y, _, _ = simulator(4_000, 6, 4, seed=2)
    assert solve(Problem(X, Y), solver="newton").preconditioner is None
    assert solve(Problem(X, Y), solver="lbfgs").preconditioner is not None
    monkeypatch.setattr(solve_module, "PRECONDITIONER_KEEP_FRACTION", 0.0)
    assert solve(Problem(X, Y), solver="lbfgs").preconditioner is None  # too large to keep
