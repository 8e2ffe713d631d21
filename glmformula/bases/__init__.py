"""Basis function families, evaluated on a covariate or used as causal filters.

Every family shares one domain convention: the covariate is rescaled onto
[0, 1] with ``bounds`` (``None``: min and max of the finite samples) and rows
that are NaN, infinite or outside the bounds come back as NaN rows, so the
design builder drops them. Definitions match NeMoS 0.2.8.
"""

from .bspline import bspline, cyclic_bspline
from .onehot import onehot
from .raised_cosine import causal_filters, raised_cosine, rescale_to_unit, resolvable_time_scaling

__all__ = [
    "bspline",
    "causal_filters",
    "cyclic_bspline",
    "onehot",
    "raised_cosine",
    "rescale_to_unit",
    "resolvable_time_scaling",
]
