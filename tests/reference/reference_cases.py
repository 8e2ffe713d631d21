"""The fits whose values are kept as references (see make_reference.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pynapple as nap

import glmformula as gf

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

CASES = {
    "readme": {
        "formula": "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms)",
        # values saved before smoothness penalties existed: the same fits without them
        "fit": {"smoothing": None, "bin_size": "10ms", "epochs": "wake",
                "regularizer": gf.Ridge(1e-4), "tol": 1e-10},
        "curves": ["head_direction", "history"],
        "compare": {"hd": "spikes ~ cyclic(head_direction, 12)",
                    "hd+hist": "spikes ~ cyclic(head_direction, 12) + history(8)"},
        "save": True,
    },
    "head_direction_real": {
        "formula": "spikes[[0, 5, 17, 20]] ~ cyclic(head_direction, 12) "
                   "+ history(8, log, window=100ms) + coupling(all)",
        "fit": {"smoothing": None, "bin_size": "10ms", "epochs": "valid",
                "regularizer": gf.Ridge(3e-4), "tol": 1e-10},
        "curves": ["head_direction", "coupling"],
    },
    "current_injection_real": {
        "formula": "spikes ~ filter(current, 8, window=200ms) + history(8, log, window=100ms)",
        "fit": {"smoothing": None, "bin_size": "1ms", "epochs": "sweeps", "tol": 1e-10},
        "curves": ["filter", "history"],
    },
    "nwb_real": {
        "formula": "units ~ history(8, log, window=100ms) + coupling(all)",
        "fit": {"smoothing": None, "bin_size": "10ms", "regularizer": gf.Ridge(1e-4),
                "tol": 1e-10},
        "curves": ["history"],
    },
}


def load_case(name: str):
    """The data of a case: the simulation, or a real recording (None when it is absent)."""
    if name == "readme":
        return gf.datasets.head_direction(n_units=4, duration=300.0)
    if name == "head_direction_real":
        path = SHARED_DATA / "hd_mouse28_140313" / "Mouse28-140313_wake_hd.npz"
        if not path.exists():
            return None
        d = np.load(path)
        wake = nap.IntervalSet(d["wake_start"], d["wake_end"])
        valid = nap.IntervalSet(d["valid_start"], d["valid_end"])
        spikes = nap.TsGroup({i: nap.Ts(d["spike_times"][d["spike_unit"] == i])
                              for i in range(len(d["unit_ids"]))}, time_support=wake)
        angle = nap.Tsd(t=d["angle_t"], d=d["angle"], time_support=wake)
        return {"spikes": spikes, "head_direction": angle, "wake": wake, "valid": valid}
    if name == "current_injection_real":
        path = SHARED_DATA / "gif_cell3_noise" / "pozzorini2015_cell3_frozen_noise.npz"
        if not path.exists():
            return None
        d = np.load(path)
        sweeps = nap.IntervalSet(start=d["sweep_start"], end=d["sweep_end"])
        current = nap.Tsd(t=d["current_t"], d=d["current"].astype(float), time_support=sweeps)
        spikes = nap.TsGroup({0: nap.Ts(d["spike_times"])}, time_support=sweeps)
        return {"spikes": spikes, "current": current, "sweeps": sweeps}
    if name == "nwb_real":
        path = SHARED_DATA / "pynapple_a8604" / "A8604-211122.nwb"
        if not path.exists():
            return None
        return nap.load_file(str(path))
    raise KeyError(name)
