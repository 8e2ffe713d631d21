"""The Fisher information a solve returns at its answer (``solve(..., information=True)``):
what the standard errors of a fit are computed from, without another pass over the rows."""

import numpy as np
import pytest

from glmformula.backend import Problem, solve, unit_information
from glmformula.backend.families import Obs


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_information_at_the_answer_equals_a_separate_pass(population, solver):
    X, Y, _, _ = population
    mask = np.ones((Y.shape[1], X.shape[1]), bool)
    mask[1, 2] = False  # a unit that does not read a column: its matrix leaves it out
    sol = solve(Problem(X, Y, column_mask=mask), solver=solver, information=True)
    assert len(sol.information) == Y.shape[1]
    for u, matrix in enumerate(sol.information):
        keep = np.flatnonzero(mask[u])
        ref = unit_information(X, None, np.ones(len(X)), keep, sol.weights[keep, u:u + 1],
                               sol.intercept[u:u + 1], "float64")[0]
        np.testing.assert_allclose(matrix, ref, rtol=1e-10)
    assert solve(Problem(X, Y), solver=solver).information is None


def test_information_of_a_family_uses_its_fisher_weights(population):
    X, Y, _, _ = population
    sol = solve(Problem(X, Y), family="negative_binomial", information=True)
    for u, matrix in enumerate(sol.information):
        ref = unit_information(X, None, np.ones(len(X)), np.arange(X.shape[1]),
                               sol.weights[:, u:u + 1], sol.intercept[u:u + 1], "float64",
                               Obs("negative_binomial", sol.dispersion[u:u + 1]))[0]
        np.testing.assert_allclose(matrix, ref, rtol=1e-8)
