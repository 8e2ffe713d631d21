"""State-dependent spike filters: a bank of filtered spike counts gated by a state.

``history(8):rest``, ``coupling(all):running`` and ``coupling(all):speed`` multiply the columns
of a spike filter term row by row with one state column: an ``IntervalSet`` indicator (1 inside
the intervals, 0 outside) or a scalar covariate (its value in each bin). For the spike banks
this is one more stored bank, the node ``Product((bank, state))``: the ungated bank
(:class:`~glmformula.graph.nodes.CausalFilter` of :class:`~glmformula.graph.nodes.SpikeCounts`,
``k`` columns per unit of the population) times the state's single column, so it has the same
columns in the same order, and each unit's model selects its own (``history``) or the other
units' (``coupling``) columns from it exactly as from the ungated bank.

``coupling(all) + coupling(all):rest`` then reads, for a pair (post, pre), the filter
``K w_base`` outside ``rest`` and ``K (w_base + w_rest)`` inside it: the gated term is the
change of coupling in the state, and its likelihood-ratio test is the test of that change.
"""

from __future__ import annotations

from .nodes import CausalFilter, Product, SpikeCounts


def is_bank(node) -> bool:
    """Whether ``node`` is an ungated bank: causal filters of binned spike counts."""
    return isinstance(node, CausalFilter) and isinstance(node.input, SpikeCounts)


def gated(bank: CausalFilter, state) -> Product:
    """The stored node of a gated bank: the bank's columns times the one column of ``state``
    (the bank first, so its column order is the bank's)."""
    return Product((bank, state))


def spike_bank(node) -> CausalFilter | None:
    """The bank a stored spike block reads: ``node`` itself, the bank inside a gated bank, or
    None for any other node."""
    if is_bank(node):
        return node
    if isinstance(node, Product) and len(node.inputs) == 2 and is_bank(node.inputs[0]):
        return node.inputs[0]
    return None


def gate(node):
    """The state node of a gated bank; None for an ungated bank or any other node."""
    if isinstance(node, Product) and spike_bank(node) is not None:
        return node.inputs[1]
    return None


__all__ = ["is_bank", "gated", "spike_bank", "gate"]
