"""The closed registry of term functions and their declared signatures.

A formula can only call functions registered here. Built-in functions are registered by the
modules of :mod:`glmformula.functions` (one file per family, each declaring the signature and
how the function builds its columns); users add their own from Python with
:func:`term_function`. Nothing in a formula is ever evaluated as Python.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import attrs

from ..errors import TermArgumentError, UnknownNameError, did_you_mean
from ..syntax import ast
from . import params as kinds
from .values import FunctionCall, Variable


class _Marker:
    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A parameter without a default must be given.
REQUIRED = _Marker("REQUIRED")


@attrs.frozen
class Param:
    """One parameter of a term function.

    Parameters
    ----------
    name : str
        Keyword name.
    kind : object
        A kind from :mod:`glmformula.terms.params` that checks and normalises the value.
    default : object
        Default value, or :data:`REQUIRED`.
    keyword : bool
        Canonical text writes this parameter as ``name=value`` (else positionally).
    always_shown : bool
        Canonical text writes this parameter even when it equals its default.
    inherit_from : str, optional
        If not given, take the same-named argument of this function's call in the same formula
        (``coupling`` takes ``history``'s filters), before falling back to ``fallback``.
    fallback : object
        The value used when ``inherit_from`` finds nothing to inherit.
    keyword_only : bool
        Only given by name (``smooth=none``), never by position.
    """

    name: str
    kind: object
    default: object = REQUIRED
    keyword: bool = False
    always_shown: bool = False
    inherit_from: str | None = None
    fallback: object = None
    keyword_only: bool = False


@attrs.frozen
class TermFunction:
    """A registered term function: its signature and how it turns into features.

    ``role`` is ``"transform"`` for covariate-valued functions that may be nested in other
    calls (``rcos(log(speed), 5)``), ``"basis"`` for expansions of a covariate, ``"temporal"``
    for causal filters over spike trains or covariates, and ``"offset"``.
    ``build`` is called by the feature graph with the normalised call; ``compute`` (for row-wise
    functions only) maps the input columns to output columns with numpy.
    ``refuses`` lists keywords the function refuses on purpose, as ``(keyword, why, fix)``:
    another function has them, and a user may reach for them here (``history(start=...)``).
    """

    name: str
    params: tuple[Param, ...]
    role: str
    summary: str
    example: str
    build: Callable | None = None
    compute: Callable | None = None
    check: Callable | None = None
    refuses: tuple[tuple[str, str, str], ...] = ()

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


_REGISTRY: dict[str, TermFunction] = {}
_GENERATION = [0]  # bumped on every change, so cached parses never outlive the registry


def generation() -> int:
    """A number that changes whenever a term function is registered or removed."""
    return _GENERATION[0]


def register(function: TermFunction, *, replace: bool = False) -> TermFunction:
    """Add a term function to the registry (``replace=True`` to redefine a name)."""
    if not function.name.isidentifier():
        raise ValueError(f"term function name {function.name!r} is not an identifier")
    if function.name in _REGISTRY and not replace:
        raise ValueError(f"a term function named {function.name!r} is already registered; "
                         "pass replace=True to redefine it")
    _REGISTRY[function.name] = function
    _GENERATION[0] += 1
    return function


def unregister(name: str) -> None:
    """Remove a user-registered term function."""
    if _REGISTRY.pop(name, None) is not None:
        _GENERATION[0] += 1


def lookup(name: str) -> TermFunction | None:
    return _REGISTRY.get(name)


def registered() -> dict[str, TermFunction]:
    """A copy of the registry: name -> :class:`TermFunction`."""
    return dict(_REGISTRY)


def normalise_call(node: ast.Call, formula: str, *, nested: bool = False) -> FunctionCall:
    """Check a call against its function's signature and return the normalised factor.

    Raises
    ------
    UnknownNameError
        The function is not registered.
    TermArgumentError
        Wrong number, name, kind or unit of an argument.
    """
    function = _REGISTRY.get(node.function)
    if function is None:
        suggestion = did_you_mean(node.function, _REGISTRY)
        raise UnknownNameError(
            f"unknown term function '{node.function}'", formula=formula, column=node.column,
            hint=(suggestion + " " if suggestion else "") +
            "(term functions: " + ", ".join(sorted(_REGISTRY)) + ")")
    if nested and function.role != "transform":
        raise TermArgumentError(
            f"{function.name}() makes model columns and cannot be used inside another call",
            formula=formula, column=node.column,
            hint="nest only transforms such as log(), sqrt(), center() or lag(); combine "
                 "terms with ':' instead (e.g. cyclic(hd, 8):speed)")
    values = _bind(function, node, formula)
    call = _make_call(function, values)
    if function.check is not None:
        problem = function.check(call)
        if problem:
            raise TermArgumentError(f"{function.name}(): {problem}", formula=formula,
                                    column=node.column, hint=f"write e.g. {function.example}")
    return call


def _bind(function: TermFunction, node: ast.Call, formula: str) -> dict:
    given: dict[str, object] = {}
    positional = [p for p in function.params if not p.keyword_only]
    if len(node.args) > len(positional):
        extra = node.args[len(positional)]
        raise TermArgumentError(
            f"{function.name}() takes at most {len(positional)} "
            f"argument{'' if len(positional) == 1 else 's'}, "
            f"got {len(node.args)}", formula=formula, column=getattr(extra, "column", node.column),
            hint=f"write e.g. {function.example}")
    for param, arg in zip(positional, node.args):
        given[param.name] = arg
    names = [p.name for p in function.params]
    for keyword in node.keywords:
        refused = {k: (why, fix) for k, why, fix in function.refuses}
        if keyword.name in refused:
            why, fix = refused[keyword.name]
            raise TermArgumentError(f"{function.name}() has no '{keyword.name}': {why}",
                                    formula=formula, column=keyword.column, hint=fix)
        if keyword.name not in names:
            suggestion = did_you_mean(keyword.name, names)
            raise TermArgumentError(
                f"{function.name}() has no argument '{keyword.name}'", formula=formula,
                column=keyword.column,
                hint=(suggestion + " " if suggestion else "") +
                f"(its arguments: {', '.join(names)}; e.g. {function.example})")
        if keyword.name in given:
            raise TermArgumentError(
                f"{function.name}() got '{keyword.name}' twice (by position and by name)",
                formula=formula, column=keyword.column, hint=f"write e.g. {function.example}")
        given[keyword.name] = keyword.value
    values = {}
    for param in function.params:
        if param.name not in given:
            if param.default is REQUIRED:
                raise TermArgumentError(
                    f"{function.name}() needs its argument '{param.name}' "
                    f"({param.kind.description})", formula=formula, column=node.column,
                    hint=f"write e.g. {function.example}")
            values[param.name] = param.default
            continue
        where = kinds.Where(formula, function.name, param.name, function.example)
        values[param.name] = param.kind.convert(
            given[param.name], where,
            lambda call, nested: normalise_call(call, formula, nested=nested))
    return values


def _make_call(function: TermFunction, values: dict) -> FunctionCall:
    parts, positional_ok = [], True
    for param in function.params:
        value = values[param.name]
        shown = param.always_shown or param.default is REQUIRED or value != param.default
        if not shown or value is None:
            positional_ok = positional_ok and param.keyword
            continue
        text = param.kind.format(value)
        if param.keyword or not positional_ok:
            parts.append(f"{param.name}={text}")
        else:
            parts.append(text)
    arguments = tuple((p.name, values[p.name]) for p in function.params)
    return FunctionCall(function.name, arguments, f"{function.name}({', '.join(parts)})")


def with_arguments(call: FunctionCall, **changes) -> FunctionCall:
    """The same call with some arguments replaced (canonical text recomputed)."""
    function = _REGISTRY[call.function]
    values = dict(call.arguments)
    values.update(changes)
    return _make_call(function, values)


def term_function(name: str | Callable | None = None, *,
                  params: tuple[Param, ...] | None = None,
                  summary: str = "", replace: bool = False):
    """Register a row-wise term function from Python (never from a formula).

    The decorated function receives the covariate(s) as float arrays of shape
    ``(n_rows, n_columns)`` (sampled at the bin centres) and its other arguments as numbers,
    and returns an array ``(n_rows, k)`` (or ``(n_rows,)``). It must act row by row (no use of
    neighbouring rows), so that designs can be built in blocks of time.

    Parameters are inferred from the signature when ``params`` is not given: parameters without
    a default are covariates; an int default makes a whole number, a float a number, a bool a flag.

    Examples
    --------
    >>> import numpy as np, glmformula as gf
    >>> @gf.term_function("halfwave")
    ... def halfwave(x, threshold=0.0):
    ...     return np.maximum(x - threshold, 0.0)
    >>> gf.parse("spikes ~ halfwave(speed, threshold=2.5)").terms
    ('halfwave(speed, threshold=2.5)',)
    """

    if callable(name):  # used bare, as @term_function without parentheses
        return term_function(params=params, summary=summary, replace=replace)(name)

    def decorate(compute: Callable) -> Callable:
        function_name = name or compute.__name__
        declared = params if params is not None else _infer_params(compute)
        n_covariates = sum(isinstance(p.kind, kinds.Covariate) for p in declared)
        if n_covariates == 0:
            raise ValueError(f"term function {function_name!r} needs at least one covariate "
                             "parameter (a parameter without a default)")
        example_args = ", ".join(p.name for p in declared if p.default is REQUIRED)
        register(TermFunction(
            name=function_name, params=tuple(declared), role="transform",
            summary=summary or (compute.__doc__ or "").strip().split("\n")[0],
            example=f"{function_name}({example_args})", compute=compute), replace=replace)
        return compute

    return decorate


def _infer_params(compute: Callable) -> tuple[Param, ...]:
    declared = []
    for parameter in inspect.signature(compute).parameters.values():
        default = parameter.default
        if default is inspect.Parameter.empty:
            declared.append(Param(parameter.name, kinds.Covariate()))
        elif isinstance(default, bool):
            declared.append(Param(parameter.name, kinds.Flag(), default, keyword=True))
        elif isinstance(default, int):
            declared.append(Param(parameter.name, kinds.Count(minimum=-(10**9), maximum=10**9),
                                  default, keyword=True))
        elif isinstance(default, float):
            declared.append(Param(parameter.name, kinds.Real(), default, keyword=True))
        else:
            raise ValueError(f"cannot infer the kind of parameter {parameter.name!r}: give "
                             "params=(Param(...), ...) explicitly")
    return tuple(declared)


__all__ = ["Param", "TermFunction", "REQUIRED", "register", "unregister", "lookup",
           "registered", "normalise_call", "with_arguments", "term_function", "Variable"]
