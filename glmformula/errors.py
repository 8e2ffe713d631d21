"""The exceptions and warnings users see: the one home of every error and warning class.

Every problem with a formula, a spec file or the data raises a subclass of :class:`FormulaError`
(itself a :class:`ValueError`). The message says *what* is wrong, *where* (the formula with a
caret under the offending column, or the spec file's line and key) and *how to fix it*.

Warnings are warnings, not errors, because every case they describe still returns a finite
fit: the user decides whether the fit is usable (a unit with no spikes is common in a
population recording and should not abort the other units).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextvars import ContextVar


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


class ScoreWarning(GlmformulaWarning):
    """A held-out score is not finite or diverged (the fit ran off on that fold)."""


#: The cure that warnings about weights running off advise (separation, diverged held-out
#: scores): a penalty, which the default smoothing gives basis terms and a Ridge gives the rest.
PENALTY_ADVICE = ("keep smoothing='auto' (the default) for basis terms, or add a Ridge penalty "
                  "(e.g. gf.Ridge(1e-3)) for plain covariates")


#: What the code running now is doing, outermost first (e.g. ``("model 'hd'", "fold 2")``):
#: warnings issued inside :func:`warning_context` say it.
_CONTEXT: ContextVar[tuple[str, ...]] = ContextVar("glmformula_warning_context", default=())
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@contextlib.contextmanager
def warning_context(what: str) -> Iterator[None]:
    """Prefix every glmformula warning issued inside the block with ``what`` (nestable)."""
    token = _CONTEXT.set(_CONTEXT.get() + (what,))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _user_stacklevel() -> int:
    """The stacklevel of the innermost caller outside this package (the user's line)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


#: Where :func:`warn` puts its warnings instead of issuing them (None: issue them), see
#: :func:`deferred_warnings`.
_DEFERRED: ContextVar[list | None] = ContextVar("glmformula_deferred_warnings", default=None)


@contextlib.contextmanager
def deferred_warnings() -> Iterator[list]:
    """Collect the glmformula warnings issued inside the block (as ``(message, category,
    units)``) instead of issuing them, for :func:`reissue` later: work run on another thread
    (Python's warning filters and ``catch_warnings`` are process-wide, and a warning should
    point at the user's line, which only the calling thread's stack has)."""
    records: list = []
    token = _DEFERRED.set(records)
    try:
        yield records
    finally:
        _DEFERRED.reset(token)


def reissue(records: Iterable) -> None:
    """Issue the warnings :func:`deferred_warnings` collected, in order, from this thread."""
    for message, category, units in records:
        warn(message, category, units=units)


def warn(message: str, category: type[GlmformulaWarning], *, units=()) -> None:
    """Issue a glmformula warning that points at the user's call and says where it arose.

    The warning object keeps ``detail`` (the message without context), ``context`` (see
    :func:`warning_context`) and ``units`` (unit ids), so that a comparison can collect and
    count warnings by kind.
    """
    deferred = _DEFERRED.get()
    if deferred is not None:
        deferred.append((message, category, tuple(units)))
        return
    context = _CONTEXT.get()
    warning = category(f"{', '.join(context)}: {message}" if context else message)
    warning.detail, warning.context, warning.units = message, context, tuple(units)
    warnings.warn(warning, stacklevel=_user_stacklevel())


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest candidate, or None if nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


__all__ = ["FormulaError", "FormulaSyntaxError", "UnknownNameError", "TermArgumentError",
           "DataError", "SpecError", "FitError", "ResultError", "GlmformulaWarning",
           "ConvergenceWarning", "NoSpikesWarning", "SeparationWarning", "RankDeficientWarning",
           "ScoreWarning",
           "did_you_mean", "warn", "warning_context", "deferred_warnings", "reissue"]


class BinSizeWarning(GlmformulaWarning):
    """A bin size given as a bare number above 1 s (``bin_size=10``): read as seconds, though
    most likely milliseconds were meant; write ``"10ms"`` (or 0.01), or ``"10s"`` to keep it."""


__all__ += ["BinSizeWarning"]


class SimulationWarning(GlmformulaWarning):
    """A simulation of a fitted model ran away: its rates hit the ``max_rate`` cap, or the
    fitted history/coupling filters are unstable (their linearised gain reaches 1), so that
    simulated bursts feed themselves. The message names the units (by id) and says how to fit
    stable filters; see :func:`glmformula.results.stability.stability`."""


__all__ += ["SimulationWarning"]
