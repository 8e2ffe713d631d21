"""Roughness penalties of a formula's terms (SPEC section 6): which weights each penalises and
how.

Every basis term penalises the roughness of its weights ``w`` with a quadratic form
``w' S w``:

========================================  ===================================================
``bspline``, ``rcos``, ``filter``,         second-order differences (P-splines, Eilers & Marx
``history``                                1996): ``sum_j (w_j - 2 w_{j+1} + w_{j+2})^2``
``cyclic``                                 the same, wrapping around
``onehot``                                 first-order differences
``coupling``                               second-order differences within each source unit's
                                           filters, one strength for the term
``a:b`` of two bases                       one penalty per margin, ``S_a (x) I`` and
                                           ``I (x) S_b`` (mgcv's ``te()``)
``basis:scalar``, ``basis:IntervalSet``    the basis' penalty
bare covariates, transforms, ``lag``       none
========================================  ===================================================

A penalty is a list of :class:`PenaltyComponent` (stored columns, matrix, which units, which
strength); the fitting engine turns them into per-unit penalty matrices and chooses the
strengths (:mod:`glmformula.fitting.smoothing`).
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.linalg import block_diag

from . import nodes

#: Order of the difference penalty of each basis family.
DIFFERENCE_ORDER = {"bspline": 2, "rcos": 2, "cyclic": 2, "onehot": 1}


@attrs.frozen(eq=False)
class PenaltyComponent:
    """One quadratic penalty ``strength * w[columns]' matrix w[columns]``.

    Attributes
    ----------
    key : str
        The strength it uses: the term's text, with ``" [margin i]"`` for a margin of a tensor
        product and ``" [null space]"`` for the extra penalty of ``select=True``.
    term : str
        The term's text.
    columns : ndarray of int (k,)
        Stored columns penalised.
    matrix : ndarray (k, k)
        The penalty matrix (symmetric, positive semi-definite).
    setting : "auto" or float
        Chosen from the data, or a fixed strength (mean objective, as ``Ridge``).
    only_units, except_units : tuple
        It applies to the response units in ``only_units`` (all when empty) except those in
        ``except_units``: a unit's own ``history`` bank is penalised by its history strength,
        the other units' banks by its coupling strength.
    """

    key: str
    term: str
    columns: np.ndarray
    matrix: np.ndarray
    setting: object = "auto"
    only_units: tuple = ()
    except_units: tuple = ()

    def applies_to(self, unit) -> bool:
        return (not self.only_units or unit in self.only_units) and \
            unit not in self.except_units


def difference_penalty(k: int, order: int, cyclic: bool = False) -> np.ndarray | None:
    """``D'D`` for the ``order``-th differences of k weights (wrapping when ``cyclic``); None
    when k is too small to have any."""
    if cyclic:
        if k <= order:
            return None
        D = np.eye(k)
        for _ in range(order):
            D = np.roll(D, -1, axis=1) - D
        return D.T @ D
    if k <= order:
        return None
    D = np.diff(np.eye(k), n=order, axis=0)
    return D.T @ D


def node_penalty(node, width: int) -> np.ndarray | None:
    """The penalty matrix over a node's ``width`` columns, or None for an unpenalised node."""
    if isinstance(node, nodes.Basis):
        S = difference_penalty(node.k, DIFFERENCE_ORDER.get(node.family, 2),
                               cyclic=node.family == "cyclic")
        return None if S is None else block_diag(*[S] * max(width // node.k, 1))
    if isinstance(node, nodes.CausalFilter):
        S = difference_penalty(node.k, 2)
        return None if S is None else block_diag(*[S] * max(width // node.k, 1))
    return None


def _smooth_settings(formula, text: str) -> list:
    """The ``smooth=`` setting of each factor of the term written ``text``."""
    for term in formula.term_objects:
        if str(term) == text:
            return [dict(getattr(f, "arguments", ())).get("smooth", "auto")
                    for f in term.factors]
    return ["auto"]


def term_penalties(plan, graph, *, select: bool = False) -> tuple[PenaltyComponent, ...]:
    """Every penalty component of a compiled formula (see the module docstring).

    Parameters
    ----------
    plan : DesignPlan
    graph : FeatureGraph
        For the widths of a product's margins.
    select : bool
        Add a penalty on each term's null space, so a whole term can be shrunk to zero
        (mgcv's ``select=TRUE``).
    """
    components: list[PenaltyComponent] = []
    for term in plan.terms:
        settings = _smooth_settings(plan.formula, term.text)
        block = plan.term_storage.get(term.text)
        if block is None:
            continue
        if term.role == "shared":
            components.extend(_shared(term, block, settings, graph, select))
        elif term.role in ("history", "coupling"):  # gated ones too (the state has none)
            setting = next((x for x in settings if x != "auto"), "auto")
            components.extend(_spikes(term, block, setting, plan, select))
    return tuple(components)


def _shared(term, block: slice, settings: list, graph, select: bool):
    columns = np.arange(block.start, block.stop)
    width = len(columns)
    inputs = term.node.inputs if isinstance(term.node, nodes.Product) else (term.node,)
    widths = [len(node.labels(graph)) for node in inputs]
    if int(np.prod(widths)) != width:  # not a plain product of its factors: leave it alone
        return []
    margins = []
    for i, node in enumerate(inputs):
        setting = settings[i] if i < len(settings) else "auto"
        S = None if setting == "none" else node_penalty(node, widths[i])
        if S is None:
            continue
        before, after = int(np.prod(widths[:i])), int(np.prod(widths[i + 1:]))
        margins.append((i, np.kron(np.kron(np.eye(before), S), np.eye(after)), setting))
    out = []
    for i, matrix, setting in margins:
        key = term.text if len(margins) == 1 else f"{term.text} [margin {i + 1}]"
        out.append(PenaltyComponent(key, term.text, columns, matrix, setting))
    if select and margins:
        out.append(PenaltyComponent(f"{term.text} [null space]", term.text, columns,
                                    null_space_penalty(sum(m for _, m, _ in margins))))
    return out


def _spikes(term, block: slice, setting, plan, select: bool):
    if setting == "none":
        return []
    k = term.k  # the bank's filters per unit (also for a gated bank: coupling(all):rest)
    S = difference_penalty(k, 2)
    if S is None:
        return []
    position = {u: i for i, u in enumerate(plan.bank_units)}
    sources = plan.unit_ids if term.role == "history" else term.sources
    null = null_space_penalty(S) if select else None
    out = []
    for source in sources:
        columns = block.start + position[source] * k + np.arange(k)
        units = {"only_units": (source,)} if term.role == "history" else \
            {"except_units": (source,)}
        out.append(PenaltyComponent(term.text, term.text, columns, S, setting, **units))
        if null is not None:
            out.append(PenaltyComponent(f"{term.text} [null space]", term.text, columns, null,
                                        **units))
    return out


def null_space_penalty(S: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """The projector on the null space of ``S`` (what its penalty leaves free)."""
    values, vectors = np.linalg.eigh(S)
    free = vectors[:, values <= rtol * max(values.max(), 1e-300)]
    return free @ free.T


__all__ = ["PenaltyComponent", "term_penalties", "difference_penalty", "node_penalty",
           "null_space_penalty", "DIFFERENCE_ORDER"]
