"""Comparison layer: cross-validated model comparison and forward selection."""

from .compare import compare
from .select import Selection, select

__all__ = ["compare", "select", "Selection"]
