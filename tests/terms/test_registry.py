"""The closed registry of term functions: built-in signatures, canonical defaults, user functions.

SPEC section 2: functions come from a closed registry; each checks its arguments at parse time
(number, names, kinds and units) and says how to fix a mistake; canonical text writes every
default out (``history(8)`` is ``history(8, log, window=100ms)``), ``coupling`` without k/window
takes those of the formula's ``history``; users may register their own row-wise term functions
from Python with a decorator, never from a formula.
"""

from __future__ import annotations

import numpy as np
import pytest

import glmformula as gf
from glmformula.terms import params as kinds
from glmformula.terms import registry

BUILT_INS = {"rcos", "bspline", "cyclic", "onehot", "log", "sqrt", "abs", "sin", "cos", "pow",
             "center", "scale", "lag", "filter", "history", "coupling", "offset"}


def terms_of(rhs: str) -> tuple[str, ...]:
    return gf.parse(f"spikes ~ {rhs}").terms


def error_of(rhs: str) -> gf.FormulaError:
    text = f"spikes ~ {rhs}"
    with pytest.raises(gf.FormulaError) as info:
        gf.parse(text)
    err = info.value
    assert err.formula == text
    if err.column is not None:  # the caret line points where err.column says
        caret = str(err).split("\n")[2]
        assert caret == "    " + " " * (err.column - 1) + "^"
    return err


def test_every_built_in_is_registered_with_an_example_that_parses():
    table = gf.registered()
    assert BUILT_INS <= set(table)
    for name in BUILT_INS:
        function = table[name]
        assert function.name == name and function.summary and function.params
        assert isinstance(function.role, str) and function.role
        example = gf.parse(f"spikes ~ {function.example}")
        assert example.calls(name) or any(name in t for t in example.terms)


# ---- canonical text: defaults written out where the function asks for it --------------------

@pytest.mark.parametrize("rhs, canonical", [
    # bases: short forms stay short, non-defaults are written as keywords
    ("rcos(x, 7)", "rcos(x, 7)"),
    ("rcos(x, k=7)", "rcos(x, 7)"),
    ("rcos(k=7, x=x)", "rcos(x, 7)"),
    ("rcos(x, 7, log=False)", "rcos(x, 7)"),
    ("rcos(x, 7, True)", "rcos(x, 7, log=True)"),
    ("rcos(x, 7, log=1)", "rcos(x, 7, log=True)"),
    ("rcos(x, 7, range=[0, 1])", "rcos(x, 7, range=(0, 1))"),
    ("rcos(x, 7, range=(0, 2pi))", "rcos(x, 7, range=(0, 2pi))"),
    ("rcos(x, 7, range=(-1pi, pi))", "rcos(x, 7, range=(-1pi, pi))"),
    ("bspline(x, 6)", "bspline(x, 6)"),
    ("bspline(x, 6, 4)", "bspline(x, 6)"),
    ("bspline(x, 6, order=3)", "bspline(x, 6, order=3)"),
    ("cyclic(hd, 12)", "cyclic(hd, 12)"),
    ("cyclic(hd, 12, period=2pi)", "cyclic(hd, 12)"),
    ("cyclic(hd, 12, order=4, period=6.283185307179586)", "cyclic(hd, 12)"),
    ("cyclic(hd, 12, period=360)", "cyclic(hd, 12, period=360)"),
    ("cyclic(hd, 12, period=pi)", "cyclic(hd, 12, period=pi)"),
    ("cyclic(hd, 12.0, order=3)", "cyclic(hd, 12, order=3)"),
    ("onehot(x, 7)", "onehot(x, 7)"),
    ("onehot(x, 7, range=(0, 100))", "onehot(x, 7, range=(0, 100))"),
    # transforms
    ("log(x)", "log(x)"), ("sqrt(x)", "sqrt(x)"), ("abs(x)", "abs(x)"), ("sin(x)", "sin(x)"),
    ("cos(x)", "cos(x)"), ("center(x)", "center(x)"), ("scale(x)", "scale(x)"),
    ("pow(x, 2)", "pow(x, 2)"), ("pow(x, n=0.5)", "pow(x, 0.5)"),
    ("pow(x, -1e-3)", "pow(x, -0.001)"),
    ("lag(x, 50ms)", "lag(x, 50ms)"), ("lag(x, dt=0.25s)", "lag(x, 250ms)"),
    ("lag(x, -50ms)", "lag(x, -50ms)"), ("lag(x, 2min)", "lag(x, 120s)"),
    ("lag(x, 1e-3s)", "lag(x, 1ms)"), ("lag(x, 10us)", "lag(x, 0.01ms)"),
    ("offset(x)", "offset(x)"),
    # nesting of transforms
    ("rcos(log(speed), 5)", "rcos(log(speed), 5)"),
    ("rcos(lag(center(x), 10ms), 5)", "rcos(lag(center(x), 10ms), 5)"),
    ("filter(log(x), 3)", "filter(log(x), 3, window=100ms, log=True)"),
    # temporal terms: every default written out
    ("filter(x)", "filter(x, 8, window=100ms, log=True)"),
    ("filter(x, 4, window=200ms, log=False)", "filter(x, 4, window=200ms, log=False)"),
    ("history()", "history(8, log, window=100ms)"),
    ("history(8)", "history(8, log, window=100ms)"),
    ("history(8, log)", "history(8, log, window=100ms)"),
    ("history(8, linear)", "history(8, linear, window=100ms)"),
    ("history(8, False)", "history(8, linear, window=100ms)"),
    ("history(8, spacing=linear)", "history(8, linear, window=100ms)"),
    ("history(k=4)", "history(4, log, window=100ms)"),
    ("history(window=0.5s, k=3)", "history(3, log, window=500ms)"),
    ("history(8, log, 100ms)", "history(8, log, window=100ms)"),
    ("history(8, log, window=1s)", "history(8, log, window=1s)"),
    ("coupling(all)", "coupling(all, 8, log, window=100ms)"),
    ("coupling([5, 3, 5])", "coupling([3, 5], 8, log, window=100ms)"),
    ("coupling(3)", "coupling([3], 8, log, window=100ms)"),
    ("coupling(all, 4)", "coupling(all, 4, log, window=100ms)"),
    ("coupling(all, spacing=linear)", "coupling(all, 8, linear, window=100ms)"),
])
def test_canonical_text(rhs, canonical):
    assert terms_of(rhs) == (canonical,)
    assert terms_of(canonical) == (canonical,)  # canonical text is a fixed point


def test_coupling_inherits_the_history_filters():
    assert terms_of("history(4, linear, window=20ms) + coupling(all)") == (
        "history(4, linear, window=20ms)", "coupling(all, 4, linear, window=20ms)")
    # the order of the terms does not matter
    assert terms_of("coupling([1, 2]) + history(6)") == (
        "coupling([1, 2], 6, log, window=100ms)", "history(6, log, window=100ms)")
    # what coupling states itself wins over the inherited values
    assert terms_of("history(4, linear, window=20ms) + coupling(all, 2, window=1s)") == (
        "history(4, linear, window=20ms)", "coupling(all, 2, linear, window=1s)")
    # without a history term: 8 log-spaced filters over 100ms
    assert terms_of("coupling(all)") == ("coupling(all, 8, log, window=100ms)",)


def test_the_design_card_reads_as_written():
    formula = gf.parse("spikes ~ rcos(position, 7) + history(8, log) + coupling(all)")
    assert formula.terms == ("rcos(position, 7)", "history(8, log, window=100ms)",
                             "coupling(all, 8, log, window=100ms)")
    assert str(formula) == ("spikes ~ rcos(position, 7) + history(8, log, window=100ms) + "
                            "coupling(all, 8, log, window=100ms)")
    spec = gf.parse("spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)")
    assert (spec.response, spec.terms, spec.intercept) == (
        "spikes", ("cyclic(hd, 12)", "history(8, log, window=100ms)"), True)


def test_calls_keep_their_normalised_arguments():
    (call,) = gf.parse("spikes ~ history(6, linear, window=0.25s)").calls("history")
    assert call.kwargs == {"k": 6, "spacing": "linear", "window": gf.terms.values.Duration(0.25),
                           "smooth": "auto"}
    (cyc,) = gf.parse("spikes ~ cyclic(hd, 12)").calls("cyclic")
    assert cyc.argument("period") == pytest.approx(2 * np.pi) and cyc.argument("order") == 4
    assert str(cyc.argument("x")) == "hd"
    (coupling,) = gf.parse("spikes ~ coupling([3, 5])").calls("coupling")
    assert coupling.argument("units").ids == (3, 5)


def test_one_history_term_per_formula():
    err = error_of("history(8) + history(4)")
    assert "more than one history()" in err.what
    assert terms_of("history(8) + history(8, log, window=100ms)") == (
        "history(8, log, window=100ms)",)  # the same term twice is one term


# ---- signature checks -------------------------------------------------------------------------

@pytest.mark.parametrize("rhs, what, column_text, hint", [
    # number of arguments
    ("rcos(x)", "needs its argument 'k'", "rcos(", "rcos(position, 7)"),
    ("rcos(x, 5, True, (0, 1), 9)", "takes at most 4 arguments, got 5", "9)", ""),
    ("log(x, 2)", "takes at most 1 argument, got 2", "2)", "log(speed)"),
    ("pow(x)", "needs its argument 'n'", "pow(", "pow(speed, 2)"),
    ("lag(x)", "needs its argument 'dt'", "lag(", "lag(speed, 50ms)"),
    ("onehot(x)", "needs its argument 'bins'", "onehot(", ""),
    ("cyclic()", "needs its argument 'x'", "cyclic(", ""),
    ("offset()", "needs its argument 'x'", "offset(", ""),
    ("rcos(x, 5, k=5)", "got 'k' twice", "k=5", ""),
    # unknown keyword, with a suggestion
    ("rcos(x, 5, lgo=True)", "has no argument 'lgo'", "lgo", "did you mean 'log'?"),
    ("history(8, widow=100ms)", "has no argument 'widow'", "widow", "did you mean 'window'?"),
    ("coupling(all, windw=1s)", "has no argument 'windw'", "windw", "did you mean 'window'?"),
    ("cyclic(hd, 12, perod=pi)", "has no argument 'perod'", "perod", "did you mean 'period'?"),
    ("bspline(x, 6, ordr=3)", "has no argument 'ordr'", "ordr", "did you mean 'order'?"),
    ("rcos(x, 5, zzz=1)", "has no argument 'zzz'", "zzz", "its arguments: x, k, log, range"),
    # wrong kinds
    ("rcos(100ms, 3)", "x must be a covariate name, not the duration 100ms", "100ms", ""),
    ("rcos('x', 3)", "x must be a covariate name, not the string 'x'", "'x'", ""),
    ("rcos(3, 3)", "x must be a covariate name, not the number 3", "3, 3", ""),
    ("rcos(x, '3')", "k must be a whole number, not the string '3'", "'3'", ""),
    ("rcos(x, 2.5)", "k must be a whole number, not the number 2.5", "2.5", ""),
    ("rcos(x, 1e-3)", "k must be a whole number", "1e-3", ""),
    ("rcos(x, log)", "k must be a whole number, not the word 'log'", "log", ""),
    ("rcos(x, 3, log=maybe)", "log must be True or False, not the word 'maybe'", "maybe", ""),
    ("rcos(x, 3, log=2)", "log must be True or False, not the number 2", "2)", ""),
    ("onehot(x, 5, range=(1, 2, 3))", "range must be a pair (low, high)", "(1, 2, 3)", ""),
    ("onehot(x, 5, range=5)", "range must be a pair (low, high)", "5)", ""),
    ("onehot(x, 5, range=(3, 1))", "range must have low < high", "(3, 1)", ""),
    ("onehot(x, 5, range=(0, 'a'))", "range must be a number, not the string 'a'", "'a'", ""),
    ("cyclic(hd, 12, period=-1)", "period must be positive", "-1", ""),
    ("cyclic(hd, 12, period=0)", "period must be positive", "0)", ""),
    ("cyclic(hd, 12, period=100ms)", "period must be a number", "100ms", ""),
    ("history(8, cubic)", "spacing must be log or linear, not the word 'cubic'", "cubic", ""),
    ("history(8, 'log')", "spacing must be log or linear, not the string 'log'", "'log'", ""),
    ("history(8, log, window=-100ms)", "window must be a positive duration", "-100ms", ""),
    ("history(8, log, window=0s)", "window must be a positive duration", "0s", ""),
    ("history(8, log, window=log)", "window must be a duration such as 100ms", "log)", ""),
    ("lag(x, 0ms)", "dt must not be zero", "0ms", ""),
    ("coupling(some)", "units must be all or a list of unit ids", "some", ""),
    ("coupling([])", "the list of unit ids is empty", "[]", "coupling([3, 5])"),
    ("coupling([3, 1.5])", "unit ids are whole numbers, not the number 1.5", "1.5", ""),
    ("coupling('all')", "units must be all or a list of unit ids", "'all'", ""),
    # missing time units: the hint offers the number with a unit
    ("history(8, log, window=100)", "window needs a time unit, got the plain number 100", "100)",
     "did you mean 100ms"),
    ("filter(x, 4, window=200)", "window needs a time unit", "200)", "200ms"),
    ("lag(x, 50)", "dt needs a time unit, got the plain number 50", "50)", "50ms"),
    ("coupling(all, 4, log, window=0.1)", "window needs a time unit", "0.1)", "0.1s"),
    # negative or zero basis sizes
    ("rcos(x, -3)", "k must be at least 1, got -3", "-3", ""),
    ("rcos(x, 0)", "k must be at least 1, got 0", "0)", ""),
    ("onehot(x, 0)", "bins must be at least 1, got 0", "0)", ""),
    ("history(-2)", "k must be at least 1, got -2", "-2", ""),
    ("history(0)", "k must be at least 1", "0)", ""),
    ("coupling(all, 0)", "k must be at least 1", "0)", ""),
    ("filter(x, -1)", "k must be at least 1", "-1", ""),
    ("bspline(x, 6, order=0)", "order must be at least 1", "0)", ""),
    # consistency between arguments
    ("bspline(x, 3)", "k=3 basis functions cannot be fewer than the spline order=4", "bspline",
     ""),
    ("cyclic(hd, 2)", "k=2 is too few for a periodic spline", "cyclic", ""),
    # nesting: only transforms go inside calls
    ("offset(rcos(x, 3))", "rcos() makes model columns", "rcos(x", "combine terms with ':'"),
    ("log(history(8))", "history() makes model columns", "history", ""),
    ("rcos(cyclic(hd, 8), 3)", "cyclic() makes model columns", "cyclic", ""),
])
def test_signature_errors(rhs, what, column_text, hint):
    err = error_of(rhs)
    assert isinstance(err, gf.TermArgumentError)
    assert what in err.what, err.what
    assert err.formula[err.column - 1:].startswith(column_text), str(err)
    assert hint in err.hint
    assert err.hint  # every signature error says how to fix it


def test_a_space_before_a_unit_is_a_syntax_error_not_a_number():
    err = error_of("history(8, log, window=2.5 s)")
    assert isinstance(err, gf.FormulaSyntaxError)
    assert "without a space" in err.hint


# ---- user-registered term functions -------------------------------------------------------------

@pytest.fixture
def cleanup():
    """Names registered by a test are removed afterwards, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        gf.unregister(name)
        assert name not in gf.registered()


def test_register_a_row_wise_function(cleanup):
    cleanup.append("halfwave")

    @gf.term_function("halfwave")
    def halfwave(x, threshold=0.0):
        """Half-wave rectification."""
        return np.maximum(x - threshold, 0.0)

    assert halfwave(np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]  # still a plain function
    assert terms_of("halfwave(speed)") == ("halfwave(speed)",)
    assert terms_of("halfwave(speed, threshold=2.5)") == ("halfwave(speed, threshold=2.5)",)
    assert terms_of("halfwave(speed, 2.5)") == ("halfwave(speed, threshold=2.5)",)
    function = gf.registered()["halfwave"]
    assert function.role == "transform" and function.compute is halfwave
    assert function.summary == "Half-wave rectification."
    # a transform: it nests in other calls, and interacts with other terms
    assert terms_of("rcos(halfwave(speed, threshold=1), 5)") == (
        "rcos(halfwave(speed, threshold=1), 5)",)
    assert terms_of("halfwave(speed):cyclic(hd, 8)") == ("halfwave(speed):cyclic(hd, 8)",)
    # its signature is checked like a built-in's
    err = error_of("halfwave(speed, treshold=1)")
    assert "did you mean 'threshold'?" in err.hint
    assert "must be a number" in error_of("halfwave(speed, threshold=100ms)").what
    assert "needs its argument 'x'" in error_of("halfwave()").what


def test_register_without_parentheses_and_inferred_kinds(cleanup):
    cleanup.append("clipped")

    @gf.term_function
    def clipped(x, y, n=3, flip=False, scale=1.0):
        return np.clip(x * y, -n, n) * (-1 if flip else 1) * scale

    assert callable(clipped)
    kinds_by_name = {p.name: type(p.kind) for p in gf.registered()["clipped"].params}
    assert kinds_by_name == {"x": kinds.Covariate, "y": kinds.Covariate, "n": kinds.Count,
                             "flip": kinds.Flag, "scale": kinds.Real}
    assert terms_of("clipped(a, b, n=2, flip=True, scale=0.5)") == (
        "clipped(a, b, n=2, flip=True, scale=0.5)",)
    assert terms_of("clipped(a, b, n=3, flip=False)") == ("clipped(a, b)",)
    assert "n must be a whole number" in error_of("clipped(a, b, n=1.5)").what


def test_register_with_explicit_params(cleanup):
    cleanup.append("delayed")

    @gf.term_function("delayed", params=(gf.Param("x", kinds.Covariate()),
                                         gf.Param("by", kinds.Time(), keyword=True)))
    def delayed(x, by):
        return x

    assert terms_of("delayed(x, by=0.5s)") == ("delayed(x, by=500ms)",)
    assert "did you mean 100ms" in error_of("delayed(x, by=100)").hint


def test_re_registering_needs_replace(cleanup):
    cleanup.append("twice")

    @gf.term_function("twice")
    def twice(x):
        return 2 * x

    with pytest.raises(ValueError, match="already registered"):
        @gf.term_function("twice")
        def twice_again(x):
            return 2 * x

    @gf.term_function("twice", replace=True)
    def twice_with_gain(x, gain=2.0):
        return gain * x

    assert gf.registered()["twice"].compute is twice_with_gain
    assert terms_of("twice(x, gain=3)") == ("twice(x, gain=3)",)  # the new signature, at once


def test_built_ins_cannot_be_shadowed_by_accident():
    def my_log(x):
        return x

    with pytest.raises(ValueError, match="already registered"):
        gf.term_function("log")(my_log)
    assert gf.registered()["log"].compute is not my_log
    assert gf.registered()["log"].role == "transform"


def test_unregister_removes_and_forgets_cached_parses(cleanup):
    cleanup.append("gone")

    @gf.term_function("gone")
    def gone(x):
        return x

    assert terms_of("gone(x)") == ("gone(x)",)
    gf.unregister("gone")
    assert "gone" not in gf.registered()
    err = error_of("gone(x)")  # not answered from the parse cache
    assert isinstance(err, gf.UnknownNameError)
    gf.unregister("gone")  # removing twice is harmless


def test_registration_errors(cleanup):
    with pytest.raises(ValueError, match="covariate"):
        @gf.term_function("constant")
        def constant(k=3):
            return k
    with pytest.raises(ValueError, match="not an identifier"):
        @gf.term_function("not a name")
        def bad(x):
            return x
    with pytest.raises(ValueError, match="cannot infer"):
        @gf.term_function("labelled")
        def labelled(x, label="a"):
            return x
    assert not {"constant", "not a name", "labelled"} & set(gf.registered())


def test_a_formula_cannot_register_or_define_functions():
    for text in ["spikes ~ term_function(x)", "spikes ~ register(x)", "spikes ~ def(x)"]:
        with pytest.raises(gf.UnknownNameError):
            gf.parse(text)
    assert set(gf.registered()) >= BUILT_INS


def test_registered_is_a_copy():
    table = gf.registered()
    table.pop("rcos")
    assert "rcos" in gf.registered()
    assert registry.lookup("rcos") is gf.registered()["rcos"]
