"""JAX's persistent compilation cache (``gf.config.compilation_cache``): a second Python process
fitting the same model loads its kernels from disk; the switches turn it off; a folder that
cannot be written never breaks a fit."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

config_module = importlib.import_module("glmformula.config")


CHILD = textwrap.dedent("""
    import json, os, sys, warnings
    warnings.simplefilter("always")
    import numpy as np, pynapple as nap
    import glmformula as gf
    setting = json.loads(sys.argv[1])
    if setting is not None:
        gf.config.compilation_cache = setting
    rng = np.random.default_rng(0)
    T, bs = 4000, 0.01
    t = (np.arange(T) + 0.5) * bs
    X = rng.standard_normal((T, 3))
    counts = rng.poisson(np.exp(X @ [0.2, -0.1, 0.3] + np.log(0.2)))
    data = {"y": nap.Ts(np.repeat(t, counts), time_support=nap.IntervalSet(0, T * bs)),
            "x": nap.TsdFrame(t=t, d=X, time_support=nap.IntervalSet(0, T * bs))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gf.fit("y ~ x", data, bin_size=bs)
    import jax
    print(json.dumps({"compile": res.compile_seconds, "coef": res.coef.values.ravel().tolist(),
                      "dir": jax.config.jax_compilation_cache_dir,
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, RuntimeWarning)]}))
""")


def run_child(env: dict, setting=None) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("JAX_COMPILATION_CACHE_DIR", config_module.CACHE_ENV,
                            "XDG_CACHE_HOME")}
    environ.update(env)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(setting)], env=environ,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def entries(folder) -> list:
    return sorted(p for p in os.listdir(folder) if not p.startswith(".")) \
        if os.path.isdir(folder) else []


def test_second_process_reads_the_cache(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    folder = tmp_path / "glmformula" / "jax"  # created: a clean machine has no cache folder
    first = run_child(env)
    assert first["dir"] == str(folder)
    assert first["warnings"] == []
    written = entries(folder)
    assert written, "the first process wrote no compiled kernels"
    second = run_child(env)
    assert second["coef"] == first["coef"]
    # loading from disk skips XLA's compilation; tracing and lowering remain
    assert second["compile"] < 0.5 * first["compile"], (first["compile"], second["compile"])
    assert set(written) <= set(entries(folder))


def test_environment_variable_turns_it_off(tmp_path):
    result = run_child({"XDG_CACHE_HOME": str(tmp_path), config_module.CACHE_ENV: "0"})
    assert result["dir"] is None
    assert not (tmp_path / "glmformula").exists()


def test_config_switch_off_and_folder(tmp_path):
    off = run_child({"XDG_CACHE_HOME": str(tmp_path)}, setting=False)
    assert off["dir"] is None and not (tmp_path / "glmformula").exists()
    folder = tmp_path / "elsewhere" / "cache"
    on = run_child({"XDG_CACHE_HOME": str(tmp_path)}, setting=str(folder))
    assert on["dir"] == str(folder) and entries(folder)
    assert not (tmp_path / "glmformula").exists()


def test_unwritable_folder_warns_once_and_fits(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # root may write anywhere, but not below a file
    result = run_child({"XDG_CACHE_HOME": str(blocker)})
    assert result["dir"] is None
    assert len(result["warnings"]) == 1 and "cannot be used" in result["warnings"][0]
    assert len(result["coef"]) == 3  # the fit ran


def test_folder_configured_in_jax_is_kept(tmp_path):
    mine = tmp_path / "users_jax_cache"
    result = run_child({"XDG_CACHE_HOME": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": str(mine)})
    assert result["dir"] == str(mine)
    assert not (tmp_path / "glmformula").exists()


@pytest.mark.parametrize("text, expected", [
    (None, True), ("", True), ("0", False), ("off", False), ("False", False), ("1", True),
    ("/some/folder", "/some/folder")])
def test_environment_values(monkeypatch, text, expected):
    if text is None:
        monkeypatch.delenv(config_module.CACHE_ENV, raising=False)
    else:
        monkeypatch.setenv(config_module.CACHE_ENV, text)
    assert config_module._cache_from_env() == expected


def test_default_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config_module.default_cache_dir() == str(tmp_path / "glmformula" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config_module.default_cache_dir() == os.path.join(
        os.path.expanduser("~"), ".cache", "glmformula", "jax")
