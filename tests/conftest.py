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
