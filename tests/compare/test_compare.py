"""gf.compare and gf.select on simulated data with known structure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula.compare.folds import contiguous_folds
from glmformula.compare.nesting import is_nested


@pytest.fixture(scope="module")
def maze():
    return gf.datasets.linear_maze(seed=1, duration=900.0)


@pytest.fixture(scope="module")
def maze_table(maze):
    models = {"null": "spikes[1] ~ 1",
              "position": "spikes[1] ~ onehot(position, 7)",
              "speed": "spikes[1] ~ speed",
              "position+speed": "spikes[1] ~ onehot(position, 7) + speed"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.compare(models, maze, bin_size="20ms", epochs="run", cv=5)


def test_table_layout(maze_table):
    assert list(maze_table.index) == ["null", "position", "speed", "position+speed"]
    for column in ["n_params", "train_bits_per_spike", "cv_bits_per_spike",
                   "cv_bits_per_spike_se", "delta_cv_bits_per_spike", "aic", "bic", "lr_stat",
                   "lr_df", "lr_pvalue"]:
        assert column in maze_table.columns
    assert maze_table.loc["null", "train_bits_per_spike"] == pytest.approx(0, abs=1e-9)
    assert maze_table["delta_cv_bits_per_spike"].max() == 0
    assert list(maze_table["n_params"]) == [1, 7, 2, 8]


def test_speed_cell_the_true_model_wins(maze_table):
    """Unit 1 is driven by speed alone; its position tuning is a confound."""
    best = maze_table["cv_bits_per_spike"].idxmax()
    assert best in ("speed", "position+speed")
    speed, both = maze_table.loc["speed"], maze_table.loc["position+speed"]
    # Adding position to speed gains (almost) nothing held out ...
    assert both["cv_bits_per_spike"] - speed["cv_bits_per_spike"] < 2 * both["cv_bits_per_spike_se"]
    # ... while speed adds a lot to position, and position alone looks informative.
    assert maze_table.loc["position", "cv_bits_per_spike"] > 0.01
    assert speed["cv_bits_per_spike"] > maze_table.loc["position", "cv_bits_per_spike"]
    assert both["nested_in"] in ("position", "speed")


def test_likelihood_ratio_against_largest_nested(maze_table):
    row = maze_table.loc["position+speed"]
    small = row["nested_in"]
    expected = 2 * (row["log_likelihood"] - maze_table.loc[small, "log_likelihood"])
    assert row["lr_stat"] == pytest.approx(expected)
    assert row["lr_df"] == row["n_params"] - maze_table.loc[small, "n_params"]
    assert np.isnan(maze_table.loc["null", "lr_stat"])


def test_forward_selection_picks_exactly_the_true_terms(maze):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = gf.select("spikes[1] ~ 1", ["onehot(position, 7)", "speed"], maze,
                           bin_size="20ms", epochs="run", cv=10)
    assert chosen.terms == ("speed",)
    assert list(chosen.path["term"][:2]) == ["(base)", "speed"]
    assert chosen.path["accepted"].tolist()[-1] is False or len(chosen.path) == 3


def test_folds_are_contiguous_blocks():
    valid = np.ones(1000, bool)
    valid[100:150] = False
    folds = contiguous_folds(valid, 4)
    assert sum(f.sum() for f in folds) == valid.sum()
    for fold in folds:
        rows = np.flatnonzero(fold)
        # contiguous in the valid rows: no valid row inside the block is missing
        inside = np.flatnonzero(valid[rows[0]:rows[-1] + 1]) + rows[0]
        assert np.array_equal(rows, inside)
    with pytest.raises(gf.FormulaError):
        contiguous_folds(np.ones(20, bool), 5)


def test_nesting_from_term_sets():
    assert is_nested(gf.parse("y ~ a"), gf.parse("y ~ a + b"))
    assert not is_nested(gf.parse("y ~ a + c"), gf.parse("y ~ a + b"))
    assert is_nested(gf.parse("y ~ 1"), gf.parse("y ~ a:b"))
    assert not is_nested(gf.parse("y ~ a"), gf.parse("z ~ a + b"))


def test_models_must_share_the_response(maze):
    with pytest.raises(gf.FormulaError, match="same response"):
        gf.compare({"a": "spikes[0] ~ 1", "b": "spikes[1] ~ 1"}, maze, bin_size=0.02)


@pytest.mark.parametrize("smoothing", [None, "auto"])
def test_training_scores_equal_a_pass_over_the_fitted_rows(maze, smoothing):
    """The comparison scores a model on its training rows from the fit's own log-likelihood
    (the solver's objective where the fit is unpenalised): the same as forming the rates of
    every training row, penalised or not."""
    from glmformula.compare.comparison import Comparison
    from glmformula.fitting import poisson
    from glmformula.results import scores

    formulas = {"position+speed": "spikes ~ onehot(position, 7) + speed",
                "smooth": "spikes ~ bspline(position, 6) + speed"}
    comparison = Comparison(formulas, maze, bin_size="20ms", epochs="run", cv=2,
                            regularizer=None, solver="auto", dtype=None, smoothing=smoothing)
    for name in formulas:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = comparison.run_task(name, -1)
        fit = comparison._full[name]
        design = comparison.designs[name]
        rows = np.flatnonzero(comparison.valid)
        eta = design.storage[rows] @ fit.weights + fit.intercepts
        counts = design.counts[rows].astype(float)
        ll = poisson.log_likelihood(counts, poisson.expected_counts(eta))
        np.testing.assert_allclose(output["ll"], ll, rtol=1e-9)
        np.testing.assert_allclose(
            output["bps"], scores.bits_per_spike(counts, poisson.expected_counts(eta)),
            rtol=1e-8)
