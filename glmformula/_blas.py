"""BLAS held to one thread around small or long-and-thin products (threadpoolctl).

Multithreaded OpenBLAS ran such products many times slower than one thread whenever other
processes wanted the cores (a 50 x 50 ``eigh`` in 18 ms instead of 0.2 ms, long thin products
10x slower: docs/performance_decisions.md, 'BLAS held to one thread on the direct path'). Without
``threadpoolctl`` BLAS threads as the library is configured.
"""

from __future__ import annotations

import contextlib
import threading


class BlasThreads:
    """Holds BLAS to one thread while any caller asks it to.

    Reference-counted, so that overlapping calls from several threads restore the
    library's own setting only when the last one ends. The controller (which finds
    the loaded BLAS libraries, the slow part) is made once; setting a limit is then cheap.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._controller = None
        self._looked = False
        self._depth = 0
        self._limiter = None

    def available(self) -> bool:
        with self._lock:
            if not self._looked:
                self._looked = True
                try:
                    import threadpoolctl

                    controller = threadpoolctl.ThreadpoolController()
                    if controller.select(user_api="blas").lib_controllers:
                        self._controller = controller
                except Exception:  # not installed, or no BLAS it knows
                    self._controller = None
            return self._controller is not None

    @contextlib.contextmanager
    def one_thread(self):
        with self._lock:
            if self._depth == 0:
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


#: The one instance every caller shares (its count spans them all).
BLAS = BlasThreads()


def one_blas_thread():
    """A context holding BLAS to one thread; a no-op without ``threadpoolctl``."""
    return BLAS.one_thread() if BLAS.available() else contextlib.nullcontext()


__all__ = ["BlasThreads", "BLAS", "one_blas_thread"]
