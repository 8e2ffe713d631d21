"""Shared fixtures: small pynapple recordings and the location of the real datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pynapple as nap
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(folder: str) -> Path:
    """Path of a real recording in ../shared/data, or skip the test with a clear message."""
    path = SHARED_DATA / folder
    if not path.exists():
        pytest.skip(f"real recording {folder!r} not found at {path} (it lives in ../shared/data "
                    "beside the repository; this test runs where it is present)")
    return path


@pytest.fixture
def small_population():
    """Three Poisson units, a head angle and a speed over two disjoint epochs (seeded)."""
    rng = np.random.default_rng(1)
    spikes = nap.TsGroup({i: nap.Ts(np.sort(rng.uniform(0, 200, 1500 + 300 * i)))
                          for i in range(3)}, time_support=nap.IntervalSet(0, 200))
    hd = nap.Tsd(t=np.arange(0, 200, 0.025), d=np.mod(np.cumsum(rng.normal(0, 0.1, 8000)),
                                                        2 * np.pi))
    speed = nap.Tsd(t=np.arange(0, 200, 0.025), d=np.abs(rng.normal(10, 3, 8000)))
    epochs = nap.IntervalSet([0.0, 60.0, 130.0], [50.0, 120.0, 200.0])
    return {"spikes": spikes, "hd": hd, "speed": speed, "ep": epochs}


@pytest.fixture(scope="session")
def hd_recording():
    """The real ADn/PoS head-direction recording (Mouse28-140313), as its README loads it."""
    d = np.load(shared_data("hd_mouse28_140313") / "Mouse28-140313_wake_hd.npz")
    wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
    valid = nap.IntervalSet(d["valid_start"], d["valid_end"])
    spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                          for i in range(len(d["unit_ids"]))}, time_support=wake)
    angle = nap.Tsd(t=d["angle_t"], d=d["angle"], time_support=wake)
    return {"spikes": spikes, "head_direction": angle, "wake": wake, "valid": valid}


@pytest.fixture(scope="session")
def current_injection_recording():
    """The real current-clamp recording (Pozzorini 2015 cell 3), 9 sweeps as epochs."""
    d = np.load(shared_data("gif_cell3_noise") / "pozzorini2015_cell3_frozen_noise.npz")
    sweeps = nap.IntervalSet(start=d["sweep_start"], end=d["sweep_end"])
    current = nap.Tsd(t=d["current_t"], d=d["current"].astype(float), time_support=sweeps)
    spikes = nap.TsGroup({0: nap.Ts(d["spike_times"])}, time_support=sweeps)
    return {"spikes": spikes, "current": current, "sweeps": sweeps}


@pytest.fixture(scope="session")
def nwb_recording():
    """The real 3-unit NWB recording A8604 through pynapple.load_file (closed at the end of
    the session, not by the garbage collector)."""
    recording = nap.load_file(str(shared_data("pynapple_a8604") / "A8604-211122.nwb"))
    yield recording
    recording.close()
