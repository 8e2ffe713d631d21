"""Designs of the matching kind build on every real recording in ../shared/data."""

from __future__ import annotations

import numpy as np

from glmformula.graph.design import design_matrix


def test_head_direction_population_design(hd_recording):
    X = design_matrix("spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) "
                      "+ coupling(all)", hd_recording, bin_size="10ms", epochs="valid")
    n_units = len(hd_recording["spikes"])
    assert n_units == 32
    assert X.storage.shape[1] == 12 + 8 * n_units
    # 22 valid epochs; each loses its first 10 bins (the 100 ms window), or all of its bins
    # when it is shorter than that.
    assert len(X.grid.starts) == len(hd_recording["valid"]) == 22
    assert X.dropped["window"] == np.minimum(X.grid.bins_per_epoch, 10).sum()
    assert X.dropped["window"] < 10 * 22
    assert 220_000 < X.n_rows < 227_000
    assert np.isfinite(X.storage[X.valid]).all()
    # The population stores each unit's filtered spike train once; unit 0 takes its own as
    # history and the 31 others as coupling.
    labels = X.plan.unit_labels[0]
    assert sum(t.startswith("history") for t, _ in labels) == 8
    assert sum(t.startswith("coupling") for t, _ in labels) == 8 * 31


def test_spike_only_nwb_design(nwb_recording):
    X = design_matrix("units ~ history(8, log, window=100ms) + coupling(all)", nwb_recording,
                      bin_size="10ms")
    assert X.unit_ids == (6, 191, 206)
    assert X.storage.shape[1] == 24
    assert np.isfinite(X.to_numpy()).all()
    assert X.counts[X.valid].sum() > 10_000


def test_current_injection_design_respects_sweeps(current_injection_recording):
    X = design_matrix("spikes ~ filter(current, 8, window=200ms) + history(8, log, "
                      "window=100ms)", current_injection_recording, bin_size="1ms",
                      epochs="sweeps")
    assert X.to_numpy().shape == (9 * (20_000 - 200), 17)
    assert X.dropped["window"] == 9 * 200      # 200 ms filter window at 1 ms bins, per sweep
    assert np.isfinite(X.to_numpy()).all()
    assert int(X.counts[X.valid].sum()) > 1900
