"""Run the (model, fold) fits of a comparison on an executor: any
``concurrent.futures.Executor`` or a ``dask.distributed.Client`` (a lab's Dask cluster, an HPC
queue through dask-jobqueue). No scheduler of our own: the executor does the scheduling.

Each worker process builds the shared feature graph once per comparison (cached by a token)
and serves every task of that comparison from it. A failed task is retried once and then
reported by model and fold; nothing goes missing silently.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Executor, as_completed

from ..errors import FitError
from .comparison import Comparison

#: Per worker process: comparison token -> Comparison (the feature graph and designs).
_WORKER_CACHE: dict = {}
_MAX_CACHED = 4


def _worker_comparison(token, formulas, data, options):
    if token not in _WORKER_CACHE:
        while len(_WORKER_CACHE) >= _MAX_CACHED:
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))
        # no nested starts: a worker holds whichever fits it happened to run, and the answer
        # must not depend on the schedule
        _WORKER_CACHE[token] = Comparison(formulas, data, **options, nested_starts=False)
    return _WORKER_CACHE[token]


def run_task(token, formulas, data, options, name, fold):
    """Worker entry point: one (model, fold) fit, its scores as plain arrays."""
    return _worker_comparison(token, formulas, data, options).run_task(name, fold)


def _executor_of(executor) -> Executor:
    if hasattr(executor, "get_executor"):  # dask.distributed.Client
        return executor.get_executor()
    if not hasattr(executor, "submit"):
        raise FitError(f"executor must be a concurrent.futures.Executor or a Dask Client, not "
                       f"{type(executor).__name__}", hint="e.g. executor=ProcessPoolExecutor(2)")
    return executor


def run_distributed(executor, formulas: dict, data, options: dict, progress: bool) -> dict:
    """Outputs of every (model, fold) task, computed on ``executor``."""
    pool = _executor_of(executor)
    token = uuid.uuid4().hex
    data = {name: data[name] for name in data.keys()}  # plain dict: picklable for any executor
    if hasattr(executor, "scatter"):  # ship the data to the Dask workers once, not per task
        data = executor.scatter([data], broadcast=True)[0]
    folds = options["cv"] or 0
    tasks = [(name, fold) for name in formulas for fold in range(-1, folds)]
    outputs, attempts = {}, {task: 0 for task in tasks}
    pending = {pool.submit(run_task, token, formulas, data, options, *task): task
               for task in tasks}
    failures = []
    bar = _bar(len(tasks), progress)
    while pending:
        for future in as_completed(list(pending)):
            task = pending.pop(future)
            try:
                outputs[task] = future.result()
                bar(1)
            except Exception as err:  # noqa: BLE001 - retried once, then reported
                attempts[task] += 1
                if attempts[task] <= 1:
                    pending[pool.submit(run_task, token, formulas, data, options, *task)] = task
                else:
                    failures.append(f"model {task[0]!r}, fold {task[1] if task[1] >= 0 else 'all'}"
                                    f": {type(err).__name__}: {err}")
            break  # re-enter as_completed with the retried futures included
    bar(None)
    if failures:
        raise FitError("some fits of the comparison failed (after one retry):\n  " +
                       "\n  ".join(failures), hint="the message of each failure says why")
    return outputs


def _bar(total: int, enabled: bool):
    if not enabled:
        return lambda step: None
    from rich.progress import Progress
    progress = Progress(transient=True)
    progress.start()
    job = progress.add_task("fits (model x fold)", total=total)

    def advance(step):
        if step is None:
            progress.stop()
        else:
            progress.advance(job, step)
    return advance


def dask_executor(*, address: str | None = None, workers: int | None = None):
    """A Dask client: connected to ``address``, or a local cluster of ``workers`` processes."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise FitError("Dask is not installed", hint="pip install 'glmformula[dask]'") from None
    if address:
        return Client(address)
    cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    original_close = client.close

    def close(*args, **kwargs):
        original_close(*args, **kwargs)
        cluster.close()
    client.close = close
    return client
