"""Event kernels: ``filter(events, k, window=..., start=...)`` on a Ts or one train of a TsGroup.

The filters cover lags ``start + 1 ... start + window`` bins; ``start < 0`` reads the bins after
each output bin (the time before an event). Checked here: the convolution against the
definition written out, that no row reads an event from another epoch (three epochs, events in
the middle one only), that rows whose window would reach past their epoch's end are dropped,
that an anticipatory kernel is recovered, and the refusals (history and coupling stay causal).
"""

from __future__ import annotations

import warnings

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf
from glmformula.bases import causal_filters
from glmformula.graph.convolution import causal_convolve, lagged_convolve
from glmformula.graph.design import build, iter_blocks, prepare

BIN = 0.01  # s


def lagged_reference(signal, kernels, segments, first_lag):
    """The definition index by index: row t sums kernels[j] * signal[t - first_lag - j] over
    rows of its own segment; NaN where the window would read past the segment's end."""
    n_rows, n_channels = signal.shape
    width, n_filters = kernels.shape
    out = np.zeros((n_rows, n_channels * n_filters))
    for start, stop in segments:
        for t in range(start, stop):
            if t - first_lag >= stop:  # the latest row read, t - first_lag, is past the end
                out[t] = np.nan
                continue
            for c in range(n_channels):
                for k in range(n_filters):
                    for j in range(width):
                        source = t - first_lag - j
                        if start <= source < stop:
                            out[t, c * n_filters + k] += kernels[j, k] * signal[source, c]
    return out


@pytest.mark.parametrize("first_lag", [-6, -3, -1, 0, 1, 4])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_lagged_convolve_is_the_definition(first_lag, method):
    rng = np.random.default_rng(3)
    signal = rng.poisson(0.4, (120, 2)).astype(float)
    segments = np.array([[0, 40], [40, 43], [50, 120]])  # touching, a short one, a gap
    kernels = causal_filters(5, 3, log=False)
    got = lagged_convolve(signal, kernels, segments, first_lag=first_lag, dtype=np.float64,
                          method=method)
    expected = lagged_reference(signal, kernels, segments, first_lag)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.allclose(np.nan_to_num(got), np.nan_to_num(expected), atol=1e-12)
    assert np.all(got[43:50] == 0)  # rows in no segment


def test_first_lag_one_is_the_causal_convolution():
    signal = np.random.default_rng(0).poisson(0.5, (200, 3)).astype(float)
    segments = np.array([[0, 90], [90, 200]])
    kernels = causal_filters(8, 4)
    assert np.array_equal(lagged_convolve(signal, kernels, segments, first_lag=1),
                          causal_convolve(signal, kernels, segments))


def _three_epochs(event_times, units=None):
    """A unit firing at 5 Hz over [0, 30) s and events, fitted on three epochs of 999 bins
    whose rows follow each other on the grid (9.99 s each, 10 ms apart)."""
    rng = np.random.default_rng(7)
    support = nap.IntervalSet(0.0, 30.0)
    spikes = nap.TsGroup({0: nap.Ts(np.sort(rng.uniform(0, 30, 150)))}, time_support=support)
    epochs = nap.IntervalSet([0.0, 10.0, 20.0], [9.99, 19.99, 29.99])
    if units is None:
        events = nap.Ts(t=np.asarray(event_times, float), time_support=support)
    else:
        events = nap.TsGroup({u: nap.Ts(t=np.asarray(t, float)) for u, t in units.items()},
                             time_support=support)
    return {"spikes": spikes, "events": events, "ep": epochs}


KERNEL = "filter(events, 4, window=150ms, log=False, start=-50ms)"  # lags -4 ... 10 bins


def test_no_row_reads_an_event_from_another_epoch():
    # events only in epoch 2, up to its very first and last bins (rows next to both borders)
    times = [10.0, 10.004, 10.5, 13.0, 15.0, 19.5, 19.985]
    data = _three_epochs(times)
    prepared = prepare(f"spikes ~ {KERNEL}", data, bin_size=BIN, epochs="ep")
    X = build(prepared)
    grid = X.grid
    node = X.plan.terms[0].node
    values = X.graph.evaluate(node)                     # every row, dropped ones included
    epoch = grid.epoch_of_row
    # exactly zero up to both borders (the last rows of each epoch are unknown: NaN)
    assert np.all(np.nan_to_num(values[epoch != 1]) == 0.0)
    assert np.all(X.storage[epoch != 1] == 0.0)
    inside = values[epoch == 1]
    assert np.abs(np.nan_to_num(inside)).sum() > 0     # the events are read where they are
    # the window reads 4 bins ahead: the last 4 rows of every epoch are unknown and dropped
    # ("missing"); the first 10 (the past reaches 10 bins back) by the window rule
    position, length = grid.row_in_epoch, grid.bins_per_epoch[epoch]
    tail = position >= length - 4
    assert np.all(np.isnan(values[tail])) and np.all(np.isfinite(values[~tail]))
    assert not X.valid[tail].any() and not X.valid[position < 10].any()
    assert X.valid[(position >= 10) & ~tail].all()
    assert X.dropped == {"window": 10 * 3, "missing": 4 * 3}
    assert node.lead == 10 and list(node.lags()) == list(range(-4, 11))


def test_events_of_the_other_epochs_never_reach_the_middle_one():
    # the mirror case: events right up to the borders of epoch 2, but outside it
    data = _three_epochs([0.5, 9.96, 9.985, 20.0, 20.004, 25.0])
    X = build(prepare(f"spikes ~ {KERNEL}", data, bin_size=BIN, epochs="ep"))
    values = X.graph.evaluate(X.plan.terms[0].node)
    middle = X.grid.epoch_of_row == 1
    assert np.all(np.nan_to_num(values[middle]) == 0.0)
    assert np.abs(np.nan_to_num(values[~middle])).sum() > 0


def test_event_kernel_values_are_the_definition_on_the_grid():
    rng = np.random.default_rng(2)
    data = _three_epochs(np.sort(rng.uniform(0, 30, 120)))
    X = build(prepare(f"spikes ~ {KERNEL}", data, bin_size=BIN, epochs="ep"))
    grid = X.grid
    counts = grid.count(np.asarray(data["events"].t))[:, None].astype(float)
    expected = lagged_reference(counts, causal_filters(15, 4, log=False), grid.segments, -4)
    got = X.graph.evaluate(X.plan.terms[0].node)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.allclose(np.nan_to_num(got), np.nan_to_num(expected), atol=1e-12)


@pytest.mark.parametrize("kernel", [KERNEL, "filter(events, 3, window=60ms, start=30ms)",
                                    "filter(events, 3, window=40ms, log=False, start=-90ms)"])
def test_blocks_equal_the_full_design(kernel):
    rng = np.random.default_rng(4)
    data = _three_epochs(np.sort(rng.uniform(0, 30, 300)))
    prepared = prepare(f"spikes ~ {kernel}", data, bin_size=BIN, epochs="ep")
    full = build(prepared)
    blocks = list(iter_blocks(prepared, 377))  # block edges inside epochs and windows
    assert np.array_equal(np.concatenate([b.valid for b in blocks]) > 0, full.valid)
    assert np.allclose(np.concatenate([b.X for b in blocks]), full.storage, atol=1e-12)


def test_a_delayed_kernel_is_the_causal_one_shifted():
    rng = np.random.default_rng(5)
    data = _three_epochs(np.sort(rng.uniform(0, 30, 200)))
    delayed = build(prepare("spikes ~ filter(events, 3, window=60ms, start=30ms)", data,
                            bin_size=BIN, epochs="ep"))
    causal = build(prepare("spikes ~ filter(events, 3, window=60ms)", data, bin_size=BIN,
                           epochs="ep"))
    d = delayed.graph.evaluate(delayed.plan.terms[0].node)
    c = causal.graph.evaluate(causal.plan.terms[0].node)
    for start, stop in delayed.grid.segments:   # row t of the delayed is row t - 3 of the causal
        assert np.allclose(d[start + 9:stop], c[start + 6:stop - 3])
    assert delayed.plan.lead == 9 and delayed.dropped["missing"] == 0


def test_one_train_of_a_tsgroup_equals_the_same_ts():
    rng = np.random.default_rng(6)
    train = np.sort(rng.uniform(0, 30, 100))
    group = _three_epochs(None, units={2: np.sort(rng.uniform(0, 30, 50)), 5: train})
    single = _three_epochs(train)
    a = build(prepare(f"spikes ~ {KERNEL.replace('events', 'events[5]')}", group,
                      bin_size=BIN, epochs="ep"))
    b = build(prepare(f"spikes ~ {KERNEL}", single, bin_size=BIN, epochs="ep"))
    assert np.array_equal(a.storage, b.storage) and np.array_equal(a.valid, b.valid)
    assert a.plan.storage_columns[0] == ("filter(events[5], 4, window=150ms, log=False, "
                                         "start=-50ms)[0]")


def test_one_train_is_written_with_its_unit_id():
    from glmformula.syntax import ast
    from glmformula.syntax.parser import parse_syntax
    call = parse_syntax("y ~ filter(ev[3], 4)").rhs
    assert call.args[0] == ast.IndexedWord("ev", 3, 12)
    for text, words in (("y ~ filter(ev[1.5], 4)", "a unit id must be an integer"),
                        ("y ~ filter(ev[[1, 2]], 4)", r"unexpected '\['")):
        with pytest.raises(gf.FormulaSyntaxError, match=words):
            gf.parse(text)


def test_canonical_text():
    f = gf.parse("spikes ~ filter(events, 8, window=300ms, log=False, start=-100ms) "
                 "+ filter(ev[3], 6, window=200ms, start=0ms) + filter(current, 8)")
    assert f.terms == ("filter(events, 8, window=300ms, log=False, start=-100ms)",
                       "filter(ev[3], 6, window=200ms, log=True)",   # start=0ms: the default
                       "filter(current, 8, window=100ms, log=True)")
    assert gf.parse(f"spikes ~ {f.terms[0]}").terms == (f.terms[0],)


def anticipatory_unit(seed=0, duration=900.0):
    """A unit at 8 Hz whose rate rises before each event and dips after it (truth known).

    Events at random times (a Ts); rate in bin t = exp(b + sum_L kernel[L] * events[t - L]),
    L = -15 ... 30 bins of 10 ms: a bump 60 ms before the event, a dip 150 ms after it.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration / BIN))
    lags = np.arange(-15, 31)
    seconds = lags * BIN
    kernel = (1.0 * np.exp(-0.5 * ((seconds + 0.06) / 0.04) ** 2)
              - 0.7 * np.exp(-0.5 * ((seconds - 0.15) / 0.05) ** 2))
    event_times = np.sort(rng.uniform(1.0, duration - 1.0, int(duration * 0.8)))
    events = np.bincount(np.floor(event_times / BIN).astype(int), minlength=n)[:n]
    drive = np.zeros(n)
    for lag, weight in zip(lags, kernel):
        drive += weight * np.roll(events, lag)  # events[t - lag] (no event near the ends)
    counts = rng.poisson(np.exp(np.log(8.0 * BIN) + drive))
    spike_times = np.repeat((np.arange(n) + 0.5) * BIN, counts)
    support = nap.IntervalSet(0.0, duration)
    data = {"spikes": nap.TsGroup({0: nap.Ts(spike_times)}, time_support=support),
            "events": nap.Ts(t=event_times, time_support=support)}
    return data, seconds, kernel


def test_an_anticipatory_kernel_is_recovered():
    data, seconds, kernel = anticipatory_unit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", gf.ConvergenceWarning)
        res = gf.fit("spikes ~ filter(events, 12, window=450ms, log=False, start=-150ms)", data,
                     bin_size="10ms")
    curve = res.curve("events", scale="log")
    lags = curve.index.to_numpy(float)
    assert np.isclose(lags[0], -0.14) and np.isclose(lags[-1], 0.30) and (lags < 0).sum() == 14
    estimate = curve[(0, "estimate")].to_numpy()
    truth = np.interp(lags, seconds, kernel)
    r = np.corrcoef(estimate, truth)[0, 1]
    print(f"anticipatory kernel: r = {r:.4f} over lags {lags[0]:+.2f} ... {lags[-1]:+.2f} s")
    assert r > 0.95
    # the peak before the event is found before it, within 30 ms of the truth
    assert -0.09 <= lags[np.argmax(estimate)] <= -0.03


def test_a_blocked_fit_equals_the_fit_in_memory():
    data, _, _ = anticipatory_unit(seed=3, duration=120.0)
    formula = "spikes ~ filter(events, 6, window=300ms, log=False, start=-100ms)"
    # smoothing=None: strengths are not chosen from the data in blocked fits (yet)
    whole = gf.fit(formula, data, bin_size="10ms", chunk_size=0, tol=1e-10, smoothing=None)
    blocks = gf.fit(formula, data, bin_size="10ms", chunk_size=2500, tol=1e-10,
                    smoothing=None)
    assert whole.n_rows == blocks.n_rows
    assert np.allclose(whole.coef, blocks.coef, rtol=1e-7, atol=1e-9)


def test_predict_and_simulate_use_the_same_rows():
    data, _, _ = anticipatory_unit(seed=1, duration=120.0)
    res = gf.fit("spikes ~ filter(events, 6, window=300ms, log=False, start=-100ms)", data,
                 bin_size="10ms")
    rate = res.predict(data)
    design = res.design(data)
    assert len(rate) == int(design.valid.sum())
    simulated = res.simulate(data, seed=0)   # counts on the same rows
    assert np.allclose(simulated.t, rate.t) and simulated.values.sum() > 0


def test_a_saved_event_kernel_reads_back(tmp_path):
    data, _, _ = anticipatory_unit(seed=2, duration=120.0)
    formula = "spikes ~ filter(events, 6, window=300ms, log=False, start=-100ms)"
    res = gf.fit(formula, data, bin_size="10ms")
    res.save(tmp_path / "kernel")
    loaded = gf.load_result(next(tmp_path.iterdir()))
    assert loaded.formula.terms == res.formula.terms
    assert loaded.curve("events").equals(res.curve("events"))
    assert np.allclose(loaded.predict(data).values, res.predict(data).values)


@pytest.mark.parametrize("formula, error, words", [
    ("spikes ~ history(8, log, window=100ms, start=-20ms)", gf.TermArgumentError,
     ["history() has no 'start'", "strictly causal", "filter(events"]),
    ("spikes ~ coupling(all, start=-20ms)", gf.TermArgumentError,
     ["coupling() has no 'start'", "strictly causal", "filter(events"]),
    ("spikes ~ rcos(events[3], 5)", gf.TermArgumentError,
     ["unit selection events[3]", "only filter()"]),
    ("spikes ~ filter(events, 4, window=100ms, start=0)", gf.TermArgumentError,
     ["time unit"]),
])
def test_refused_at_parse_time(formula, error, words):
    with pytest.raises(error) as info:
        gf.parse(formula)
    text = str(info.value)
    for word in words:
        assert word in text, text


@pytest.mark.parametrize("kernel, words", [
    ("filter(events, 4, window=150ms, start=-50ms)",
     ["log-spaced filters", "log=False, start=-50ms)"]),
    ("filter(events, 4, window=150ms, log=False, start=-3ms)",
     ["shorter than one bin", "start=-10ms"]),
    ("filter(group, 4, window=150ms)", ["TsGroup of 2 trains", "filter(group[2], 4"]),
    ("filter(group[9], 4, window=150ms)", ["unit 9 is not in 'group'", "its units: 2, 5"]),
    ("filter(events[1], 4, window=150ms)", ["[1] selects one train of a TsGroup",
                                            "filter(events, 4, window=150ms, log=True)"]),
    ("filter(spikes[0], 4, window=150ms, log=False, start=-50ms)",
     ["the response 'spikes' cannot also be a covariate"]),
    ("rcos(group, 4)", ["holds spike trains", "filter(group[2], 8, window=300ms)"]),
    ("rcos(events, 4)", ["holds spike trains", "filter(events, 8, window=300ms)"]),
])
def test_refused_with_the_data(kernel, words):
    data = _three_epochs([12.0, 15.0])
    support = nap.IntervalSet(0.0, 30.0)
    data["group"] = nap.TsGroup({u: nap.Ts(t=np.array([t]), time_support=support)
                                 for u, t in ((2, 11.0), (5, 14.0))}, time_support=support)
    with pytest.raises(gf.FormulaError) as info:
        gf.design_matrix(f"spikes ~ {kernel}", data, bin_size=BIN, epochs="ep")
    text = str(info.value)
    for word in words:
        assert word in text, text
