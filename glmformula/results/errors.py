"""Errors raised when a fitted result cannot answer what it was asked."""

from __future__ import annotations

from ..errors import FormulaError


class ResultError(FormulaError):
    """A fitted result cannot give what was asked (a curve of a term that has none, a statistic
    missing from an old result file, a plot without matplotlib); the message says how to get it.
    """


__all__ = ["ResultError"]
