"""Host buffers that XLA's CPU client reads in place (``glmformula._memory``): aligned, zero,
writable, shared with the device array without a copy, small ones from numpy and large ones
mapped from the operating system (no huge-page advice, see ``aligned_zeros``)."""

from __future__ import annotations

import gc
import mmap

import jax
import numpy as np
import pytest

from glmformula import _memory
from glmformula._memory import ALIGNMENT, MAPPED_FROM, aligned_zeros
from glmformula.backend.problem import to_device


def _owner(a: np.ndarray):
    """The object that owns ``a``'s memory (through views and memoryviews)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


@pytest.mark.parametrize("kept", [False, True], ids=["malloc as it is", "malloc keeps"])
@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float64), ((1000, 700), np.float64),
                                          ((2100, 500), np.float32), ((0, 4), np.float64)],
                         ids=["small", "large", "large float32", "empty"])
def test_a_buffer_is_zero_aligned_writable_and_read_in_place(monkeypatch, kept, shape, dtype):
    """Large buffers never come from numpy (no huge-page advice): from malloc's heap once it
    keeps freed memory, else mapped from the system."""
    monkeypatch.setattr(_memory, "_allocator_kept", kept)
    a = aligned_zeros(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert not a.any() and (a.ctypes.data % ALIGNMENT == 0 or not a.size)
    large = a.nbytes >= MAPPED_FROM
    owner = _owner(a)
    assert isinstance(owner, mmap.mmap) == (large and not kept)
    assert isinstance(owner, bytearray) == (large and kept)
    if a.size:
        a[-1, -1] = 2.5
        with jax.enable_x64(True):
            device = to_device(a, a.dtype)
            assert device.unsafe_buffer_pointer() == a.ctypes.data  # no copy
            assert float(device[-1, -1]) == 2.5


@pytest.mark.parametrize("kept", [False, True], ids=["mapped", "heap"])
def test_a_large_buffer_lives_as_long_as_a_view_of_it(monkeypatch, kept):
    monkeypatch.setattr(_memory, "_allocator_kept", kept)
    a = aligned_zeros((MAPPED_FROM // 8 + 64,), np.float64)
    a[100:] = np.arange(a.size - 100)
    view = a[100:]
    del a
    gc.collect()
    np.testing.assert_array_equal(view[:5], np.arange(5.0))


def test_a_platform_without_populate_still_maps(monkeypatch):
    monkeypatch.setattr(_memory, "_allocator_kept", False)
    monkeypatch.delattr(mmap, "MAP_POPULATE", raising=False)
    a = _memory.aligned_zeros((MAPPED_FROM // 8,), np.float64)
    assert isinstance(_owner(a), mmap.mmap) and not a.any()


_REFAULTS = """
import resource, sys
import numpy as np
from glmformula._memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
a = np.ones(200 * 2**20 // 8)  # 200 MB through malloc
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(200 * 2**20 // 8)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(mode: str) -> tuple[bool, int]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _REFAULTS, mode], capture_output=True,
                         text=True, check=True, env={"NUMPY_MADVISE_HUGEPAGE": "0",
                                                     "PATH": ""}).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_memory_is_reused_without_faulting_its_pages_in_again():
    """With glibc, a 200 MB block freed and allocated again is written without page faults
    once ``malloc`` keeps freed memory (51,200 faults of 4 kB pages otherwise)."""
    kept, faults_kept = _refaults("keep")
    if not kept:
        pytest.skip("not glibc: malloc is left as it is")
    _, faults_default = _refaults("default")
    assert faults_default > 40_000
    assert faults_kept < 2_000


def test_the_allocator_is_set_up_once_unless_switched_off_or_in_a_dask_worker(monkeypatch):
    import sys
    import types

    config_module = sys.modules["glmformula.config"]
    calls = []
    monkeypatch.setattr(_memory, "keep_freed_memory", lambda: calls.append(1) or True)

    def fresh(switch: bool, worker: bool) -> bool:
        monkeypatch.setattr(_memory, "_allocator_kept", None)
        fake = types.SimpleNamespace(get_worker=(lambda: object()) if worker else _no_worker)
        monkeypatch.setitem(sys.modules, "distributed", fake)
        first = _memory.setup_allocator(switch)
        assert _memory.setup_allocator(not switch) is first  # once: no second call below
        return first

    assert fresh(True, False) and calls == [1]
    assert not fresh(False, False) and calls == [1]
    assert not fresh(True, True) and calls == [1]
    monkeypatch.setenv(config_module.KEEP_FREED_MEMORY_ENV, "off")
    assert config_module.Config().keep_freed_memory is False
    monkeypatch.setenv(config_module.KEEP_FREED_MEMORY_ENV, "")
    assert config_module.Config().keep_freed_memory is True


def _no_worker():
    raise ValueError("No worker found")
