"""Host arrays that JAX's CPU client can use in place."""

from __future__ import annotations

import mmap
import sys
import threading

import numpy as np

#: Bytes: the alignment XLA's CPU client needs to use a host buffer without copying it.
ALIGNMENT = 64

#: Large buffers from malloc's heap once it keeps freed memory (False: always mapped; a
#: switch for measurements).
LARGE_FROM_HEAP = True

#: Bytes: buffers at least this large are mapped from the operating system directly (see
#: :func:`aligned_zeros`).
MAPPED_FROM = 4 * 2**20


def aligned_zeros(shape, dtype) -> np.ndarray:
    """``np.zeros(shape, dtype)`` whose data start on a :data:`ALIGNMENT`-byte boundary.

    numpy aligns to 16 bytes; a design allocated this way reaches the solver without the
    copy that would otherwise double its memory (6.6 GB for 200 coupled units x 1e6 bins).

    Buffers of at least :data:`MAPPED_FROM` bytes never come from numpy: on Linux numpy
    advises the kernel to back its large allocations by huge pages (``MADV_HUGEPAGE``), and
    where the kernel then compacts memory synchronously to find them
    (``transparent_hugepage/defrag`` = ``madvise``, the usual default) the first writes into
    fresh memory can stall for seconds: 4.6 s to fill a fresh 390 MB buffer against 0.21 s
    without the advice (the real coupled model's fold copy took 3.1 s instead of 0.05 s;
    docs/performance_decisions.md, 'Memory the fits write'). Once ``malloc`` keeps freed
    memory (:func:`setup_allocator`) they come from its heap (a ``bytearray``), where the
    memory of the previous design or fold copy is reused without faulting pages in again;
    otherwise they are anonymous memory maps, which ``tracemalloc`` does not see.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    size = count * dtype.itemsize
    if size >= MAPPED_FROM and not (_allocator_kept and LARGE_FROM_HEAP):
        # the array keeps the map alive (its base); unmapped when the last view goes
        return np.frombuffer(_mapped(size), dtype, count).reshape(shape)
    # small: numpy gives no advice below 4 MB; large: from malloc's heap, no advice either
    buffer = np.frombuffer(bytearray(size + ALIGNMENT), np.uint8) if size >= MAPPED_FROM \
        else np.zeros(size + ALIGNMENT, np.uint8)
    start = (-buffer.ctypes.data) % ALIGNMENT
    return buffer[start:start + size].view(dtype).reshape(shape)


def _mapped(size: int) -> mmap.mmap:
    """``size`` bytes of zeroed anonymous memory, its pages made present at once where the
    platform can (``MAP_POPULATE``: one call instead of a fault per 4 kB page, 0.18 against
    0.34 s for 390 MB; the buffers are written whole anyway)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate:
        try:
            return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        except OSError:  # pragma: no cover - e.g. a kernel without it
            pass
    return mmap.mmap(-1, size)


#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for the process's next allocations, for the
    rest of the process; returns whether it did (False: not glibc).

    By default glibc gives every allocation above 32 MB its own fresh mapping and returns it
    to the system when freed, so each execution of a compiled solver whose temporaries take
    hundreds of MB (XLA allocates them per call: 348 MB for the real coupled model's loop),
    each transposed copy and each (rows, units) result are written into new pages, one page
    fault per 4 kB, and freed pages at the top of each heap are trimmed and faulted in again.
    With ``M_MMAP_MAX = 0`` large blocks come from the heap and with an unlimited
    ``M_TRIM_THRESHOLD`` freed memory stays there for reuse: the real coupled model's
    comparison made 2.0 instead of 3.1-3.3 million page faults, 5.2-5.7 instead of 9.1-10.4
    s of system time, and took 30.8 / 33.2 s instead of 35.0 / 36.6 s
    (docs/performance_decisions.md, 'Memory the fits write'). The process's resident
    memory then stays at its peak instead of shrinking after a fit.
    """
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
        gnu = getattr(libc, "gnu_get_libc_version", None)
    except OSError:  # pragma: no cover - no C library to load
        return False
    if mallopt is None or gnu is None:  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


_allocator_lock = threading.Lock()
_allocator_kept: bool | None = None  # None: not set up yet


def setup_allocator(keep: bool) -> bool:
    """Apply ``gf.config.keep_freed_memory`` (``keep``) once per process: called before
    glmformula builds a design or runs a compiled kernel, cheap after the first call.
    Returns whether ``malloc`` keeps freed memory at glmformula's request. Inside a dask
    worker it is left alone."""
    global _allocator_kept
    if _allocator_kept is None:
        with _allocator_lock:
            if _allocator_kept is None:
                _allocator_kept = bool(keep) and not _in_dask_worker() and keep_freed_memory()
    return _allocator_kept


def _in_dask_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except Exception:  # ValueError outside a worker; anything else: not a worker we know
        return False
    return True
