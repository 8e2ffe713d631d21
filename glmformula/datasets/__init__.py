"""Simulated recordings with known ground truth, as pynapple objects.

Each dataset function returns a :class:`SimulatedRecording`: a read-only mapping from names to
pynapple objects (usable wherever glmformula takes ``data``) that also carries ``truth``, the
parameters and effect functions it was generated from. Everything is deterministic for a seed.

==================== ==================================================================
name                 what it teaches
==================== ==================================================================
head_direction       von Mises tuning + spike history + coupling; wake and sleep epochs
linear_maze          a speed cell that looks like a place cell on a linear track
current_injection    a stimulus filter and a refractory history filter (current clamp)
place_2d             2-D place fields whose gain grows with running speed
==================== ==================================================================
"""

from __future__ import annotations

import difflib
import inspect

from glmformula.datasets._simulate import SimulatedRecording
from glmformula.datasets.current_injection import current_injection
from glmformula.datasets.head_direction import head_direction
from glmformula.datasets.linear_maze import linear_maze
from glmformula.datasets.place_2d import place_2d

__all__ = [
    "SimulatedRecording",
    "available",
    "current_injection",
    "head_direction",
    "linear_maze",
    "load",
    "place_2d",
]

_REGISTRY = {
    "head_direction": head_direction,
    "linear_maze": linear_maze,
    "current_injection": current_injection,
    "place_2d": place_2d,
}


def available() -> tuple[str, ...]:
    """Names of the simulated datasets, for :func:`load` (and ``simulate = "..."`` in specs).

    Returns
    -------
    tuple of str
    """
    return tuple(_REGISTRY)


def load(name: str, **kwargs) -> SimulatedRecording:
    """Generate a simulated dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    **kwargs
        Passed to the dataset function (``seed``, ``duration``, ``n_units``, ...).

    Returns
    -------
    SimulatedRecording

    Raises
    ------
    ValueError
        If ``name`` is not a dataset (the message suggests the closest name), or a keyword is
        not accepted by that dataset.
    """
    try:
        make = _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown simulated dataset {name!r}; {hint}"
                         f"available: {', '.join(_REGISTRY)}") from None
    # Check keywords against the signature rather than catching TypeError from the call, which
    # would also swallow genuine bugs inside the simulation.
    params = inspect.signature(make).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ValueError(f"simulated dataset {name!r} has no option {unknown[0]!r}; "
                         f"options: {', '.join(params)}")
    return make(**kwargs)
