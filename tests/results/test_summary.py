"""res.summary(): Wald tests of whole terms (against statsmodels), refits without each term."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from rich.console import Console

import glmformula as gf
from glmformula.fitting import FitOptions, fit_design
from glmformula.graph.design import build, prepare

sm = pytest.importorskip("statsmodels.api")


def test_wald_test_of_a_term_equals_statsmodels(maze):
    formula = "spikes[1] ~ rcos(position, 4, log=True) + speed"
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run",
                 smoothing=None)  # statsmodels: the unpenalised fit
    X = gf.design_matrix(formula, maze, bin_size="20ms", epochs="run")
    ref = sm.GLM(X.response.values, X.to_numpy(), family=sm.families.Poisson()).fit(tol=1e-12)
    table = res.summary()
    assert table.index.names == ["term", "unit"]
    for term, columns in [("rcos(position, 4, log=True)", [1, 2, 3, 4]), ("speed", [5])]:
        R = np.zeros((len(columns), X.to_numpy().shape[1]))
        R[np.arange(len(columns)), columns] = 1.0
        wald = ref.wald_test(R, scalar=True)
        row = table.loc[(term, 1)]
        assert row["columns"] == len(columns) and row["df"] == len(columns)
        assert row["wald_chi2"] == pytest.approx(float(wald.statistic), rel=1e-5)
        assert row["p_value"] == pytest.approx(float(wald.pvalue), rel=1e-4, abs=1e-300)


def test_wald_test_of_a_constrained_term_has_one_df_fewer(maze):
    """onehot spans the constant: 7 weights, 6 free. The test of "no position effect" is the
    same hypothesis as statsmodels' with the first column dropped (reference coding), and a
    Wald statistic does not depend on the parametrisation."""
    formula = "spikes[0] ~ onehot(position, 7) + speed"
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run",
                 smoothing=None)  # statsmodels: the unpenalised fit
    A = gf.design_matrix(formula, maze, bin_size="20ms", epochs="run")
    y = A.response.values
    reduced = np.delete(A.to_numpy(), 1, axis=1)
    ref = sm.GLM(y, reduced, family=sm.families.Poisson()).fit(tol=1e-12)
    R = np.zeros((6, reduced.shape[1]))
    R[np.arange(6), np.arange(1, 7)] = 1.0
    wald = ref.wald_test(R, scalar=True)
    row = res.summary().loc[("onehot(position, 7)", 0)]
    assert row["columns"] == 7 and row["df"] == 6
    assert row["wald_chi2"] == pytest.approx(float(wald.statistic), rel=1e-5)


def test_refit_gives_likelihood_ratio_and_deviance_explained(maze):
    formula = "spikes ~ rcos(position, 5) + speed"
    res = gf.fit(formula, maze, bin_size="20ms", epochs="run",
                 smoothing=None)  # statsmodels: the unpenalised fit
    table = res.summary(data=maze, refit=True)
    without_speed = gf.fit("spikes ~ rcos(position, 5)", maze, bin_size="20ms", epochs="run",
                           smoothing=None)
    for u in res.unit_ids:
        lr = 2 * (res.log_likelihood_units[u] - without_speed.log_likelihood_units[u])
        assert table.loc[("speed", u), "lr_stat"] == pytest.approx(lr, rel=1e-6, abs=1e-6)
    # The speed cell needs speed and not position; the place cell the reverse.
    assert table.loc[("speed", 1), "deviance_explained"] > table.loc[("speed", 0),
                                                                     "deviance_explained"]
    assert table.loc[("rcos(position, 5)", 0), "deviance_explained"] > \
        table.loc[("rcos(position, 5)", 1), "deviance_explained"]
    assert (table["deviance_explained"].between(-1e-9, 1)).all()
    with pytest.raises(gf.FormulaError, match="training data"):
        res.summary(refit=True)


def test_refit_keeps_the_rows_of_the_full_model(hd_sim):
    """Dropping history must not add back the first window of each epoch: the reduced model is
    fitted, and scored, on the full model's rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes[[0, 1]] ~ cyclic(head_direction, 6) + history(3, log, window=50ms)",
                     hd_sim, bin_size="10ms", epochs="wake", regularizer=gf.Ridge(1e-4))
        table = res.summary(data=hd_sim, refit=True)
    X = gf.design_matrix("spikes[[0, 1]] ~ cyclic(head_direction, 6) + "
                         "history(3, log, window=50ms)", hd_sim, bin_size="10ms", epochs="wake")
    rows = np.zeros(X.grid.n_rows)
    rows[X.rows] = 1.0
    plain = build(prepare("spikes[[0, 1]] ~ cyclic(head_direction, 6)", hd_sim, bin_size="10ms",
                          epochs="wake"))
    assert plain.n_rows > res.n_rows  # without history: more rows
    same_rows = fit_design(plain, FitOptions(regularizer=gf.Ridge(1e-4)), row_weight=rows)
    lr = 2 * (res.log_likelihood_units - same_rows.diagnostics.log_likelihood)
    assert np.allclose(table.xs("history(3, log, window=50ms)", level="term")["lr_stat"], lr,
                       rtol=1e-5)


def test_summary_prints_as_a_table(maze):
    res = gf.fit("spikes ~ rcos(position, 5) + speed", maze, bin_size="20ms", epochs="run")
    buffer = io.StringIO()
    res.print_summary(console=Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "rcos(position, 5)" in text and "wald_chi2" in text and "p_value" in text
    assert str(res.formula) in text
    assert res.summary().columns.tolist() == ["columns", "edf", "df", "wald_chi2", "p_value"]
