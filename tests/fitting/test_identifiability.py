"""Identifiability constraints found without a pass over all rows where a sample of them decides:
the same constraints as the moments over all rows give, for one block and for many, and the
column means of a fit by numpy reductions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from glmformula.fitting import engine
from glmformula.fitting import identifiability as ident
from glmformula.graph.rows import resident_rows


def plan_of(widths: dict) -> SimpleNamespace:
    """A plan with shared terms of these widths, stored side by side."""
    storage, start = {}, 0
    for text, width in widths.items():
        storage[text] = slice(start, start + width)
        start += width
    terms = tuple(SimpleNamespace(text=text, role="shared") for text in widths)
    return SimpleNamespace(terms=terms, term_storage=storage, n_storage=start)


def one_hot(levels: np.ndarray, k: int) -> np.ndarray:
    return (levels[:, None] == np.arange(k)).astype(float)


def counting(rows):
    """``rows`` that count the passes made over them."""
    passes = []

    def counted():
        passes.append(1)
        return rows()
    return counted, passes


def by_moments(rows, plan) -> dict:
    """The constraints from every term's moments over all rows (no screen)."""
    terms = tuple(t for t in plan.term_storage if plan.term_storage[t].stop
                  - plan.term_storage[t].start >= 2)
    return ident.constraints_from_moments(ident.term_moments(rows, plan.term_storage, terms))


@pytest.fixture
def design():
    rng = np.random.default_rng(3)
    n = 20_000
    x = rng.standard_normal((n, 6))
    hot = one_hot(rng.integers(0, 4, n), 4)
    positive = 5.0 + rng.random((n, 2))  # far from spanning the constant, but not orthogonal
    X = np.concatenate([x, hot, positive, rng.standard_normal((n, 1))], axis=1)
    used = np.ones(n)
    used[:100] = 0  # a filter's first window
    used[rng.random(n) < 0.05] = 0  # missing values
    X[used == 0] = 0.0
    plan = plan_of({"x": 6, "level": 4, "positive": 2, "alone": 1})
    return X, used, plan


@pytest.mark.parametrize("rows_per_block", [None, 1_000, 7_777])
def test_the_screen_finds_the_constraints_the_moments_find(design, rows_per_block):
    X, used, plan = design
    rows = resident_rows(X, np.zeros((len(X), 1)), None, used, rows_per_block)
    found = ident.find_constraints(rows, plan)
    expected = by_moments(rows, plan)
    assert list(found) == list(expected) == ["level"]
    np.testing.assert_allclose(found["level"], expected["level"], rtol=0, atol=1e-12)


def test_terms_that_do_not_span_the_constant_need_no_pass_over_the_rows(design):
    X, used, plan = design
    plan = plan_of({"x": 6, "positive": 2})
    rows, passes = counting(resident_rows(X[:, [0, 1, 2, 3, 4, 5, 10, 11]],
                                          np.zeros((len(X), 1)), None, used))
    assert ident.find_constraints(rows, plan) == {}
    assert len(passes) == 1  # the one block, read for its sample and its row count only


def test_a_first_block_without_rows_used_screens_nothing(design):
    X, used, plan = design
    used = used.copy()
    used[:2_000] = 0
    rows = resident_rows(X, np.zeros((len(X), 1)), None, used, 1_500)
    found = ident.find_constraints(rows, plan)
    assert list(found) == ["level"]
    np.testing.assert_allclose(found["level"], by_moments(rows, plan)["level"], atol=1e-12)


def test_a_sample_residual_below_the_tolerance_of_all_rows_gets_a_second_pass():
    # a column close to the constant: on the first block's sample the fit of a column of ones
    # leaves more than the tolerance of that block's rows, less than that of all rows
    rng = np.random.default_rng(5)
    n, block = 60_000, 1_000
    X = np.stack([1 + 0.003 * rng.standard_normal(n), rng.standard_normal(n)], axis=1)
    plan = plan_of({"near": 2})
    used = np.ones(n)
    sample = ident.screen_terms(X[:block], used[:block] > 0, plan.term_storage)
    assert ident.SPAN_TOLERANCE * block <= sample["near"] < ident.SPAN_TOLERANCE * n
    rows, passes = counting(resident_rows(X, np.zeros((n, 1)), None, used, block))
    assert ident.find_constraints(rows, plan) == {}
    assert len(passes) == 2
    assert by_moments(rows, plan) == {}


def test_a_term_spanning_the_constant_to_float_precision_is_constrained():
    rng = np.random.default_rng(6)
    n = 5_000
    X = np.stack([1 + 1e-9 * rng.standard_normal(n), rng.standard_normal(n)], axis=1)
    plan = plan_of({"near": 2})
    rows = resident_rows(X, np.zeros((n, 1)), None, np.ones(n))
    found = ident.find_constraints(rows, plan)
    np.testing.assert_allclose(found["near"], by_moments(rows, plan)["near"], atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pattern", ["runs", "scattered"])
def test_column_means_are_those_of_the_rows_used(dtype, pattern):
    rng = np.random.default_rng(7)
    X = (3.0 + rng.standard_normal((50_000, 7))).astype(dtype)
    offset = rng.standard_normal(50_000)
    if pattern == "runs":
        used = np.zeros(50_000, bool)
        used[100:20_000] = used[20_500:49_000] = True
    else:
        used = rng.random(50_000) < 0.5
    means, offset_mean = engine._means(X, offset, used, rows_per_block=4_096)
    expected = X[used].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(means, expected, rtol=1e-12)
    assert offset_mean == pytest.approx(offset[used].mean(), rel=1e-12)
