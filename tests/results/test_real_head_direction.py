"""The real ADn/PoS head-direction recording: preferred directions from res.curve agree with
pynapple's tuning curves (skipped, with a message, where ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pynapple as nap

import glmformula as gf


def test_preferred_directions_agree_with_pynapple(hd_recording):
    data = {"spikes": hd_recording["spikes"], "head_direction": hd_recording["head_direction"],
            "valid": hd_recording["valid"]}
    res = gf.fit("spikes ~ cyclic(head_direction, 12)", data, bin_size="25ms", epochs="valid")
    assert res.converged
    curve = res.curve("head_direction", n_points=360)
    grid = curve.index.to_numpy(float)
    tuning = nap.compute_tuning_curves(hd_recording["spikes"], hd_recording["head_direction"],
                                       bins=36, range=(0, 2 * np.pi),
                                       epochs=hd_recording["valid"], return_pandas=True)
    centres = tuning.index.to_numpy(float)
    errors = {}
    for unit in res.unit_ids:
        rate = tuning[unit].to_numpy(float)
        length = np.abs(np.sum(rate * np.exp(1j * centres))) / np.sum(rate)
        if length <= 0.3:  # no clear peak
            continue
        glm_peak = grid[np.argmax(curve[(unit, "estimate")].to_numpy())]
        nap_peak = centres[np.argmax(rate)]
        errors[unit] = np.degrees(np.abs(np.angle(np.exp(1j * (glm_peak - nap_peak)))))
    print(f"{len(errors)} of {len(res.unit_ids)} units with mean vector length > 0.3; "
          f"largest preferred-direction difference {max(errors.values()):.1f} deg")
    assert len(errors) >= 20
    assert max(errors.values()) <= 15.0
