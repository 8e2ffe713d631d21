"""The exceptions and warnings users see: the one home of every error and warning class.

Every problem with a formula, a spec file or the data raises a subclass of :class:`FormulaError`
(itself a :class:`ValueError`). The message says *what* is wrong, *where* (the formula with a
caret under the offending column, or the spec file's line and key) and *how to fix it*.

Warnings are warnings, not errors, because every case they describe still returns a finite
fit: the user decides whether the fit is usable (a unit with no spikes is common in a
population recording and should not abort the other units).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FormulaError(ValueError):
    """A problem with a formula, a model-spec file or the data a formula is applied to.

    Parameters
    ----------
    what : str
        One sentence saying what is wrong.
    formula : str, optional
        The formula text; shown with a caret under ``column``.
    column : int, optional
        1-based column of the offending character in ``formula``.
    hint : str, optional
        How to fix it.
    """

    def __init__(self, what: str, *, formula: str | None = None, column: int | None = None,
                 hint: str | None = None):
        self.what = what
        self.formula = formula
        self.column = column
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [self.what]
        if self.formula is not None:
            lines.append("    " + self.formula)
            if self.column is not None:
                lines.append("    " + " " * (self.column - 1) + "^")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class FormulaSyntaxError(FormulaError):
    """The text is not a well-formed formula (parentheses, operators, literals)."""


class UnknownNameError(FormulaError):
    """A term function or a covariate name that does not exist."""


class TermArgumentError(FormulaError):
    """A term function was called with arguments of the wrong number, kind or unit."""


class DataError(FormulaError):
    """The data do not fit the formula: missing or ill-formed pynapple objects, epochs, binning."""


class SpecError(FormulaError):
    """A model-spec (TOML) file is invalid; the message names the file, line and key."""


class FitError(FormulaError):
    """A fit cannot proceed with the given options (e.g. a design too large for memory)."""


class ResultError(FormulaError):
    """A fitted result cannot give what was asked (a curve of a term that has none, a statistic
    missing from an old result file, a plot without matplotlib); the message says how to get it.
    """


class GlmformulaWarning(UserWarning):
    """Base class of glmformula's warnings (filter them all with this one class)."""


class ConvergenceWarning(GlmformulaWarning):
    """Some units stopped before meeting the convergence tolerance."""


class NoSpikesWarning(GlmformulaWarning):
    """Some units have no spikes in the fitted rows; their intercept has no finite MLE."""


class SeparationWarning(GlmformulaWarning):
    """Some weights are huge: the data (nearly) separate, the MLE runs off to infinity."""


class RankDeficientWarning(GlmformulaWarning):
    """The design restricted to a unit's columns is (numerically) rank deficient."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest candidate, or None if nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


__all__ = ["FormulaError", "FormulaSyntaxError", "UnknownNameError", "TermArgumentError",
           "DataError", "SpecError", "FitError", "ResultError", "GlmformulaWarning",
           "ConvergenceWarning", "NoSpikesWarning", "SeparationWarning", "RankDeficientWarning",
           "did_you_mean"]
