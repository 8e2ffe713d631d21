"""Comparisons on an executor (a real Dask LocalCluster, a process pool) equal the local run."""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import glmformula as gf

MODELS = {"null": "spikes ~ 1", "speed": "spikes ~ speed",
          "both": "spikes ~ onehot(position, 5) + speed"}


@pytest.fixture(scope="module")
def maze():
    return gf.datasets.linear_maze(seed=4, duration=300.0)


@pytest.fixture(scope="module")
def local(maze):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.compare(MODELS, maze, bin_size="20ms", epochs="run", cv=3)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.index) == list(b.index)
    numeric = a.select_dtypes("number").columns
    # Folds fitted in-process warm-start from the full fit, and a full fit from that of the
    # model nested in it; on workers they start cold, so the optima agree to the solvers'
    # tolerances, not bit for bit (REML stops at a gradient of 5e-7 |V|, as mgcv at 5e-6 |V|:
    # on this model edf ~7e-4 apart (7.6e-5 relative), bits/spike ~1.4e-6, log-likelihoods
    # ~3e-7 relative).
    assert np.allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=2e-4,
                       atol=1e-5, equal_nan=True)


def test_dask_local_cluster_equals_local(maze, local):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        table = gf.compare(MODELS, maze, bin_size="20ms", epochs="run", cv=3, executor=client)
    _assert_same(local, table)


def test_process_pool_equals_local(maze, local):
    import multiprocessing
    # "spawn": forking a process that has started JAX's threads can deadlock.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        table = gf.compare(MODELS, maze, bin_size="20ms", epochs="run", cv=3, executor=pool)
    _assert_same(local, table)
    # each model's time: the sum of its tasks' on the workers
    assert list(table.attrs["seconds"].index) == list(MODELS)
    assert (table.attrs["seconds"] > 0).all()


class _Flaky:
    """An executor whose every first submission of a task fails (to exercise the retry)."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(1)
        self.seen = set()

    def submit(self, fn, *args):
        key = args[-2:]
        if key not in self.seen:
            self.seen.add(key)
            return self.pool.submit(_boom)
        return self.pool.submit(fn, *args)


def _boom():
    raise RuntimeError("worker lost")


def test_failed_tasks_are_retried(maze, local):
    table = gf.compare(MODELS, maze, bin_size="20ms", epochs="run", cv=3, executor=_Flaky())
    _assert_same(local, table)
