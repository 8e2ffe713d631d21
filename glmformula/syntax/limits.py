"""Size limits of a formula: a spec file may come from anyone, so every formula is parsed or
refused with a :class:`~glmformula.errors.FormulaSyntaxError` within a second, in bounded
memory, whatever its text.

Each limit is far above what a model needs (a model with a thousand terms is already beyond
what a spike-train GLM can fit) and each refusal names the limit and how to stay below it.
docs/robustness.md lists them; tests/robustness/test_hostile_formulas.py checks each one.
"""

from __future__ import annotations

#: Most characters in a formula. A formula is parsed at about 150,000 characters a second,
#: so this keeps a parse well below a second; and it leaves room for the canonical text of
#: large models (about 2,500 terms such as ``rcos(x, 5, log=True):y``), which must read back:
#: result files store a formula as its text.
MAX_LENGTH = 50_000

#: Deepest nesting of parentheses and brackets (calls, groups, lists and tuples together).
#: Nested calls are normalised recursively (``log(log(x))``): this also bounds Python's stack.
MAX_DEPTH = 100

#: Largest exponent of ``**``. A power above the number of distinct factors means the same as
#: that number (``(a + b)**5`` is ``(a + b)**2``, as in patsy and formulaic) and is accepted
#: silently; an exponent above this is certainly a typo (or an attack) and is refused.
MAX_POWER = 100

#: Most terms a formula may expand to (``(a + b + ...)**n`` and ``a*b*c*...`` make up to
#: ``2**n - 1`` terms from ``n`` factors).
MAX_TERMS = 10_000

#: Most factors in one term (``a:b:c:...``): no model can fit an interaction of more.
MAX_FACTORS = 100

#: Most operations on terms while expanding a formula: each product of two terms formed and
#: each term added, removed or copied counts one. A product or union is bounded by the limits
#: above, but a formula may repeat one thousands of times (``(a + b + ...)**12:a:a:a:...``);
#: this bounds the whole expansion to a fraction of a second. The largest expansion within
#: :data:`MAX_TERMS`, ``(x0 + ... + x12)**13``, takes about 140,000.
MAX_WORK = 200_000

#: Largest whole-number argument of a term function (basis sizes, spline orders, bins): a
#: million basis functions is far beyond any model; a larger number is a typo (``1e300``) that
#: would only fail later, when the design is built.
MAX_COUNT = 10**6


def thousands(number: int) -> str:
    """``20000`` -> ``'20,000'``: limits are written the same way in messages and docs."""
    return f"{number:,}"


def shorten(text: str, most: int = 30) -> str:
    """A literal as messages quote it: a 5,000-digit number is cut to its first digits."""
    return text if len(text) <= most else text[:most] + "..."
