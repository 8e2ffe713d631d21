"""Blocked fits (designs built and accumulated block by block) equal in-memory fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmformula as gf
from glmformula.fitting.engine import auto_chunk_size, check_fits_in_memory
from glmformula.graph.design import prepare


@pytest.fixture(scope="module")
def recording():
    return gf.datasets.head_direction(n_units=4, duration=300.0, seed=2)


# Unpenalised, this population is separable (infinite MLE), so the weights are not
# identified and cannot be compared; a ridge makes the optimum unique.
@pytest.mark.parametrize("regularizer", [gf.Ridge(1e-5), gf.Ridge(1e-2)])
def test_blocked_equals_in_memory(recording, regularizer):
    """History and coupling across block edges and several disjoint epochs."""
    import pynapple as nap
    f = "spikes ~ history(3, log, window=60ms) + coupling(all)"
    epochs = nap.IntervalSet([0.0, 65.3, 140.0], [60.0, 130.0, 200.0])  # inside wake
    # The criterion (nats) is about the relative accuracy of the weights; both fits
    # converged to 1e-10 must agree to 1e-8 (at the default 1e-8 each is only
    # within ~1e-8 of the optimum, and their paths differ: lazy Newton in memory).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = gf.fit(f, recording, bin_size="10ms", epochs=epochs, chunk_size=0,
                       regularizer=regularizer, tol=1e-10)
        blocks = gf.fit(f, recording, bin_size="10ms", epochs=epochs, chunk_size=1777,
                        regularizer=regularizer, tol=1e-10)
    scale = np.abs(whole.weights).max(axis=0)
    assert np.max(np.abs(whole.weights - blocks.weights) / scale) < 1e-8
    assert np.allclose(whole.intercepts, blocks.intercepts, rtol=1e-8, atol=1e-12)
    assert blocks.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-10)
    assert np.allclose(whole.standard_errors(), blocks.standard_errors(), rtol=1e-6,
                       equal_nan=True)
    assert blocks.n_rows == whole.n_rows
    assert blocks.chunk_size == 1777 and whole.chunk_size is None


def test_constrained_term_blocked(recording):
    f = "spikes[0] ~ cyclic(head_direction, 8) + history(3, log, window=60ms)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = gf.fit(f, recording, bin_size="10ms", epochs="wake", chunk_size=0, tol=1e-10)
        blocks = gf.fit(f, recording, bin_size="10ms", epochs="wake", chunk_size=2500, tol=1e-10)
    assert blocks.constrained_terms == whole.constrained_terms == ("cyclic(head_direction, 8)",)
    assert np.allclose(whole.coef, blocks.coef, rtol=1e-8, atol=1e-10)


def test_large_design_goes_blocked_or_is_refused(recording, monkeypatch):
    prepared = prepare("spikes ~ history(3) + coupling(all)", recording, bin_size="10ms",
                       epochs="wake")
    assert auto_chunk_size(prepared, np.float64) is None
    monkeypatch.setattr(gf.config, "memory_limit", 1024)
    assert auto_chunk_size(prepared, np.float64) >= 1024
    with pytest.raises(gf.FitError, match="chunk_size") as info:
        check_fits_in_memory(prepared, np.float64)
    assert "GiB" in str(info.value) and "float32" in str(info.value)


def test_fit_without_intercept_is_refused_clearly(recording):
    with pytest.raises(gf.FitError, match="intercept"):
        gf.fit("spikes[0] ~ cyclic(head_direction, 6) - 1", recording, bin_size="20ms",
               epochs="wake")
