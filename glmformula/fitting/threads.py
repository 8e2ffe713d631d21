"""Independent pieces of work on threads: groups of units solved on their own columns, the
folds of a comparison.

The compiled kernels of a small problem (a unit's 20 columns) keep about one core busy, and a
fit's host-side algebra (REML's search on the strengths) runs on one core too, so independent
problems side by side fill the others. Every piece's answer is the same as alone. Warnings
issued in a piece are collected (:func:`.errors.deferred_warnings`: the warning filters and
``catch_warnings`` are process-wide, and a warning should point at the user's line, which only
the calling thread's stack has) and issued again from the calling thread, in the order of the
pieces.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from ..config import config
from ..errors import deferred_warnings, reissue

#: The threads the work running now may use (None: ``gf.config.threads``): pieces run on
#: threads share their caller's, so that nested pieces (a fold's groups of units) do not
#: multiply them.
_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "glmformula_thread_budget", default=None)


def available_threads() -> int:
    """The threads the work running now may use (at least 1)."""
    budget = _BUDGET.get()
    return max(int(config.threads if budget is None else budget), 1)


def workers_for(n_items: int, item_bytes: int = 0) -> int:
    """How many of ``n_items`` pieces :func:`map_on_threads` runs at once: at most
    :func:`available_threads`, and fewer where that many pieces' ``item_bytes`` each would
    pass half of ``gf.config.memory_limit``."""
    workers = min(n_items, available_threads())
    if item_bytes:
        workers = min(workers, max(1, config.memory_limit // (2 * item_bytes)))
    return max(workers, 1)


def map_on_threads(task, items: list, item_bytes: int = 0) -> list:
    """``task(item)`` for every item, results in order, :func:`workers_for` at a time on
    threads; each task may use its share of the threads in turn. An exception in a task
    reaches the caller (the other tasks finish first)."""
    budget = available_threads()
    workers = workers_for(len(items), item_bytes)
    if workers <= 1:
        return [task(item) for item in items]

    def run(item):
        _BUDGET.set(max(budget // workers, 1))
        with deferred_warnings() as records:
            return task(item), records

    results = []
    with ThreadPoolExecutor(workers) as pool:
        # each task in a copy of the caller's context (warning context, deferral, budget)
        futures = [pool.submit(contextvars.copy_context().run, run, item) for item in items]
        for future in futures:
            value, records = future.result()
            reissue(records)
            results.append(value)
    return results


__all__ = ["map_on_threads", "workers_for", "available_threads"]
