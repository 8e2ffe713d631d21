"""Compile a formula into a design plan: which nodes give which columns, for which unit.

Columns shared by every unit (covariates, bases, filters of covariates) are stored once.
``history`` and ``coupling`` read one bank of filtered spike counts of every unit involved;
each unit's model selects its own columns from it: its own bank for ``history``, the other
units' banks for ``coupling`` (a unit never couples to itself).
"""

from __future__ import annotations

import attrs
import numpy as np

from ..errors import DataError, TermArgumentError
from ..terms.formula import Formula
from ..terms.registry import lookup
from ..terms.values import Duration, FunctionCall, Variable
from . import gating, nodes
from .features import FeatureGraph


@attrs.frozen(eq=False)
class TermColumns:
    """One formula term and where its columns come from.

    ``role`` is ``"shared"`` (same columns for every unit), ``"history"`` or ``"coupling"``.
    For shared terms ``labels`` are the column labels; spike terms read ``node`` (the bank of
    filtered counts of ``bank_units``, or that bank gated by a state: see
    :mod:`~glmformula.graph.gating`) unit by unit; ``sources`` are the units a coupling term
    reads.
    """

    @property
    def k(self) -> int:
        """Filters per unit of a spike term's bank."""
        return gating.spike_bank(self.node).k

    text: str
    role: str
    node: object
    labels: tuple[str, ...]
    sources: tuple = ()


@attrs.frozen(eq=False)
class DesignPlan:
    """Everything needed to build the design (in full or in blocks of rows) for a formula.

    Attributes
    ----------
    storage_columns : tuple of str
        Names of the stored columns: shared terms, then each bank of filtered spike counts.
    term_storage : dict
        Term text -> slice of the stored columns it reads.
    unit_columns : tuple of ndarray
        For each response unit, the stored column indices of its own design, in order.
    unit_labels : tuple of tuple
        For each response unit, ``(term, label)`` of each of its columns.
    """

    formula: Formula
    response: str
    unit_ids: tuple
    bank_units: tuple
    terms: tuple[TermColumns, ...]
    offsets: tuple
    lead: int
    blocks: tuple            # (node, first stored column, stop)
    storage_columns: tuple[str, ...]
    term_storage: dict
    unit_columns: tuple
    unit_labels: tuple

    @property
    def n_storage(self) -> int:
        return len(self.storage_columns)

    def column_mask(self) -> np.ndarray:
        mask = np.zeros((len(self.unit_ids), self.n_storage), dtype=bool)
        for u, columns in enumerate(self.unit_columns):
            mask[u, columns] = True
        return mask


class Compiler:
    """Turns factors into nodes; passed to each term function's ``build``."""

    def __init__(self, formula: Formula, graph: FeatureGraph, bank_units: tuple):
        self.formula = formula
        self.graph = graph
        self.response = formula.response
        self.bank_units = bank_units

    @staticmethod
    def is_factor(value) -> bool:
        return isinstance(value, (Variable, FunctionCall))

    def node(self, factor, period: float | None = None):
        if isinstance(factor, Variable):
            if factor.name == self.response:
                raise DataError(
                    f"the response '{factor.name}' cannot also be a covariate",
                    formula=str(self.formula),
                    hint="a unit's own past enters through history(...), other units' through "
                         "coupling(...)")
            self.graph.source.get(factor.name)
            if period is None and self.graph.source.is_interval_set(factor.name):
                return nodes.Covariate(factor.name)
            return nodes.Covariate(factor.name, period)
        function = lookup(factor.function)
        if function.build is None and function.compute is not None:
            return self.rowwise(factor)  # user-registered row-wise functions
        return function.build(factor, self)

    def rowwise(self, call: FunctionCall) -> nodes.Rowwise:
        """The node of a row-wise function (a ``compute``): covariate arguments become its
        inputs, numbers its parameters."""
        inputs, numbers = [], []
        for name, value in call.arguments:
            if self.is_factor(value):
                inputs.append(self.node(value))
            else:
                numbers.append((name, value))
        return nodes.Rowwise(call.function, tuple(inputs), tuple(numbers))

    def bins(self, duration: Duration, call: FunctionCall, *, allow_negative=False) -> int:
        bin_size = self.graph.grid.bin_size
        bins = int(round(duration.seconds / bin_size))
        if bins == 0 or (bins < 0 and not allow_negative):
            raise TermArgumentError(
                f"{call.function}(): {duration} is shorter than one bin ({bin_size * 1e3:g} ms)",
                formula=str(self.formula),
                hint="use a longer window or a smaller bin_size")
        return bins


def compile_formula(formula: Formula, graph: FeatureGraph) -> DesignPlan:
    """Compile ``formula`` against the data and grid of ``graph`` into a :class:`DesignPlan`."""
    spikes = graph.source.spikes(formula.response, formula.units)
    unit_ids = spikes.unit_ids
    all_ids = graph.source.spikes(formula.response, None).unit_ids
    sources = _coupling_sources(formula, all_ids)
    bank_units = tuple(u for u in all_ids if u in set(unit_ids) | set(sources))
    compiler = Compiler(formula, graph, bank_units)

    terms, offsets = [], []
    for term in formula.term_objects:
        roles = [lookup(f.function).role if isinstance(f, FunctionCall) else "covariate"
                 for f in term.factors]
        text = str(term)
        if "spikes" in roles:
            terms.append(_spike_term(term, roles, compiler, all_ids))
            continue
        if "offset" in roles:
            if len(term.factors) > 1:
                raise TermArgumentError(f"'{text}': offset() cannot be interacted",
                                        formula=str(formula), hint="add offset(x) on its own")
            offsets.append(compiler.node(term.factors[0]))
            continue
        factor_nodes = [compiler.node(f) for f in term.factors]
        node = factor_nodes[0] if len(factor_nodes) == 1 else nodes.Product(tuple(factor_nodes))
        terms.append(TermColumns(text, "shared", node, node.labels(graph)))

    lead = max([t.node.lead for t in terms] + [o.lead for o in offsets] + [0])
    return _layout(formula, unit_ids, bank_units, tuple(terms), tuple(offsets), lead)


def _coupling_sources(formula: Formula, all_ids: tuple) -> tuple:
    """The units any coupling term reads (each term reads those of its own call)."""
    read = set()
    for call in formula.calls("coupling"):
        read.update(_call_sources(call, formula, all_ids))
    return tuple(u for u in all_ids if u in read)


def _call_sources(call: FunctionCall, formula: Formula, all_ids: tuple) -> tuple:
    units = call.argument("units")
    if units.ids is None:
        return all_ids
    missing = [u for u in units.ids if u not in set(all_ids)]
    if missing:
        raise DataError(f"coupling(): unit id(s) {missing} are not in '{formula.response}'",
                        formula=str(formula),
                        hint="list existing unit ids, or write coupling(all)")
    return tuple(u for u in all_ids if u in set(units.ids))


def _spike_term(term, roles: list, compiler: Compiler, all_ids: tuple) -> TermColumns:
    """A ``history``/``coupling`` term, alone or gated by a state (``coupling(all):rest``).

    The other factors of a gated term are its state: their row-wise product must be one
    column (an ``IntervalSet`` indicator, a scalar covariate or a transform of one). The term's
    node is then the gated bank :func:`~glmformula.graph.gating.gated` (the bank times the
    state); its columns are laid out and selected per unit exactly as the bank's.
    """
    text, formula = str(term), str(compiler.formula)
    spike = [f for f, role in zip(term.factors, roles) if role == "spikes"]
    others = [(f, role) for f, role in zip(term.factors, roles) if role != "spikes"]
    if len(spike) > 1:
        names = " and ".join(f"{f.function}()" for f in spike)
        raise TermArgumentError(
            f"'{text}': {names} cannot be interacted with each other",
            formula=formula,
            hint=f"add them as separate terms ({' + '.join(str(f) for f in spike)}); to make "
                 "one depend on a state, interact it with an IntervalSet or a scalar "
                 f"covariate, e.g. {spike[-1]}:rest")
    call = spike[0]
    bank = compiler.node(call)
    sources = _call_sources(call, compiler.formula, all_ids) \
        if call.function == "coupling" else ()
    if not others:
        return TermColumns(text, call.function, bank, (), sources)
    example = f"{call.function}(...):rest (an IntervalSet) or {call.function}(...):speed"
    for factor, role in others:
        if role == "offset":
            raise TermArgumentError(f"'{text}': offset() cannot be interacted",
                                    formula=formula, hint="add offset(x) on its own")
        if role in ("basis", "temporal", "spikes"):
            raise TermArgumentError(
                f"'{text}': {call.function}() can be gated by a state of one column (an "
                f"IntervalSet indicator or a scalar covariate), not by {factor.function}(), "
                "which gives several columns per bin",
                formula=formula,
                hint=f"write {example} (a scalar covariate, or a transform such as log(speed))"
                     "; for a change with a tuned covariate, gate by IntervalSets of its range")
    state_nodes = [compiler.node(f) for f, _ in others]
    state = state_nodes[0] if len(state_nodes) == 1 else nodes.Product(tuple(state_nodes))
    width = len(state.labels(compiler.graph))
    if width != 1:
        names = ":".join(str(f) for f, _ in others)
        raise TermArgumentError(
            f"'{text}': the state '{names}' has {width} columns; {call.function}() can be "
            "gated by one column only", formula=formula,
            hint=f"write {example} with a one-column covariate (pass the columns of a "
                 "TsdFrame as separate Tsd)")
    return TermColumns(text, call.function, gating.gated(bank, state), (), sources)


def _layout(formula, unit_ids, bank_units, terms, offsets, lead) -> DesignPlan:
    names, blocks, term_storage = [], [], {}
    for term in terms:
        if term.role == "shared":
            start = len(names)
            names.extend(term.text + label for label in term.labels)
            blocks.append((term.node, start, len(names)))
            term_storage[term.text] = slice(start, len(names))
    bank_start = {}
    # A bank read by coupling is named after it (its columns are other units' inputs).
    spike_terms = sorted((t for t in terms if t.role != "shared"),
                         key=lambda t: t.role != "coupling")
    for term in spike_terms:
        if term.node not in bank_start:
            start = len(names)
            k = term.k
            names.extend(f"{term.text}[unit {u}][{j}]" for u in bank_units for j in range(k))
            blocks.append((term.node, start, len(names)))
            bank_start[term.node] = start
    for term in spike_terms:
        k = term.k
        term_storage[term.text] = slice(bank_start[term.node],
                                        bank_start[term.node] + k * len(bank_units))

    # Per term, the columns and labels of each source are made once and each unit's
    # design concatenates them (50 units coupled to 49 others: 2,500 pieces, not
    # 20,000 label strings formatted per unit).
    position = {u: i for i, u in enumerate(bank_units)}
    pieces = []  # per term: (role, {source: (columns, labels)})
    for term in terms:
        if term.role == "shared":
            block = term_storage[term.text]
            pieces.append(("shared", (np.arange(block.start, block.stop),
                                      tuple((term.text, label) for label in term.labels))))
            continue
        start, k = bank_start[term.node], term.k
        sources = bank_units if term.role == "history" else term.sources
        own = "[{j}]" if term.role == "history" else "[unit {u}][{j}]"
        pieces.append((term.role, {
            u: (start + position[u] * k + np.arange(k),
                tuple((term.text, own.format(u=u, j=j)) for j in range(k)))
            for u in sources}))

    unit_columns, unit_labels = [], []
    for unit in unit_ids:
        parts = []
        for role, piece in pieces:
            if role == "shared":
                parts.append(piece)
            elif role == "history":
                parts.append(piece[unit])
            else:
                parts.extend(p for source, p in piece.items() if source != unit)
        unit_columns.append(np.concatenate([c for c, _ in parts]).astype(np.int64) if parts
                            else np.zeros(0, np.int64))
        unit_labels.append(tuple(label for _, labels in parts for label in labels))
    return DesignPlan(formula, formula.response, unit_ids, bank_units, terms, offsets, lead,
                      tuple(blocks), tuple(names), term_storage, tuple(unit_columns),
                      tuple(unit_labels))
