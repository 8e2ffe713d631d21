"""Warnings raised by the Poisson GLM backend.

They are warnings, not errors, because every case they describe still returns a
finite fit: the user decides whether the fit is usable (a unit with no spikes is
common in a population recording and should not abort the other units).
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "NoSpikesWarning",
    "RankDeficientWarning",
    "SeparationWarning",
]


class ConvergenceWarning(UserWarning):
    """Some units stopped before meeting the convergence tolerance."""


class NoSpikesWarning(UserWarning):
    """Some units have no spikes in the fitted rows; their intercept has no finite MLE."""


class SeparationWarning(UserWarning):
    """Some weights are huge: the data (nearly) separate, the MLE runs off to infinity."""


class RankDeficientWarning(UserWarning):
    """The design restricted to a unit's columns is (numerically) rank deficient."""
