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


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float64), ((1000, 700), np.float64),
                                          ((2100, 500), np.float32), ((0, 4), np.float64)],
                         ids=["small", "large", "large float32", "empty"])
def test_a_buffer_is_zero_aligned_writable_and_read_in_place(shape, dtype):
    a = aligned_zeros(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert not a.any() and (a.ctypes.data % ALIGNMENT == 0 or not a.size)
    mapped = a.nbytes >= MAPPED_FROM
    assert isinstance(_owner(a), mmap.mmap) == mapped
    if a.size:
        a[-1, -1] = 2.5
        with jax.enable_x64(True):
            device = to_device(a, a.dtype)
            assert device.unsafe_buffer_pointer() == a.ctypes.data  # no copy
            assert float(device[-1, -1]) == 2.5


def test_a_mapped_buffer_lives_as_long_as_a_view_of_it():
    a = aligned_zeros((MAPPED_FROM // 8 + 64,), np.float64)
    a[100:] = np.arange(a.size - 100)
    view = a[100:]
    del a
    gc.collect()
    np.testing.assert_array_equal(view[:5], np.arange(5.0))


def test_a_platform_without_populate_still_maps(monkeypatch):
    monkeypatch.delattr(mmap, "MAP_POPULATE", raising=False)
    a = _memory.aligned_zeros((MAPPED_FROM // 8,), np.float64)
    assert isinstance(_owner(a), mmap.mmap) and not a.any()
