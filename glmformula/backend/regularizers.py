"""Penalties on the weights of a Poisson GLM.

Every regularizer is a small frozen value. Its only job is to turn itself into
per-column (and, for the group lasso, per-group) strength arrays given the
column layout of a :class:`~glmformula.backend.problem.Problem`; the solvers only
ever see those arrays (:class:`PenaltyArrays`), so adding a penalty never
touches a jitted kernel.

Conventions (the objective per unit is ``mean NLL + penalty``; the intercept is
never penalised):

========================  ==================================================
``Ridge(a)``              ``a/2 * sum_j w_j**2``
``Lasso(a)``              ``a * sum_j |w_j|``
``ElasticNet(a, r)``      ``a * (r * sum_j |w_j| + (1 - r)/2 * sum_j w_j**2)``
``GroupLasso(a)``         ``sum_g a_g * sqrt(|g|) * ||w_g||_2``
========================  ==================================================

These match scikit-learn / glmnet (ridge, lasso, elastic net) and NeMoS (group
lasso: ``sqrt`` of the group size), so strengths carry over. ``|g|`` is the number
of columns of group ``g`` that the unit may use (its ``column_mask``).

``strength`` is either one float (every column, or every group, gets it) or a
mapping ``{group name: strength}`` over the names in ``Problem.column_groups``;
groups the mapping does not mention are left unpenalised, names it mentions
that are not in the problem raise ``ValueError`` (a typo must not silently
remove a penalty).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Union

import attrs
import numpy as np

__all__ = [
    "Ridge",
    "Lasso",
    "ElasticNet",
    "GroupLasso",
    "Regularizer",
    "PenaltyArrays",
    "resolve_penalty",
    "to_dict",
    "from_dict",
]


class FrozenStrengths(Mapping):
    """Hashable read-only ``{group name: strength}`` mapping (keeps regularizers hashable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, float]):
        self._items = tuple(sorted((str(k), float(v)) for k, v in items.items()))

    def __getitem__(self, key: str) -> float:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return repr(dict(self._items))


Strength = Union[float, Mapping[str, float]]


def _to_strength(value: Strength) -> float | FrozenStrengths:
    if isinstance(value, Mapping):
        return FrozenStrengths(value)
    return float(value)


def _check_strength(instance, attribute, value) -> None:
    values = value.values() if isinstance(value, Mapping) else [value]
    for v in values:
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{type(instance).__name__}.strength must be finite and >= 0, "
                             f"got {v!r}")


def _check_ratio(instance, attribute, value) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ElasticNet.l1_ratio must be in [0, 1], got {value!r}")


_strength_field = dict(converter=_to_strength, validator=_check_strength)


@attrs.frozen
class Ridge:
    """L2 penalty ``strength/2 * ||w||^2`` (float or ``{group: strength}``)."""

    strength: Strength = attrs.field(**_strength_field)


@attrs.frozen
class Lasso:
    """L1 penalty ``strength * ||w||_1`` (float or ``{group: strength}``)."""

    strength: Strength = attrs.field(**_strength_field)


@attrs.frozen
class ElasticNet:
    """``strength * (l1_ratio ||w||_1 + (1 - l1_ratio)/2 ||w||^2)`` (glmnet/scikit-learn
    convention)."""

    strength: Strength = attrs.field(**_strength_field)
    l1_ratio: float = attrs.field(default=0.5, converter=float, validator=_check_ratio)


@attrs.frozen
class GroupLasso:
    """``sum_g strength_g * sqrt(|g|) * ||w_g||_2`` over the groups of ``Problem.column_groups``."""

    strength: Strength = attrs.field(**_strength_field)


Regularizer = Union[Ridge, Lasso, ElasticNet, GroupLasso]

#: The key of each regularizer in spec files (``regularizer = { ridge = 1e-3 }``) and saved
#: results.
KEYS = {"ridge": Ridge, "lasso": Lasso, "group_lasso": GroupLasso, "elastic_net": ElasticNet}


def to_dict(regularizer: Regularizer | None) -> dict | None:
    """``{key: strength}`` (plus ``l1_ratio`` for the elastic net): the form of spec files and
    saved results; a per-group strength is a nested ``{group: strength}``."""
    if regularizer is None:
        return None
    key = next(k for k, cls in KEYS.items() if type(regularizer) is cls)
    strength = regularizer.strength
    out = {key: dict(strength) if isinstance(strength, Mapping) else float(strength)}
    if isinstance(regularizer, ElasticNet):
        out["l1_ratio"] = regularizer.l1_ratio
    return out


def from_dict(value: Mapping | None) -> Regularizer | None:
    """The regularizer written by :func:`to_dict` (``ValueError`` saying what is wrong)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ValueError("must be a table such as { ridge = 1e-3 }")
    kinds = [k for k in value if k in KEYS]
    others = [k for k in value if k not in KEYS and k != "l1_ratio"]
    if len(kinds) != 1 or others:
        raise ValueError("give one of " + ", ".join(KEYS) + ", e.g. { ridge = 1e-3 }")
    kind = kinds[0]
    if "l1_ratio" in value and kind != "elastic_net":
        raise ValueError("l1_ratio belongs to elastic_net only")
    strength = value[kind]
    if isinstance(strength, bool) or not isinstance(strength, (int, float, Mapping)):
        raise ValueError(f"{kind} strength must be a finite number >= 0 or a table of them")
    try:
        if kind == "elastic_net":
            ratio = value.get("l1_ratio", 0.5)
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
                raise ValueError("l1_ratio must be a number from 0 to 1")
            return ElasticNet(strength, ratio)
        return KEYS[kind](strength)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{kind}: {err}") from None


@attrs.frozen(eq=False)
class PenaltyArrays:
    """A regularizer resolved against one problem's columns: plain arrays for the kernels.

    Attributes
    ----------
    l2 : ndarray, shape (P, U)
        Ridge strength of each weight (the penalty is ``sum l2 * w**2 / 2``).
    l1 : ndarray, shape (P, U)
        Lasso strength of each weight (``sum l1 * |w|``).
    group_matrix : ndarray, shape (G, P)
        One-hot membership of columns in penalised groups (``G = 0`` without a group lasso).
    group_strength : ndarray, shape (G, U)
        ``strength_g * sqrt(|g|_u)`` (``|g|_u``: columns of ``g`` unit ``u`` may use).
    kind : {"none", "smooth", "l1", "group"}
        Which solver family the penalty needs: smooth penalties go to Newton/L-BFGS,
        the others to the proximal solver.
    """

    l2: np.ndarray
    l1: np.ndarray
    group_matrix: np.ndarray
    group_strength: np.ndarray
    kind: str

    @property
    def smooth(self) -> bool:
        return self.kind in ("none", "smooth")


def _per_column(strength: Strength, column_groups: tuple[str, ...] | None, n_cols: int,
                what: str) -> np.ndarray:
    if not isinstance(strength, Mapping):
        return np.full(n_cols, float(strength))
    if column_groups is None:
        raise ValueError(f"{what} with per-group strengths needs Problem.column_groups")
    unknown = sorted(set(strength) - set(column_groups))
    if unknown:
        raise ValueError(f"{what}: unknown group name(s) {unknown}; the problem's groups are "
                         f"{sorted(set(column_groups))}")
    return np.array([strength.get(g, 0.0) for g in column_groups], dtype=float)


def _with_kind(l2, l1, gmat, gstr) -> PenaltyArrays:
    # The kind follows the arrays, not the class: Lasso(0) is no penalty at all and
    # ElasticNet(a, 0) is a ridge, so both keep the fast smooth solvers.
    if gstr.size and gstr.max() > 0:
        kind = "group"
    elif l1.size and l1.max() > 0:
        kind = "l1"
    elif l2.size and l2.max() > 0:
        kind = "smooth"
    else:
        kind = "none"
    return PenaltyArrays(l2, l1, gmat, gstr, kind=kind)


def resolve_penalty(
    regularizer: Regularizer | None,
    column_groups: tuple[str, ...] | None,
    column_mask: np.ndarray,
) -> PenaltyArrays:
    """Turn a regularizer into per-weight strength arrays.

    Parameters
    ----------
    regularizer : Ridge, Lasso, ElasticNet, GroupLasso or None
    column_groups : tuple of str or None
        The group (formula term) of each of the ``P`` columns.
    column_mask : ndarray of bool, shape (U, P)
        Which columns each unit uses (the group size of the group lasso counts only these).

    Returns
    -------
    PenaltyArrays
    """
    mask = np.asarray(column_mask, dtype=bool)
    n_units, n_cols = mask.shape
    zeros = np.zeros((n_cols, n_units))
    empty_groups = (np.zeros((0, n_cols)), np.zeros((0, n_units)))
    if regularizer is None:
        return PenaltyArrays(zeros, zeros, *empty_groups, kind="none")
    name = type(regularizer).__name__
    if isinstance(regularizer, Ridge):
        l2 = _per_column(regularizer.strength, column_groups, n_cols, name)
        return _with_kind(np.repeat(l2[:, None], n_units, 1), zeros, *empty_groups)
    if isinstance(regularizer, (Lasso, ElasticNet)):
        a = _per_column(regularizer.strength, column_groups, n_cols, name)
        r = 1.0 if isinstance(regularizer, Lasso) else regularizer.l1_ratio
        l1 = np.repeat((r * a)[:, None], n_units, 1)
        l2 = np.repeat(((1.0 - r) * a)[:, None], n_units, 1)
        return _with_kind(l2, l1, *empty_groups)
    if isinstance(regularizer, GroupLasso):
        if column_groups is None:
            raise ValueError("GroupLasso needs Problem.column_groups (the group of each column)")
        strength = regularizer.strength
        # every group of the problem gets a row (strength 0 if unpenalised): the
        # array shapes, hence the compiled kernels, then do not depend on which
        # groups a mapping names
        names = list(dict.fromkeys(column_groups))
        if isinstance(strength, Mapping):
            _per_column(strength, column_groups, n_cols, name)  # validates the names
            values = np.array([strength.get(g, 0.0) for g in names])
        else:
            values = np.full(len(names), float(strength))
        groups = np.array(column_groups)
        gmat = np.stack([(groups == g).astype(float) for g in names]) if names else empty_groups[0]
        sizes = gmat @ mask.T.astype(float)  # (G, U): columns of g each unit uses
        gstr = values[:, None] * np.sqrt(sizes)
        return _with_kind(zeros, zeros, gmat, gstr)
    raise TypeError(f"unknown regularizer {regularizer!r}; "
                    "use Ridge, Lasso, ElasticNet or GroupLasso")
