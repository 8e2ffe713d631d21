"""Reference comparison: glmformula's Wilkinson algebra against formulaic (and patsy).

SPEC section 2 promises the operators of patsy/formulaic: ``+ - * / : **``, parentheses, ``1``
for the intercept, ``0`` / ``- 1`` to remove it, terms as sets ordered by interaction order then
first appearance. This module runs every formula of a corpus through ``gf.parse`` and through
formulaic 1.2 side by side (and through patsy where it is installed) and asks for the same set
of terms (each a frozenset of factor names) and the same intercept.

The corpus is a fixed list that walks every operator and its corner cases, plus seeded random
expression trees over the names a..f. Only plain names appear here: term functions are
glmformula's own and have no counterpart in formulaic.

Where formulaic deliberately differs from patsy (and from SPEC), the case is listed in
``FORMULAIC_DIFFERS`` with the reason; there glmformula must agree with patsy, and the test
also checks that formulaic still gives its documented answer.
"""

from __future__ import annotations

import random
import re

import pytest

import glmformula as gf

formulaic = pytest.importorskip("formulaic")

try:  # patsy is a second, independent reference; formulaic is the primary one
    import patsy
except ImportError:  # pragma: no cover - patsy is optional
    patsy = None

NAMES = "abcdef"


# ---- the three implementations, reduced to (ordered terms, intercept) --------------------------

def ours(rhs: str) -> tuple[list[frozenset], bool]:
    """glmformula: terms in output order (each a frozenset of factor names) and the intercept."""
    formula = gf.parse(f"y ~ {rhs}")
    terms = [frozenset(str(f) for f in term.factors) for term in formula.term_objects]
    # the canonical strings and the term objects describe the same terms
    assert [frozenset(t.split(":")) for t in formula.terms] == terms
    return terms, formula.intercept


def by_formulaic(rhs: str) -> tuple[list[frozenset], bool]:
    """formulaic: the RHS terms of ``Formula("y ~ rhs")``, with the literal ``1`` factored out.

    formulaic treats ``1`` as an ordinary (numeric scaling) factor: ``(a + 1):b`` gives the
    term ``1:b``, which is the term ``b``; the term whose only factor is ``1`` is the intercept.
    """
    terms, intercept = [], False
    for term in formulaic.Formula(f"y ~ {rhs}").rhs:
        names = frozenset(factor.expr for factor in term.factors) - {"1"}
        if not names:
            intercept = True
        elif names not in terms:
            terms.append(names)
    return terms, intercept


def by_patsy(rhs: str) -> tuple[set[frozenset], bool] | None:
    """patsy's terms and intercept, or None where patsy refuses the formula.

    patsy refuses an explicit intercept inside an interaction (``(a + 1):b``) and a unary minus
    on anything but 0/1; glmformula and formulaic accept the former (1 is the identity of ':').
    """
    try:
        desc = patsy.ModelDesc.from_formula(f"y ~ {rhs}")
    except patsy.PatsyError:
        return None
    terms = {frozenset(factor.name() for factor in term.factors) for term in desc.rhs_termlist}
    intercept = frozenset() in terms
    return terms - {frozenset()}, intercept


# ---- the fixed corpus ------------------------------------------------------------------------

FIXED = [
    # single terms, the intercept and its removal
    "a", "1", "0", "-1", "- 1", "+0", "- 0", "-0", "1 + a", "a + 1", "0 + a", "a + 0", "a - 1",
    "-1 + a", "- 1 + a", "a - 0", "-0 + a", "1 + a + 0", "0 + a + 1", "a - 1 + 1", "a - 1 - 0",
    "a + b - 0 - 1", "a + b - 1", "a + b + 0", "1 + 0", "0 + 1", "-1 + 1", "a - 1 + b",
    "a + 0 + b", "1 - 1", "1 + a - 1", "a + (b - 1)", "a + (0 + b)", "a - (b - 1)",
    "a - (b + 1)", "a - (0 + b)", "0 + a - (0 + b)", "1 + (a + 0)", "(1 + a) - 1",
    "(a - 1) + (b + 1)", "(a + 1) + (b - 1)", "a + 0 + (b + 1)", "1 + a - 0",
    # union and removal
    "a + b", "a + b + c", "a + a", "a + b + a", "a - a", "a - b", "a + b - a", "a - b:a",
    "a*b - a", "a*b - a:b", "a*b - b:a", "a*b - (a*b)", "a*b*c - a:b:c", "a*b*c - a*b",
    "a*b - (a - 1)", "(a + b + c)**2 - a:c", "(a + b)**2 - a", "(a + b)**2 - a + a",
    "a/b - a/b", "a + b:c - c:b", "(a + b + c) - (a + b)", "a*b*c - (a + b + c)",
    # interaction
    "a:b", "b:a", "a:a", "a:b:a", "a:b:c", "a:(b + c)", "(a + b):c", "(a + b):(c + d)",
    "(a + b):(a + b)", "a:b + b:a", "(a + b):(c + d):e", "a:b:c:d", "(a:b):(b:c)",
    "(a - 1):b", "(a + b - 1):c", "0:a", "a:1", "1:a", "(a + 1):b", "(a - 0):b",
    # products
    "a*b", "a*b*c", "a*a", "(a + b)*c", "a*(b + c)", "(a + b)*(c + d)", "a*b + c",
    "a + b*c", "a*b:c", "a:b*c", "(a*b)*(c*d)", "a*(b*c)", "(a + 0)*b", "a*(b - 1)",
    "(a + b - 1)*c", "(a*b)**3", "a*b*c*d",
    # nesting
    "a/b", "a/b/c", "(a/b)/c", "a/(b/c)", "(a + b)/c", "a/(b + c)", "(a + b)/(c + d)",
    "a*b/c", "a/b*c", "a/b:c", "a:b/c", "(a*b)/c", "a/(b*c)", "a/a", "(a - 1)/b",
    "1/a", "a/b + c/d", "(a + b + c)/d",
    # power
    "a**1", "a**2", "(a + b)**1", "(a + b)**2", "(a + b)**3", "(a + b + c)**2",
    "(a + b + c)**3", "(a + b + c + d)**2", "(a:b)**2", "(a*b)**2", "(a + b)**2:c",
    "c:(a + b)**2", "(a + b)**2 + c", "(a + b)**2*c", "(a/b)**2", "((a + b)**2)**2",
    "(a - 1)**2", "(a + b)**10",
    # parentheses and nesting depth
    "(a)", "((a))", "(((a + b)))", "(a + b)", "(a + (b + (c + d)))", "((a + b) + c) + d",
    "((a*b)*c)", "(a:(b:(c:d)))", "(a + b) - (a)", "((a - 1))", "(a - 1)", "(0 + a)",
    "(a - 1) + b", "(a + 0) - b", "a + (0)", "(a + b) * (c + (d:e))",
    # whitespace
    "a+b*c", "a  +  b", " a:b ", "a*  b/ c",
]

#: Cases where formulaic deliberately differs from patsy and SPEC; glmformula follows patsy.
#: formulaic inserts the implicit intercept as the term ``1`` in front of the right-hand side and
#: resolves parentheses first, so a ``0``/``-1`` inside parentheses only removes a ``1`` from
#: inside the same parentheses ("1 + (b - 1)": the intercept remains, as its maintainer explains
#: in formulaic PR #104). patsy (and R) let a removal anywhere in a chain of ``+``/``-`` remove
#: the intercept: ``y ~ (a - 1)`` has none. Value: formulaic's (terms, intercept).
FORMULAIC_DIFFERS = {
    "((a - 1))": ({"a"}, True),
    "(a - 1)": ({"a"}, True),
    "(0 + a)": ({"a"}, True),
    "(a - 1) + b": ({"a", "b"}, True),
    "(a + 0) - b": ({"a"}, True),
    "a + (0)": ({"a"}, True),
    # formulaic replaces the token "0" by "-1" before parsing, and its unary minus binds
    # loosest: "0:a" becomes "1 - (1:a)", which happens to agree (an intercept); "0/a" becomes
    # "1 - (1/a)" = "1 - (1 + a)", which removes the intercept too and leaves nothing. patsy
    # and glmformula nest a under an empty left side, and a product resets the intercept
    # state (as in "(a - 1):b"): 1 + a.
    "0/a": ((), False),
}

#: Cases formulaic refuses although they are well defined (and patsy refuses some of them too);
#: glmformula reads ``1`` as the empty term, the identity of ':' (as formulaic does elsewhere).
FORMULAIC_REFUSES = {
    # "b" and "1:b" both appear: formulaic calls them the same term "with a different
    # numerical scaling"; for glmformula 1:b is b, so (a + 1)*b = 1 + a + b + a:b
    "(a + 1)*b": ({"a", "b", "a:b"}, True),
    "(1 + a)**2": ({"a"}, True),
    "a/1": ({"a"}, True),
    # an empty left side of '/' (everything subtracted away) crashes formulaic 1.2.2 with a
    # TypeError (reduce() of an empty sequence); patsy and glmformula nest under nothing: b
    "(a - a)/b": ({"b"}, True),
}


#: Cases patsy refuses ("intercept term cannot interact with anything else"): an explicit 1
#: (or "- 0", which patsy reads as an explicit 1) inside ':', '*', '/' or '**'.
PATSY_REFUSES = {"a:1", "1:a", "(a + 1):b", "(a - 0):b", "1/a", "(a + 1)*b", "(1 + a)**2",
                 "a/1"}


def _terms_of(expected) -> set[frozenset]:
    return {frozenset(t.split(":")) for t in expected}


def test_fixed_corpus_is_large_and_distinct():
    assert len(set(FIXED)) == len(FIXED)
    assert len(FIXED) + len(FORMULAIC_REFUSES) + len(FORMULAIC_DIFFERS) >= 150
    for text in FORMULAIC_DIFFERS:
        assert text in FIXED or text == "0/a"


@pytest.mark.parametrize("rhs", FIXED + ["0/a"])
def test_fixed_formula_matches_formulaic(rhs):
    terms, intercept = ours(rhs)
    if rhs in FORMULAIC_DIFFERS:
        ref_terms, ref_intercept = by_formulaic(rhs)
        want_terms, want_intercept = FORMULAIC_DIFFERS[rhs]
        # formulaic still says what we documented (or a later release came round to ours)...
        assert ({":".join(sorted(t)) for t in ref_terms}, ref_intercept) in \
            [(set(want_terms), want_intercept),
             ({":".join(sorted(t)) for t in terms}, intercept)]
        # ...and glmformula says what patsy says
        if patsy is not None:
            assert by_patsy(rhs) == (set(terms), intercept)
        return
    ref_terms, ref_intercept = by_formulaic(rhs)
    assert set(terms) == set(ref_terms), rhs
    assert intercept == ref_intercept, rhs
    # the order: by interaction order, then first appearance (formulaic's "degree" ordering)
    assert terms == ref_terms, rhs


@pytest.mark.parametrize("rhs", sorted(FORMULAIC_REFUSES))
def test_formulaic_refusals_are_well_defined_here(rhs):
    terms, intercept = ours(rhs)
    want_terms, want_intercept = FORMULAIC_REFUSES[rhs]
    assert set(terms) == _terms_of(want_terms) and intercept == want_intercept
    try:
        reference = by_formulaic(rhs)
    except Exception:  # noqa: BLE001 - formulaic 1.2.2 refuses (or crashes with a TypeError)
        return
    # a later formulaic that accepts the formula must agree
    assert (set(reference[0]), reference[1]) == (set(terms), intercept)


@pytest.mark.skipif(patsy is None, reason="patsy not installed")
@pytest.mark.parametrize("rhs", FIXED + sorted(FORMULAIC_REFUSES) + ["0/a"])
def test_fixed_formula_matches_patsy(rhs):
    reference = by_patsy(rhs)
    if rhs in PATSY_REFUSES:
        assert reference is None, rhs
        return
    terms, intercept = ours(rhs)
    assert (set(terms), intercept) == reference, rhs


@pytest.mark.parametrize("rhs, expected, intercept", [
    ("a*b", ("a", "b", "a:b"), True),
    ("a*b*c - a:b:c", ("a", "b", "c", "a:b", "a:c", "b:c"), True),
    ("(a + b)**3", ("a", "b", "a:b"), True),
    ("(a + b)/c", ("a", "b", "a:b:c"), True),
    ("a/(b + c)", ("a", "a:b", "a:c"), True),
    ("a + a", ("a",), True),
    ("a:a", ("a",), True),
    ("-1 + a", ("a",), False),
    ("a + 0", ("a",), False),
    ("a - 0", ("a",), True),
    ("- 0", (), True),
    ("1", (), True),
    ("0", (), False),
    ("(a - 1):b", ("a:b",), True),
])
def test_expected_terms_written_out(rhs, expected, intercept):
    formula = gf.parse(f"spikes ~ {rhs}")
    assert formula.terms == expected
    assert formula.intercept is intercept


# ---- term order (SPEC: by interaction order, then first appearance) ----------------------------

@pytest.mark.parametrize("rhs, expected", [
    ("c + a + b", ("c", "a", "b")),
    ("b:a + c + a", ("c", "a", "b:a")),
    ("a:b:c + d:e + f", ("f", "d:e", "a:b:c")),
    ("d:e + a*b", ("a", "b", "d:e", "a:b")),
    ("(a + b)**2 - a + a", ("b", "a", "a:b")),
    ("e:f + e + f:e", ("e", "e:f")),
    ("c*b*a", ("c", "b", "a", "c:b", "c:a", "b:a", "c:b:a")),
])
def test_term_order_is_degree_then_first_appearance(rhs, expected):
    assert gf.parse(f"y ~ {rhs}").terms == expected


def test_term_identity_ignores_factor_order():
    assert gf.parse("y ~ a:b") == gf.parse("y ~ b:a")
    assert gf.parse("y ~ a*b") == gf.parse("y ~ b:a + b + a")
    assert gf.parse("y ~ a + b") == gf.parse("y ~ b + a")  # a set: order does not matter


# ---- seeded random expression trees ------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, ":": 3, "**": 4}


def _random_tree(rng: random.Random, depth: int, *, additive: bool = True):
    """A random expression tree: a name, 0/1 (only where +/- combine terms), or an operator node.

    Intercept literals stay out of products: formulaic rewrites the token 0 as -1 before
    parsing (see FORMULAIC_DIFFERS), which changes the meaning of e.g. 0/a.
    """
    if depth == 0 or rng.random() < 0.25:
        if additive and rng.random() < 0.15:
            return rng.choice(["0", "1", "-1", "-0"])
        return rng.choice(NAMES)
    op = rng.choice(["+", "+", "-", "*", "/", ":", ":", "**"])
    if op == "**":
        return ("**", _random_tree(rng, depth - 1, additive=False), rng.randint(1, 3))
    inner_additive = additive and op in "+-"
    return (op, _random_tree(rng, depth - 1, additive=inner_additive),
            _random_tree(rng, depth - 1, additive=inner_additive))


def _render(tree, rng: random.Random) -> str:
    """Text with the fewest parentheses the precedence needs, plus a few extra ones."""
    if isinstance(tree, str):
        return tree
    op, left, right = tree
    if op == "**":
        base = _render(left, rng)
        if not isinstance(left, str) or left.startswith("-"):
            base = f"({base})"
        return f"{base}**{right}"
    left_text, right_text = _render(left, rng), _render(right, rng)
    if _needs_parens(left, op, side="left") or rng.random() < 0.1:
        left_text = f"({left_text})"
    if _needs_parens(right, op, side="right") or rng.random() < 0.1:
        right_text = f"({right_text})"
    space = rng.choice(["", " ", " ", "  "])
    return f"{left_text}{space}{op}{space}{right_text}"


def _needs_parens(child, op: str, side: str) -> bool:
    if isinstance(child, str):
        # a signed literal is a unary minus: it may only open a +/- chain
        return child.startswith("-") and (side == "right" or op not in "+-")
    child_precedence = _PRECEDENCE[child[0]]
    if side == "left":
        return child_precedence < _PRECEDENCE[op] or _starts_with_sign(child) and op not in "+-"
    return child_precedence <= _PRECEDENCE[op] or _starts_with_sign(child)


def _starts_with_sign(tree) -> bool:
    while not isinstance(tree, str):
        if tree[0] == "**":
            return False
        tree = tree[1]
    return tree.startswith("-")


def random_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    corpus: list[str] = []
    while len(corpus) < n:
        text = _render(_random_tree(rng, rng.randint(1, 4)), rng)
        if text not in corpus and text not in FIXED:
            corpus.append(text)
    return corpus


def _random_chain(rng: random.Random, depth: int) -> str:
    """A chain of terms joined by + and -, rich in 0, 1, -1 and parenthesised sub-chains."""
    items = []
    for position in range(rng.randint(1, 5)):
        roll = rng.random()
        if roll < 0.3:
            item = rng.choice(["0", "1"])
        elif roll < 0.45 and depth > 0:
            item = f"({_random_chain(rng, depth - 1)})"
        elif roll < 0.6:
            item = rng.choice(NAMES) + rng.choice([":", "*", "/"]) + rng.choice(NAMES)
        else:
            item = rng.choice(NAMES)
        if position == 0:
            items.append(rng.choice(["", "", "", "-", "- "]) + item
                         if item in ("0", "1") else item)
        else:
            items.append(rng.choice([" + ", " - ", "+", "-"]) + item)
    return "".join(items)


def random_chains(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    corpus: list[str] = []
    while len(corpus) < n:
        text = _random_chain(rng, 2)
        if text not in corpus and text not in FIXED:
            corpus.append(text)
    return corpus


RANDOM = random_corpus(400, seed=20240611) + random_chains(150, seed=7)


def _intercept_literal_in_parentheses(rhs: str) -> bool:
    """Whether a 0 or 1 stands inside parentheses: where formulaic scopes the intercept."""
    depth = 0
    for token in re.findall(r"\(|\)|\b[01]\b", rhs):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth > 0:
            return True
    return False


def test_conformance_corpus_has_at_least_300_formulas():
    assert len(set(FIXED) | set(FORMULAIC_DIFFERS) | set(FORMULAIC_REFUSES) | set(RANDOM)) >= 300
    # every operator appears, with depth and with the intercept literals
    joined = " ".join(RANDOM)
    for token in ["+", "-", "*", "/", ":", "**", "(", "0", "1"]:
        assert token in joined


def test_random_formulas_match_formulaic_and_patsy():
    checked = {"formulaic terms": 0, "formulaic intercept": 0, "formulaic order": 0,
               "patsy": 0}
    for rhs in RANDOM:
        terms, intercept = ours(rhs)
        try:
            ref_terms, ref_intercept = by_formulaic(rhs)
        except Exception as err:  # noqa: BLE001 - formulaic raises a TypeError too
            # only the refusals listed in FORMULAIC_REFUSES: a term next to the same term
            # times the literal 1, or an empty left side of '/'; all else must parse there
            scaling = "numerical scaling" in str(err) and re.search(r"\b1\b", rhs)
            empty_nest = isinstance(err, TypeError) and "/" in rhs
            assert scaling or empty_nest, (rhs, err)
            ref_terms = None
        if ref_terms is not None:
            assert set(terms) == set(ref_terms), rhs
            checked["formulaic terms"] += 1
            if not _intercept_literal_in_parentheses(rhs):
                assert intercept == ref_intercept, rhs
                assert terms == ref_terms, rhs  # degree, then first appearance
                checked["formulaic intercept"] += 1
                checked["formulaic order"] += 1
        if patsy is not None:
            reference = by_patsy(rhs)
            if reference is not None:
                assert (set(terms), intercept) == reference, rhs
                checked["patsy"] += 1
    assert checked["formulaic terms"] >= 0.9 * len(RANDOM), checked
    assert checked["formulaic intercept"] >= 0.6 * len(RANDOM), checked
    if patsy is not None:
        assert checked["patsy"] >= 0.6 * len(RANDOM), checked
