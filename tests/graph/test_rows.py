"""Row blocks padded to one shape: the block's rows, then zero rows of weight zero, in arrays
that XLA's CPU client can read in place."""

from __future__ import annotations

import numpy as np

from glmformula._memory import ALIGNMENT
from glmformula.graph.rows import RowBlock


def test_a_padded_block_keeps_its_rows_and_adds_aligned_zero_rows():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 5)).astype(np.float32)
    block = RowBlock(10, X, rng.poisson(1.0, (70, 3)).astype(np.float32), rng.random(70),
                     np.ones(70))
    padded = block.padded(100)
    for name in ("X", "counts", "offset", "row_weight"):
        grown, own = getattr(padded, name), getattr(block, name)
        assert grown.shape == (100,) + own.shape[1:] and grown.dtype == own.dtype
        np.testing.assert_array_equal(grown[:70], own)
        assert not grown[70:].any()
    assert padded.X.ctypes.data % ALIGNMENT == 0
    assert padded.start == 10 and block.padded(70) is block
