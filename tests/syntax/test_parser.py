"""Unit tests of the syntax layer: text -> syntax tree, literals, errors with carets, safety.

SPEC section 2: literals are numbers, quantities with a glued time unit (``100ms``; ``2.5 s``
is not allowed), multiples of pi, quoted strings, lists, tuples and bare words; a formula is
``response ~ rhs``; nothing in a formula is ever evaluated as Python. SPEC section 3: every
problem raises a ``gf.FormulaError`` whose message shows the formula with a caret under the
offending column.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import os
import subprocess
from unittest import mock

import pytest

import glmformula as gf
from glmformula.syntax import ast
from glmformula.syntax.parser import parse_syntax


def call_arguments(text: str):
    """The positional arguments and keywords of the single call in ``y ~ f(...)``."""
    call = parse_syntax(f"y ~ f({text})").rhs
    assert isinstance(call, ast.Call) and call.function == "f"
    return call.args, call.keywords


def single_argument(text: str):
    args, keywords = call_arguments(text)
    assert len(args) == 1 and not keywords
    return args[0]


def error_of(text: str, *, require_response: bool = True) -> gf.FormulaError:
    with pytest.raises(gf.FormulaError) as info:
        gf.parse(text, require_response=require_response)
    return info.value


def caret_column(err: gf.FormulaError) -> int:
    """The column the caret line of the message points at (1-based)."""
    lines = str(err).split("\n")
    formula_line = lines.index("    " + err.formula)
    caret_line = lines[formula_line + 1]
    assert caret_line.strip() == "^"
    return len(caret_line) - len("    ")


# ---- literals --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("12", 12.0), ("0", 0.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 1e-3),
    ("1E+2", 100.0), ("2.5e3", 2500.0), ("-3", -3.0), ("-1e-3", -1e-3), ("007", 7.0),
])
def test_numbers(text, value):
    number = single_argument(text)
    assert isinstance(number, ast.Number)
    assert number.value == value and number.text == text


def test_integer_flag_of_numbers():
    assert single_argument("12").is_integer
    assert single_argument("1e1").is_integer
    assert not single_argument("1.5").is_integer
    assert not single_argument("2pi").is_integer


@pytest.mark.parametrize("text, seconds", [
    ("100ms", 0.1), ("0.25s", 0.25), ("2min", 120.0), ("1e-3s", 1e-3), ("10us", 1e-5),
    ("1h", 3600.0), ("3sec", 3.0), (".5s", 0.5), ("-50ms", -0.05), ("700ms", 0.7),
])
def test_quantities(text, seconds):
    quantity = single_argument(text)
    assert isinstance(quantity, ast.Quantity)
    assert quantity.seconds == seconds  # exactly: 700ms is the same float as 0.7s
    assert quantity.text == text


@pytest.mark.parametrize("text, value", [
    ("2pi", 2 * math.pi), ("0.5pi", 0.5 * math.pi), ("1pi", math.pi), ("-1pi", -math.pi),
])
def test_pi_multiples(text, value):
    number = single_argument(text)
    assert isinstance(number, ast.Number) and number.value == value


def test_bare_pi_is_a_word_that_numbers_accept():
    assert single_argument("pi") == ast.Word("pi", 0)
    assert gf.parse("y ~ cyclic(hd, 12, period=pi)").terms == ("cyclic(hd, 12, period=pi)",)


@pytest.mark.parametrize("text, value", [
    ('"log"', "log"), ("'log'", "log"), ('"a b"', "a b"), ("''", ""), ('"it\'s"', "it's"),
])
def test_strings(text, value):
    string = single_argument(text)
    assert isinstance(string, ast.String) and string.value == value


def test_lists_and_tuples():
    items = single_argument("[0, 4, 7]")
    assert isinstance(items, ast.ListValue)
    assert [i.value for i in items.items] == [0, 4, 7]
    assert single_argument("[]").items == ()
    assert len(single_argument("[1,]").items) == 1
    pair = single_argument("(0, 2pi)")
    assert isinstance(pair, ast.TupleValue)
    assert [i.value for i in pair.items] == [0, 2 * math.pi]
    assert len(single_argument("(1,)").items) == 1
    nested = single_argument("[(0, 1), [2], 'a', log, 100ms]")
    assert [type(i) for i in nested.items] == [ast.TupleValue, ast.ListValue, ast.String,
                                               ast.Word, ast.Quantity]


def test_bare_words_and_keywords():
    args, keywords = call_arguments("x, log, all, window=100ms, log=True")
    assert args == (ast.Word("x", 0), ast.Word("log", 0), ast.Word("all", 0))
    assert [k.name for k in keywords] == ["window", "log"]
    assert keywords[0].value == ast.Quantity(0.1, "100ms", 0)
    assert keywords[1].value == ast.Word("True", 0)


def test_nested_calls_and_trailing_comma():
    (inner,) = call_arguments("g(h(1), k=2),")[0]
    assert isinstance(inner, ast.Call) and inner.function == "g"
    assert isinstance(inner.args[0], ast.Call) and inner.args[0].function == "h"


def test_columns_of_literals_point_at_their_first_character():
    text = "y ~ f(12, [ 1], ( 1, 2), - 3, 100ms, k=5)"
    args, keywords = call_arguments(text[6:-1])
    for node, char in zip(args, ["1", "[", "(", "-", "1"]):
        assert text[node.column - 1] == char
    assert text[keywords[0].column - 1] == "k"


@pytest.mark.parametrize("text, hint", [
    ("y ~ lag(x, 2.5 s)", "without a space"),
    ("y ~ history(8, log, window=100 ms)", "without a space"),
    ("y ~ lag(x, 2 min)", "without a space"),
])
def test_a_space_between_number_and_unit_is_rejected(text, hint):
    err = error_of(text)
    assert isinstance(err, gf.FormulaSyntaxError)
    assert hint in err.hint
    assert text[err.column - 1] in "smi"  # the caret is under the stray unit


def test_unknown_unit():
    err = error_of("y ~ history(8, log, window=10parsecs)")
    assert "unknown unit 'parsecs'" in err.what
    assert err.formula[err.column - 1:].startswith("parsecs")
    assert "ms" in err.hint


def test_numbers_too_large_for_a_float_are_rejected():
    err = error_of("y ~ pow(x, 1e400)")
    assert "too large" in err.what and err.formula[err.column - 1:].startswith("1e400")
    assert isinstance(error_of("y ~ lag(x, 1e308min)"), gf.FormulaSyntaxError)


# ---- response -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, response, units", [
    ("spikes ~ a", "spikes", None),
    ("spikes[3] ~ a", "spikes", (3,)),
    ("spikes[[0, 4, 7]] ~ a", "spikes", (0, 4, 7)),
    ("spikes[[0, 4, 7,]] ~ a", "spikes", (0, 4, 7)),
    ("spikes[-1] ~ a", "spikes", (-1,)),
    ("  spikes ~ a  ", "spikes", None),
])
def test_response(text, response, units):
    formula = gf.parse(text)
    assert (formula.response, formula.units) == (response, units)
    assert gf.parse(str(formula)) == formula


@pytest.mark.parametrize("text, what", [
    ("spikes[[]] ~ a", "empty"),
    ("spikes[1.5] ~ a", "integer"),
    ("spikes[[1, x]] ~ a", "integers"),
    ("spikes[100ms] ~ a", "integer"),
])
def test_bad_unit_selection(text, what):
    assert what in error_of(text).what


@pytest.mark.parametrize("text", ["a + b", "cyclic(hd, 12)", "~ a + b", "  ~ a"])
def test_missing_response(text):
    err = error_of(text)
    assert "no response" in err.what and err.column == 1
    assert "spikes ~" in err.hint
    formula = gf.parse(text, require_response=False)  # allowed for design_matrix()
    assert formula.response is None and str(formula).startswith("~ ")


def test_parse_accepts_a_formula():
    formula = gf.parse("spikes ~ a")
    assert gf.parse(formula) is formula
    with pytest.raises(gf.FormulaError):
        gf.parse(gf.parse("~ a", require_response=False))


# ---- errors: what, where (caret) and how to fix -------------------------------------------------

@pytest.mark.parametrize("text, column, what, hint", [
    ("spikes ~ (a + b", 16, "ends too early", "unbalanced"),
    ("spikes ~ a + b)", 15, "unexpected ')'", "unbalanced"),
    ("spikes ~ ((a + b)", 18, "ends too early", "unbalanced"),
    ("spikes ~ rcos(x, 5", 19, "ends too early", "unbalanced"),
    ("spikes ~ coupling([3, 5)", 24, "unexpected ')'", "unbalanced"),
    ("spikes ~ a +", 13, "ends too early", "operator needs a term on both sides"),
    ("spikes ~ a + * b", 14, "unexpected '*'", "operator needs a term on both sides"),
    ("spikes ~ a * * b", 14, "unexpected '*'", "operator needs a term on both sides"),
    ("spikes ~ : a", 10, "unexpected ':'", ""),
    ("spikes ~", 9, "ends too early", ""),
    ("spikes ~ a ~ b", 12, "unexpected '~'", "one '~'"),
    ("spikes ~ a b", 12, "unexpected name 'b'", ""),
    ("spikes ~ a;b", 11, "unexpected character ';'", ""),
    ("spikes ~ a $ b", 12, "unexpected character '$'", ""),
    ("spikes ~ 'hd'", 10, "unexpected string", ""),
    ("spikes ~ a**b", 13, "unexpected name 'b'", ""),
    ("spikes ~ a**0", 13, "'**' takes a positive whole number", "(a + b + c)**2"),
    ("spikes ~ (a + b)**2.5", 19, "'**' takes a positive whole number", ""),
    ("spikes ~ 2", 10, "the number 2 cannot be a term", "only 1"),
    ("spikes ~ a + 100ms", 14, "a duration cannot be a term", ""),
    ("spikes ~ -a", 10, "leading '-'", "subtract it"),
    ("spikes ~ a + -1", 14, "unexpected '-'", ""),
    ("spikes ~ rcos(x, k=5, 5)", 23, "positional argument follows a keyword", ""),
    ("spikes ~ rcos(x, 5, log=True, log=False)", 31, "'log' is given twice", ""),
    ("spikes ~ cyclc(hd, 12)", 10, "unknown term function 'cyclc'", "did you mean 'cyclic'?"),
    ("spikes ~ a + histroy(8)", 14, "unknown term function 'histroy'",
     "did you mean 'history'?"),
    ("spikes ~ rcos(lgo(x), 5)", 15, "unknown term function 'lgo'", "did you mean 'log'?"),
])
def test_error_messages_and_columns(text, column, what, hint):
    err = error_of(text)
    assert err.formula == text.strip()
    assert err.column == column, str(err)
    assert caret_column(err) == column
    assert what in err.what
    assert hint in (err.hint or "")
    # the message has what, the formula, the caret and the hint, in that order
    lines = str(err).split("\n")
    assert lines[0] == err.what and lines[1] == "    " + err.formula
    if err.hint:
        assert lines[-1] == err.hint


def test_error_classes():
    assert issubclass(gf.FormulaError, ValueError)
    assert isinstance(error_of("y ~ (a"), gf.FormulaSyntaxError)
    assert isinstance(error_of("y ~ cyclc(hd, 12)"), gf.UnknownNameError)
    assert isinstance(error_of("y ~ rcos(x)"), gf.TermArgumentError)


@pytest.mark.parametrize("text, what", [
    ("", "empty"), ("   ", "empty"), ("y ~ a\n+ b", "one line"), ("y ~ a +\n b", "one line"),
])
def test_empty_and_multiline(text, what):
    err = error_of(text)
    assert what in err.what and isinstance(err, gf.FormulaSyntaxError)


@pytest.mark.parametrize("value", [None, 3, b"y ~ a", ["y ~ a"]])
def test_not_a_string(value):
    err = error_of(value)
    assert "must be a string" in err.what


def test_unknown_function_lists_the_registry():
    err = error_of("y ~ frobnicate(x)")
    assert "did you mean" not in err.hint  # nothing is close: no wild guess
    assert "cyclic" in err.hint and "history" in err.hint


# ---- whitespace and equivalent spellings ------------------------------------------------------

@pytest.mark.parametrize("left, right", [
    ("spikes~a+b", "spikes ~ a + b"),
    ("spikes ~\ta\t*\tb", "spikes ~ a*b"),
    ("spikes ~ rcos( x , 5 , log = True )", "spikes ~ rcos(x, 5, log=True)"),
    ("spikes ~ history(8, window=0.1s)", "spikes ~ history(8, log, window=100ms)"),
    ("spikes ~ lag(x, 1e-3s)", "spikes ~ lag(x, 1ms)"),
    ("spikes ~ cyclic(hd, 12, period=6.283185307179586)", "spikes ~ cyclic(hd, 12)"),
    ("spikes ~ rcos(x, 5, range=[0, 1])", "spikes ~ rcos(x, 5, range=(0, 1))"),
])
def test_equivalent_spellings(left, right):
    assert gf.parse(left) == gf.parse(right)
    assert str(gf.parse(left)) == str(gf.parse(right))


# ---- security: nothing is ever evaluated --------------------------------------------------------

HOSTILE = [
    "y ~ __import__('os').system('touch /tmp/pwned')",
    "y ~ eval(1)",
    'y ~ exec("1")',
    "y ~ open('f')",
    "y ~ compile('1', 'f', 'exec')",
    "y ~ getattr(a, 'b')",
    "y ~ a.b",
    "y ~ a.__class__",
    "y ~ ().__class__.__bases__[0].__subclasses__()",
    "y ~ lambda x: x",
    "y ~ (lambda: 1)()",
    "y ~ [x for x in a]",
    "y ~ {'a': 1}",
    "y ~ a if b else c",
    "y ~ a; import os",
    "y ~ a\nimport os",
    "y ~ f'{x}'",
    "y ~ `ls`",
    "y ~ $(ls)",
    "y ~ a[0]",
    "y ~ a @ b",
    "y ~ rcos(x, __import__('os'))",
    "y ~ rcos(x, 5, range=__import__('os').getcwd())",
    "y ~ history(8, log, window=eval('100ms'))",
    "y ~ Q('a')",
    "y ~ I(a + b)",
    "__import__('os').system('x') ~ a",
    "os.system('x') ~ a",
]


@contextlib.contextmanager
def nothing_may_run():
    """Make every door to Python evaluation, imports or processes fail loudly inside the block.

    Only around the parse itself: pytest's own machinery may import things between steps.
    """
    gf.parse("y ~ cyclic(hd, 12) + history(8)")  # build the lark parser before closing doors
    calls: list[str] = []

    def forbidden(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called while parsing a formula")
        return refuse

    with contextlib.ExitStack() as stack:
        for name in ("eval", "exec", "compile", "__import__", "open", "breakpoint"):
            stack.enter_context(mock.patch.object(builtins, name, forbidden(name)))
        for name in ("system", "popen", "execv", "execve", "spawnv", "fork"):
            if hasattr(os, name):
                stack.enter_context(mock.patch.object(os, name, forbidden(f"os.{name}")))
        stack.enter_context(mock.patch.object(subprocess, "Popen",
                                              forbidden("subprocess.Popen")))
        yield calls


def parse_closed(text: str, **kwargs):
    """Parse with every door closed; return the Formula or the FormulaError, and the calls."""
    with nothing_may_run() as calls:
        try:
            result = gf.parse(text, **kwargs)
        except gf.FormulaError as err:  # anything else (AssertionError included) propagates
            result = err
    return result, calls


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_formulas_are_rejected_and_run_nothing(text):
    for require_response in (True, False):
        result, calls = parse_closed(text, require_response=require_response)
        assert isinstance(result, gf.FormulaError), result
        assert calls == []


def test_hostile_formula_messages_explain():
    err, _ = parse_closed("y ~ __import__('os').system('x')")
    assert err.column == 21 and "never run Python code" in err.hint
    err, _ = parse_closed("y ~ eval(1)")
    assert "unknown term function 'eval'" in err.what


def test_the_doors_are_really_closed():
    with nothing_may_run() as calls, pytest.raises(AssertionError):
        eval("1")  # noqa: S307 - checks that the guard itself works
    assert calls == ["eval"]


def test_python_names_are_only_names():
    # a bare name is a covariate to look up in the data, whatever it is called: nothing runs
    formula, calls = parse_closed("y ~ __import__ + eval + lambda")
    assert formula.terms == ("__import__", "eval", "lambda") and calls == []
