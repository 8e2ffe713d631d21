"""A population fit sharded over several (CPU) JAX devices equals the single-device fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, warnings, numpy as np, jax, glmformula as gf
warnings.simplefilter("ignore")
data = gf.datasets.head_direction(n_units=5, duration=300.0, seed=5)
f = "spikes ~ cyclic(head_direction, 8) + history(3, log, window=60ms) + coupling(all)"
res = gf.fit(f, data, bin_size="10ms", epochs="wake", regularizer=gf.Ridge(1e-4))
print(json.dumps({"devices": len(jax.devices()), "weights": res.weights.tolist(),
                  "intercepts": res.intercepts.tolist(),
                  "se": np.nan_to_num(res.standard_errors().to_numpy()).tolist()}))
"""


def _run(n_devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
               PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_devices_equal_one():
    one, two = _run(1), _run(2)
    assert one["devices"] == 1 and two["devices"] == 2
    w1, w2 = np.array(one["weights"]), np.array(two["weights"])
    assert np.max(np.abs(w1 - w2)) / np.max(np.abs(w1)) < 1e-8
    assert np.allclose(one["intercepts"], two["intercepts"], rtol=1e-8)
    assert np.allclose(one["se"], two["se"], rtol=1e-6)
