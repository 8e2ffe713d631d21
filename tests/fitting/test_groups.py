"""Units solved in groups on their own columns (``history`` without ``coupling``), several
groups at once on threads: the same answer as one group after another and as one solve on all
columns; warnings issued inside a group reach the caller once, in order, with their context
and pointing at the caller's line."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula import errors
from glmformula.backend import problem as pb
from glmformula.fitting import engine, groups
from glmformula.fitting import threads as threads_module

FORMULA = "spikes ~ cyclic(head_direction, 6) + history(4, log, window=60ms)"


@pytest.fixture
def threads(monkeypatch):
    def set_threads(n: int) -> None:
        monkeypatch.setattr(gf.config, "threads", n)
    return set_threads


def _task(seen: list):
    def task(i):
        time.sleep(0.05)  # long enough that every thread takes a group
        seen.append(threading.get_ident())
        errors.warn(f"group {i}", errors.ConvergenceWarning, units=(i,))
        return i * i
    return task


def test_work_on_threads_keeps_order_and_reissues_warnings_from_the_caller(threads):
    threads(2)
    seen: list = []
    with warnings.catch_warnings(record=True) as caught, errors.warning_context("model 'm'"):
        warnings.simplefilter("always")
        out = threads_module.map_on_threads(_task(seen), list(range(6)))
    assert out == [i * i for i in range(6)]
    assert len(set(seen)) == 2 and threading.get_ident() not in seen
    assert [str(w.message) for w in caught] == [f"model 'm': group {i}" for i in range(6)]
    assert [w.message.units for w in caught] == [(i,) for i in range(6)]
    assert {w.filename for w in caught} == {__file__}  # the caller's line, not a thread's


def test_work_on_one_thread_and_errors_reach_the_caller(threads):
    threads(1)
    seen: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert threads_module.map_on_threads(_task(seen), [1, 2]) == [1, 4]
    assert set(seen) == {threading.get_ident()} and len(caught) == 2

    threads(2)

    def fails(i):
        if i == 1:
            raise ValueError("group 1 failed")
        return i

    with pytest.raises(ValueError, match="group 1 failed"):
        threads_module.map_on_threads(fails, [0, 1, 2])


def test_nested_work_shares_its_callers_threads(threads):
    threads(4)
    budgets = []

    def outer(i):
        budgets.append(threads_module.available_threads())
        return threads_module.map_on_threads(lambda j: 10 * i + j, [1, 2, 3])

    assert threads_module.map_on_threads(outer, [0, 1]) == [[1, 2, 3], [11, 12, 13]]
    assert budgets == [2, 2]  # two pieces side by side: two threads each
    assert threads_module.available_threads() == 4


@pytest.fixture(scope="module")
def recording():
    return gf.datasets.head_direction(n_units=6, duration=120.0, seed=5)


@pytest.mark.parametrize("smoothing", [None, "auto"])
def test_a_grouped_fit_is_the_same_on_threads_one_by_one_and_on_all_columns(
        recording, threads, monkeypatch, smoothing):
    # group even these short recordings (the per-call overhead would otherwise win)
    monkeypatch.setattr(groups, "CALL_OVERHEAD", 0.0)
    calls = []
    solve = engine.solve_in_groups
    monkeypatch.setattr(engine, "solve_in_groups",
                        lambda problem, plan, *a, **k: calls.append(len(plan))
                        or solve(problem, plan, *a, **k))

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gf.fit(FORMULA, recording, bin_size="10ms", epochs="wake",
                          smoothing=smoothing, regularizer=gf.Ridge(1e-4))

    threads(1)
    one_by_one = fit()
    threads(2)
    on_threads = fit()
    assert calls and calls[0] == 6  # one group per unit, its own history filter
    np.testing.assert_array_equal(on_threads.weights, one_by_one.weights)
    np.testing.assert_array_equal(on_threads.intercepts, one_by_one.intercepts)
    if smoothing is None:
        monkeypatch.setattr(groups, "GROUPING_GAIN", np.inf)  # one solve on all columns
        together = fit()
        assert len(calls) == 2  # not grouped this time
        np.testing.assert_allclose(together.weights, on_threads.weights, atol=1e-6)


@pytest.mark.parametrize("columns_first", [False, True], ids=["rows first", "columns first"])
@pytest.mark.parametrize("fold", [False, True], ids=["all rows", "a fold's rows"])
def test_a_threads_design_copies_only_the_columns_it_does_not_hold(monkeypatch, fold,
                                                                  columns_first):
    """Group after group on one thread, the reused design equals ``X[rows][:, columns]`` (its
    padding rows zero) while only the columns that changed are copied: a group's shared
    terms stay in place from the previous group; another design, other rows or a new shape
    copy everything."""
    from glmformula.fitting.rows import select_rows

    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 12))
    weight = np.ones(500)
    weight[100:180] = 0.0
    rows = select_rows(weight, always=True) if fold else None
    copied = []
    original = groups.gather

    def gather(storage, row_index, columns, intercept, out=None):
        copied.extend(np.asarray(columns).tolist())
        return original(storage, row_index, columns, intercept, out=out)

    monkeypatch.setattr(groups, "gather", gather)
    if fold:
        monkeypatch.setattr("glmformula.fitting.rows.gather", gather)
    reuse = threading.local()
    sequence = [[0, 1, 2, 5, 6], [0, 1, 2, 7, 8], [0, 1, 2, 9, 10], [0, 1, 3, 9, 11]]
    expected_copies = [[0, 1, 2, 5, 6], [7, 8], [9, 10], [3, 11]]
    for columns, expect in zip(sequence, expected_copies):
        copied.clear()
        out = groups._gather_columns(X, np.array(columns), reuse, rows, columns_first)
        assert pb.columns_first(out) == columns_first
        taken = X[rows.rows] if fold else X
        np.testing.assert_array_equal(out[:len(taken)], taken[:, columns])
        np.testing.assert_array_equal(out[len(taken):], 0.0)
        assert copied == expect
    copied.clear()
    other = X.copy()
    other[:, 0] += 1.0
    out = groups._gather_columns(other, np.array(sequence[-1]), reuse, rows, columns_first)
    assert copied == sequence[-1]  # another design: nothing it holds is of it
    np.testing.assert_array_equal(out[:len(other) if rows is None else len(rows.rows)],
                                  (other[rows.rows] if fold else other)[:, sequence[-1]])
    copied.clear()
    groups._gather_columns(other, np.array([0, 1, 3, 9]), reuse, rows, columns_first)
    assert copied == [0, 1, 3, 9]  # a new shape: a new array
    copied.clear()
    groups._gather_columns(other, np.array([0, 1, 3, 9]), reuse, rows, not columns_first)
    assert copied == [0, 1, 3, 9]  # the other layout: a new array


def test_groups_read_their_columns_first_where_newton_solves_them():
    assert groups.reads_columns_first({"solver": "auto", "regularizer": None})
    assert groups.reads_columns_first({"solver": "newton", "regularizer": gf.Ridge(1e-3)})
    assert not groups.reads_columns_first({"solver": "lbfgs"})
    assert not groups.reads_columns_first({"solver": "auto", "family": "gamma"})
    assert not groups.reads_columns_first({"solver": "auto", "regularizer": gf.Lasso(1e-3)})
    assert not groups.reads_columns_first({"solver": "newton", "lazy": False,
                                           "sampled_curvature": True})


@pytest.mark.parametrize("regularizer", [None, "ridge", "lasso"])
def test_a_grouped_fit_reads_its_columns_first_to_the_same_answer(recording, monkeypatch,
                                                                  regularizer):
    """Newton's groups get their columns laid out columns first (the proximal solver's,
    under a lasso, rows first) and reach the answer of groups copied rows first."""
    monkeypatch.setattr(groups, "CALL_OVERHEAD", 0.0)
    layouts = []
    solve = groups.sharding.solve_on_devices
    monkeypatch.setattr(groups.sharding, "solve_on_devices", lambda problem, **k: layouts.append(
        pb.columns_first(problem.X)) or solve(problem, **k))
    strength = {None: None, "ridge": gf.Ridge(1e-4), "lasso": gf.Lasso(1e-5)}[regularizer]

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gf.fit(FORMULA, recording, bin_size="10ms", epochs="wake", smoothing=None,
                          regularizer=strength)

    columns = fit()
    assert len(layouts) == 6 and all(layouts) == (regularizer != "lasso")
    monkeypatch.setattr(groups, "reads_columns_first", lambda options: False)
    layouts.clear()
    rows = fit()
    assert len(layouts) == 6 and not any(layouts)
    np.testing.assert_allclose(columns.weights, rows.weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(columns.intercepts, rows.intercepts, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("threads_", [1, 2])
@pytest.mark.parametrize("rows", ["all", "runs", "scattered"])
def test_column_statistics_copy_the_used_rows_in_the_same_pass(rows, threads_, threads):
    """The sums and ranges over the used rows, and the copy: the used rows of ``X`` laid out
    columns first, every other row zero; the same on one thread or two."""
    threads(threads_)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((5000, 7))
    used = {"all": None, "runs": (np.arange(5000) % 2000) < 1500,
            "scattered": rng.random(5000) < 0.5}[rows]
    X_before = X.copy()
    copy = groups.columns_first_copy(X, {"solver": "newton"})
    assert pb.columns_first(copy)
    sums, maxima = groups.column_statistics(X, used, rows_per_block=256, copy_to=copy)
    mask = np.ones(5000, bool) if used is None else used
    np.testing.assert_allclose(sums, X[mask].sum(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(maxima, np.abs(X[mask]).max(axis=0))
    np.testing.assert_array_equal(copy[mask], X[mask])
    np.testing.assert_array_equal(copy[~mask], 0.0)
    np.testing.assert_array_equal(X, X_before)  # the design itself is not touched
    assert groups.columns_first_copy(X, {"solver": "lbfgs"}) is None


@pytest.mark.parametrize("rows", ["all", "runs", "scattered"])
def test_column_ranges_for_every_group_from_one_pass(rows):
    """:func:`groups.column_maxima` is the device's range of each column over the used rows
    (``block_stats``), whatever the rows' runs, and not finite where a used row is (the
    device's maximum skips an isolated NaN: the solver finds it in its objective)."""
    import jax

    from glmformula.backend import problem as pb

    rng = np.random.default_rng(3)
    X = rng.standard_normal((9001, 5)) * [1.0, 10.0, 0.0, 1e-3, 2.0]
    X[4000, 4] = -np.inf
    X[8000, 1] = np.nan
    used = {"all": None, "runs": (np.arange(9001) % 3000) < 2500,
            "scattered": rng.random(9001) < 0.5}[rows]
    if used is not None:
        used[[4000, 8000]] = True
    weight = np.ones(9001) if used is None else used.astype(float)
    with jax.enable_x64(True):
        block = pb.block_from_arrays(X, np.zeros((9001, 1)), None, weight, np.float64, 1)
        device = np.asarray(pb.block_stats(block)[3])
    found = groups.column_maxima(X, used, rows_per_block=1000)
    finite = [0, 2, 3]
    np.testing.assert_array_equal(found[finite], device[finite])
    assert np.isnan(found[1]) and found[4] == np.inf
