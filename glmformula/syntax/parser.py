"""Text to syntax tree: run the lark grammar and map each rule to a value in :mod:`.ast`.

lark's own exceptions never leave this module: they become :class:`FormulaSyntaxError` with a
caret under the offending column and a hint. A formula longer or more deeply nested than the
limits of :mod:`.limits` is refused before lark sees it, and the tree is transformed without
recursion, so that no text can make the parser raise RecursionError or run for long.
"""

from __future__ import annotations

import decimal
import math
import re

import lark

from ..errors import FormulaSyntaxError
from . import ast
from .grammar import formula_parser
from .limits import MAX_DEPTH, MAX_LENGTH, MAX_POWER, shorten, thousands

#: Time units a quantity may carry, in seconds.
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}

_NUMBER = re.compile(r"(?P<num>(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)(?P<unit>[a-zA-Z_]+)?$")

# brackets, and the strings inside which brackets are only characters
_BRACKETS = re.compile(r"""[()\[\]]|"[^"\n]*"|'[^'\n]*'""")

_OPERATOR_NAMES = {
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "COLON": "':'",
    "__ANON_0": "'**'", "TILDE": "'~'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "EQUAL": "'='", "LSQB": "'['", "RSQB": "']'", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "$END": "the end of the formula",
}


def parse_syntax(text: str) -> ast.FormulaSyntax:
    """Parse formula text into a :class:`ast.FormulaSyntax` (no meaning attached yet).

    Raises
    ------
    FormulaSyntaxError
        With the formula, a caret at the offending column and a hint.
    """
    if not isinstance(text, str):
        raise FormulaSyntaxError(f"a formula must be a string, not {type(text).__name__}",
                                 hint="write it as text, e.g. \"spikes ~ cyclic(hd, 12)\"")
    _check_length(text)
    if "\n" in text.strip():
        raise FormulaSyntaxError("a formula must be written on one line", formula=text,
                                 hint="join the lines with spaces")
    stripped = text.strip()
    if not stripped:
        raise FormulaSyntaxError("the formula is empty",
                                 hint="write e.g. \"spikes ~ cyclic(head_direction, 12)\"")
    _check_depth(stripped)
    try:
        tree = formula_parser().parse(stripped)
    except lark.exceptions.UnexpectedInput as err:
        raise _syntax_error(stripped, err) from None
    try:
        return _ToSyntax(stripped).transform(tree)
    except lark.exceptions.VisitError as err:
        if isinstance(err.orig_exc, FormulaSyntaxError):
            raise err.orig_exc from None
        raise


def _check_length(text: str) -> None:
    """Refuse a formula longer than :data:`MAX_LENGTH` (without echoing it back)."""
    if len(text) > MAX_LENGTH:
        raise FormulaSyntaxError(
            f"the formula has {thousands(len(text))} characters, more than the limit of "
            f"{thousands(MAX_LENGTH)} characters",
            hint="split a very large model into smaller formulas, or use shorter covariate "
                 "names")


def _check_depth(text: str) -> None:
    """Refuse brackets nested deeper than :data:`MAX_DEPTH` (brackets in strings do not count).

    Checked on the text, before lark builds a tree as deep as the nesting.
    """
    depth = 0
    for match in _BRACKETS.finditer(text):
        bracket = match.group()
        if bracket in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise FormulaSyntaxError(
                    f"the formula nests parentheses and brackets more than {MAX_DEPTH} deep",
                    formula=text, column=match.start() + 1,
                    hint=f"remove redundant parentheses: at most {MAX_DEPTH} levels of ( ) and "
                         "[ ] may be open at once")
        elif bracket in ")]":
            depth -= 1


def _syntax_error(text: str, err: lark.exceptions.UnexpectedInput) -> FormulaSyntaxError:
    column = getattr(err, "column", None)
    if not isinstance(column, int) or column < 1:
        column = len(text) + 1
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        char = text[column - 1] if column - 1 < len(text) else ""
        hints = {
            ".": "attribute access is not part of the language; formulas never run Python code",
            "=": "use '=' only for keyword arguments inside a call, e.g. window=100ms",
            '"': "close the string with a matching quote",
            "'": "close the string with a matching quote",
        }
        hint = hints.get(char, "formulas use names, numbers, quantities like 100ms, and the "
                               "operators ~ + - * / : ** ( ) [ ] , =")
        return FormulaSyntaxError(f"unexpected character {char!r} in the formula",
                                  formula=text, column=column, hint=hint)
    token = getattr(err, "token", None)
    expected = sorted(getattr(err, "expected", set()) or set())
    if token is not None and token.type == "$END":
        what, column = "the formula ends too early", len(text) + 1
    elif token is not None:
        what = f"unexpected {_describe_token(token)}"
    else:
        what = "the formula is not well formed"
    return FormulaSyntaxError(what, formula=text, column=column,
                              hint=_hint_for(text, token, expected, column))


def _describe_token(token: lark.Token) -> str:
    if token.type in ("NAME", "NUMBER", "STRING"):
        return f"{token.type.lower()} {str(token)!r}"
    return f"{str(token)!r}"


def _hint_for(text: str, token, expected: list[str], column: int) -> str:
    if text.count("(") != text.count(")"):
        return "the parentheses are unbalanced: every '(' needs a matching ')'"
    if text.count("[") != text.count("]"):
        return "the brackets are unbalanced: every '[' needs a matching ']'"
    if token is not None and token.type == "TILDE":
        return "a formula has one '~', between the response and the terms"
    if token is not None and token.type == "NUMBER" and column > 1 and text[column - 2] == " ":
        previous = text[: column - 1].rstrip()
        if previous and previous[-1].isdigit():
            return "write a quantity without a space between number and unit, e.g. 100ms"
    if token is not None and token.type == "NAME" and column > 1:
        previous = text[: column - 1].rstrip()
        if previous and previous[-1].isdigit():
            return "write a quantity without a space between number and unit, e.g. 100ms"
    if token is not None and token.type == "$END" or (expected and token is not None
                                                      and token.type in _OPERATOR_NAMES
                                                      and str(token) in "+-*/:~"):
        return "an operator needs a term on both sides (e.g. 'a + b'); remove the dangling one"
    readable = [_OPERATOR_NAMES.get(e, e) for e in expected if e in _OPERATOR_NAMES]
    if readable:
        return "expected " + ", ".join(dict.fromkeys(readable)) + " here"
    return "check the formula against the language reference (docs/language.md)"


def parse_number(text: str, column: int, formula: str) -> ast.Number | ast.Quantity:
    """Split a NUMBER token into a plain number, a time quantity or a multiple of pi."""
    match = _NUMBER.match(text)
    number, unit = float(match["num"]), match["unit"]
    if not math.isfinite(number):
        # before the decimal arithmetic below, which overflows (decimal.Overflow) on 1e999999999
        raise _too_large(text, column, formula)
    if unit in TIME_UNITS:
        # decimal arithmetic, so that 700ms and 0.7s are the same float (canonical text of a
        # duration must read back exactly: see glmformula.terms.values.Duration)
        number = float(decimal.Decimal(match["num"]) * decimal.Decimal(repr(TIME_UNITS[unit])))
    elif unit == "pi":
        number = number * math.pi
    if not math.isfinite(number):
        raise _too_large(text, column, formula)
    if unit is None or unit == "pi":
        return ast.Number(number, text, column)
    if unit in TIME_UNITS:
        return ast.Quantity(number, text, column)
    raise FormulaSyntaxError(
        f"unknown unit {unit!r} in {text!r}", formula=formula, column=column + len(match["num"]),
        hint="time quantities take us, ms, s, min or h (e.g. 100ms); angles may use pi (2pi)")


def _too_large(text: str, column: int, formula: str) -> FormulaSyntaxError:
    return FormulaSyntaxError(f"the number {shorten(text)!r} is too large", formula=formula,
                              column=column, hint="write a number below 1e308")


class _ToSyntax(lark.visitors.Transformer_NonRecursive):
    """One tiny method per grammar rule, each returning an :mod:`.ast` value.

    lark's non-recursive transformer: a sum of thousands of terms is a tree thousands of
    levels deep (the grammar's rules are left-recursive), too deep for Python's stack.
    """

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    # -- formula and response -----------------------------------------------------------
    def formula(self, children):
        # "response?" leaves no placeholder: "~ x" gives one child, "y ~ x" two
        *response, rhs = children
        return ast.FormulaSyntax(response[0] if response else None, rhs, self._text)

    def bare_rhs(self, children):
        return ast.FormulaSyntax(None, children[0], self._text)

    def response(self, children):
        (name,) = children
        return ast.Response(str(name), None, name.column)

    def indexed_response(self, children):
        name, index = children
        if isinstance(index, ast.ListValue):
            units = []
            for item in index.items:
                if not (isinstance(item, ast.Number) and item.is_integer):
                    raise FormulaSyntaxError(
                        "a unit selection lists unit ids (integers)", formula=self._text,
                        column=item.column, hint="write e.g. spikes[[0, 4, 7]]")
                units.append(int(item.value))
            if not units:
                raise FormulaSyntaxError("the unit selection is empty", formula=self._text,
                                         column=index.column, hint="write e.g. spikes[[0, 4]]")
            return ast.Response(str(name), tuple(units), name.column)
        return ast.Response(str(name), (int(index.value),), name.column)

    def signed_int(self, children):
        (token,) = children
        number = parse_number(str(token), token.column, self._text)
        if not (isinstance(number, ast.Number) and number.is_integer):
            raise FormulaSyntaxError("a unit id must be an integer", formula=self._text,
                                     column=token.column, hint="write e.g. spikes[3]")
        text = self._text[: token.column - 1].rstrip()
        sign = -1 if text.endswith("-") else 1
        return ast.Number(sign * number.value, str(token), token.column)

    # -- algebra ---------------------------------------------------------------------------
    def _binary(op):  # noqa: N805 - a small factory used only in this class body
        def method(self, children, _op=op):
            left, right = children
            return ast.BinaryOp(_op, left, right, _column_of(left))
        return method

    add = _binary("+")
    subtract = _binary("-")
    cross = _binary("*")
    nest = _binary("/")
    interact = _binary(":")

    def power(self, children):
        base, exponent = children
        number = parse_number(str(exponent), exponent.column, self._text)
        if not (isinstance(number, ast.Number) and number.is_integer and number.value >= 1):
            raise FormulaSyntaxError("'**' takes a positive whole number", formula=self._text,
                                     column=exponent.column, hint="write e.g. (a + b + c)**2")
        if number.value > MAX_POWER:
            # a power above the number of factors changes nothing, so a huge one is a typo;
            # refusing it also spares the expansion a loop of 10**40 rounds
            raise FormulaSyntaxError(
                f"'**' takes a whole number up to {MAX_POWER}, not {shorten(number.text)}",
                formula=self._text, column=exponent.column,
                hint="a power above the number of factors changes nothing ((a + b)**5 is "
                     "(a + b)**2); write e.g. (a + b + c)**2")
        return ast.BinaryOp("**", base, number, _column_of(base))

    @lark.v_args(meta=True)
    def negate(self, meta, children):
        (operand,) = children
        return ast.Negate(operand, meta.column)  # the '-'

    def variable(self, children):
        (name,) = children
        return ast.Word(str(name), name.column)

    def constant(self, children):
        (token,) = children
        return parse_number(str(token), token.column, self._text)

    # -- calls and values ----------------------------------------------------------------
    def call(self, children):
        name, arguments = children
        args, keywords = [], []
        for argument in arguments or ():
            if isinstance(argument, ast.Keyword):
                if any(k.name == argument.name for k in keywords):
                    raise FormulaSyntaxError(
                        f"keyword {argument.name!r} is given twice", formula=self._text,
                        column=argument.column, hint="give each keyword once")
                keywords.append(argument)
            elif keywords:
                raise FormulaSyntaxError(
                    "a positional argument follows a keyword argument", formula=self._text,
                    column=_column_of(argument), hint="put positional arguments first")
            else:
                args.append(argument)
        return ast.Call(str(name), tuple(args), tuple(keywords), name.column)

    def arguments(self, children):
        return list(children)

    def keyword(self, children):
        name, value = children
        return ast.Keyword(str(name), value, name.column)

    def number(self, children):
        (token,) = children
        return parse_number(str(token), token.column, self._text)

    @lark.v_args(meta=True)
    def negative_number(self, meta, children):
        (token,) = children
        value = parse_number(str(token), token.column, self._text)
        column = meta.column  # the '-' (there may be blanks before the number)
        if isinstance(value, ast.Quantity):
            return ast.Quantity(-value.seconds, "-" + value.text, column)
        return ast.Number(-value.value, "-" + value.text, column)

    def string(self, children):
        (token,) = children
        return ast.String(str(token)[1:-1], token.column)

    def word(self, children):
        (token,) = children
        return ast.Word(str(token), token.column)

    def indexed_word(self, children):
        name, index = children
        return ast.IndexedWord(str(name), int(index.value), name.column)

    @lark.v_args(meta=True)
    def list(self, meta, children):
        items = tuple(c for c in children if c is not None)
        return ast.ListValue(items, meta.column)  # the '[' (also for an empty list)

    @lark.v_args(meta=True)
    def tuple(self, meta, children):
        items = tuple(c for c in children if c is not None)
        return ast.TupleValue(items, meta.column)


def _column_of(node) -> int:
    return getattr(node, "column", 1)
