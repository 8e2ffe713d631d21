"""Model-spec files (TOML): data, fit options, competing models, comparison settings.

A spec is read with :mod:`tomllib` and validated as a whole: every problem is reported at once
with the file, line and key. A spec never evaluates code: formulas are parsed by the formula
language, data are read through pynapple or built by a named simulation.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import attrs
import pynapple as nap

from .. import datasets
from ..backend import regularizers
from ..compare import compare
from ..errors import BinSizeWarning, FormulaError, SpecError, did_you_mean, warn
from ..fitting.families import FAMILY_NAMES
from ..graph.data import DataSource
from ..graph.design import bare_bin_size_message, parse_bin_size
from ..terms.formula import Formula, parse

_SECTIONS = {
    "data": {"path", "simulate", "options", "bin_size", "epochs"},
    "fit": {"regularizer", "solver", "dtype", "family", "smoothing", "select"},
    "models": None,   # any names
    "compare": {"cv", "per_unit"},
}
_REGULARIZERS = {"ridge", "lasso", "group_lasso", "elastic_net"}


@attrs.frozen
class DataSpec:
    """Where the data come from: a file (``path``) or a built-in simulation (``simulate``)."""

    path: Path | None
    simulate: str | None
    options: dict
    bin_size: str | float
    epochs: str | None


@attrs.frozen
class ModelSpec:
    """A validated spec file."""

    source: Path
    data: DataSpec
    models: dict
    regularizer: object
    solver: str
    dtype: str | None
    cv: int
    per_unit: bool
    family: str = "poisson"
    smoothing: str | None = "auto"
    select: bool = False

    def load_data(self) -> Mapping:
        """The data mapping (read through pynapple, or simulated), checked against the models.

        Raises
        ------
        SpecError
            When the data cannot be read, or when names in the spec are not in them: every
            model's response and covariates and the ``epochs``, all reported at once with the
            file, line and key (see :meth:`check_data`).
        """
        data = self._read_data()
        self.check_data(data)
        return data

    def check_data(self, data: Mapping) -> None:
        """Check the names the spec uses against ``data``: the response and covariates of every
        model, and ``[data] epochs``. Every problem is reported at once (SpecError), each with
        the file, line and key, and names of the right kind suggested ("did you mean")."""
        problems = _Problems(self.source, _spec_text(self.source))
        response = next((f.response for f in self.models.values()), None)
        try:
            source = DataSource(data, response=response)
        except FormulaError as err:
            problems.add("data", "simulate" if self.data.simulate else "path", err.what,
                         err.hint or "")
            problems.raise_if_any()
        if self.data.epochs is not None:
            try:
                source.interval_set(self.data.epochs, role="epochs")
            except FormulaError as err:
                problems.add("data", "epochs", err.what, err.hint or "")
        responses_seen = set()
        for model, formula in self.models.items():
            # every model has the same response (checked on loading): report it once
            uses = [] if formula.response in responses_seen else [(formula.response, "response")]
            responses_seen.add(formula.response)
            uses += [(name, "covariate") for name in formula.variables()]
            for name, role in uses:
                try:
                    source.check_pynapple(name, role=role)
                except FormulaError as err:
                    problems.add("models", model, err.what, err.hint or "")
        problems.raise_if_any()

    def _read_data(self) -> Mapping:
        if self.data.simulate is not None:
            try:
                return datasets.load(self.data.simulate, **self.data.options)
            except (ValueError, TypeError, OverflowError) as err:  # e.g. duration = -5
                raise SpecError(f"{self.source}: [data] options: the simulation "
                                f"{self.data.simulate!r} cannot run with {self.data.options}: "
                                f"{err}", hint="check the option values") from None
        try:
            return nap.load_file(str(self.data.path))
        except Exception as err:  # pynapple raises many kinds; the user needs one message
            raise SpecError(f"{self.source}: [data] path: could not read {self.data.path}: "
                            f"{type(err).__name__}: {err}",
                            hint="give an NWB file or a pynapple .npz file") from None


class _Problems:
    def __init__(self, path: Path, text: str):
        self.path, self.text, self.items = path, text, []

    def add(self, section: str | None, key: str | None, message: str, hint: str = "") -> None:
        line = _line_of(self.text, section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"[{section}]" + (f" {key}" if key else "") if section else (key or "")
        self.items.append(f"{where}: {name}: {message}" + (f" ({hint})" if hint else ""))

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            raise SpecError(f"{count} problem{'s' if count > 1 else ''} in the spec file:\n  " +
                            "\n  ".join(self.items),
                            hint="fix them and run `glmformula check` again")


def _spec_text(path: Path) -> str:
    """The spec's text, to find lines in ('' if it can no longer be read: no line numbers)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _line_of(text: str, section: str | None, key: str | None) -> int | None:
    current = None
    header = re.compile(r"^\s*\[([^\]]+)\]")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            current = match.group(1).strip()
            if key is None and current == section:
                return number
            continue
        if key and (current == section or (section is None and current is None)) and \
                re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def load_spec(path) -> ModelSpec:
    """Read and validate a model-spec file (every problem reported at once).

    Raises
    ------
    SpecError
        Naming the file, line and key of each problem.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {path} not found", hint="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a text file (not valid UTF-8 at byte {err.start})",
                        hint="a spec file is TOML text; check that this is the right file") \
            from None
    except OSError as err:
        raise SpecError(f"{path}: cannot be read ({err.strerror or err})",
                        hint="check the file's permissions") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}",
                        hint="check quotes, brackets and '=' signs on that line") from None
    problems = _Problems(path, text)
    tables = {}
    for section, value in raw.items():
        if section not in _SECTIONS:
            hint = did_you_mean(section, _SECTIONS)
            problems.add(None, section, "unknown section",
                         (hint + " " if hint else "") + "sections: " +
                         ", ".join(f"[{s}]" for s in _SECTIONS))
        elif not isinstance(value, dict):
            problems.add(None, section, "must be a table", f"write it as a [{section}] section")
            tables[section] = {}  # reported; the other sections are still checked
        else:
            tables[section] = value
            if _SECTIONS[section] is not None:
                for key in value:
                    if key not in _SECTIONS[section]:
                        hint = did_you_mean(key, _SECTIONS[section])
                        problems.add(section, key, "unknown key",
                                     (hint + " " if hint else "") + "keys: " +
                                     ", ".join(sorted(_SECTIONS[section])))
    data = _data_spec(tables.get("data", {}), path, problems)
    models = _models(tables.get("models", None if "models" not in raw else {}), problems)
    regularizer = _regularizer(tables.get("fit", {}).get("regularizer"), problems)
    fit = tables.get("fit", {})
    solver = fit.get("solver", "auto")
    if not isinstance(solver, str) or solver not in {"auto", "newton", "lbfgs", "proximal"}:
        problems.add("fit", "solver", f"unknown solver {solver!r}",
                     "auto, newton, lbfgs or proximal")
    dtype = fit.get("dtype")
    if dtype not in (None, "float32", "float64"):
        problems.add("fit", "dtype", f"unknown dtype {dtype!r}", "float32 or float64")
    family = fit.get("family", "poisson")
    if not isinstance(family, str) or family not in FAMILY_NAMES:
        hint = did_you_mean(family, FAMILY_NAMES) if isinstance(family, str) else None
        problems.add("fit", "family", f"unknown family {family!r}",
                     (hint + " " if hint else "") + ", ".join(FAMILY_NAMES))
        family = "poisson"
    smoothing = fit.get("smoothing", "auto")
    if smoothing not in ("auto", "none"):
        problems.add("fit", "smoothing", f"unknown smoothing {smoothing!r}",
                     '"auto" (strengths chosen from the data) or "none"')
    select = fit.get("select", False)
    if not isinstance(select, bool):
        problems.add("fit", "select", "must be true or false")
    compare = tables.get("compare", {})
    cv = compare.get("cv", 5)
    if not isinstance(cv, int) or isinstance(cv, bool) or (cv != 0 and cv < 2):
        problems.add("compare", "cv", f"must be a whole number >= 2 (or 0), got {cv!r}")
    per_unit = compare.get("per_unit", False)
    if not isinstance(per_unit, bool):
        problems.add("compare", "per_unit", "must be true or false")
    problems.raise_if_any()
    return ModelSpec(path, data, models, regularizer, solver, dtype, cv, per_unit, family,
                     None if smoothing == "none" else "auto", select)


def _data_spec(section: dict, path: Path, problems: _Problems) -> DataSpec | None:
    if not isinstance(section, dict):
        return None
    file, simulate = section.get("path"), section.get("simulate")
    if (file is None) == (simulate is None):
        problems.add("data", None, "give exactly one of path = \"...\" or simulate = \"...\"")
    resolved = None
    if file is not None:
        if not isinstance(file, str):
            problems.add("data", "path", "must be a string")
        else:
            resolved = _resolve_path(file, path, problems)
    if simulate is not None:
        if not isinstance(simulate, str) or simulate not in datasets.available():
            problems.add("data", "simulate", f"unknown simulation {simulate!r}",
                         "one of " + ", ".join(datasets.available()))
            simulate = None if not isinstance(simulate, str) else simulate
    options = section.get("options", {})
    if not isinstance(options, dict):
        problems.add("data", "options", "must be a table, e.g. { seed = 1 }")
        options = {}
    elif simulate is not None:
        _check_options(simulate, options, problems)
    bin_size = section.get("bin_size")
    if bin_size is None:
        problems.add("data", "bin_size", "is required", "e.g. bin_size = \"10ms\"")
    else:
        try:
            seconds = parse_bin_size(bin_size)
        except FormulaError as err:
            problems.add("data", "bin_size", err.what, "e.g. bin_size = \"10ms\"")
        else:
            _warn_bare_bin_size(bin_size, seconds, problems)
    epochs = section.get("epochs")
    if epochs is not None and not isinstance(epochs, str):
        problems.add("data", "epochs", "must be the name of an IntervalSet in the data")
    return DataSpec(resolved, simulate, dict(options), bin_size, epochs)


def _warn_bare_bin_size(bin_size, seconds: float, problems: _Problems) -> None:
    """``bin_size = 10`` is 10-second bins: warn (BinSizeWarning), naming the file and line,
    for a number without a unit above 1 s (a quantity such as "10s" says what it means)."""
    if isinstance(bin_size, str) or seconds <= 1:
        return
    line = _line_of(problems.text, "data", "bin_size")
    where = f"{problems.path}:{line}" if line else str(problems.path)
    warn(f"{where}: [data] bin_size: {bare_bin_size_message(bin_size)}", BinSizeWarning)


def _check_options(simulate: str, options: dict, problems: _Problems) -> None:
    """Simulation options: known names, and values of the default's type (numbers, flags)."""

    if simulate not in datasets.available():
        return
    params = inspect.signature(getattr(datasets, simulate)).parameters
    for key, value in options.items():
        if key not in params:
            hint = did_you_mean(key, params)
            problems.add("data", "options", f"the simulation {simulate!r} has no option "
                         f"{key!r}", (hint + " " if hint else "") + "options: " +
                         ", ".join(params))
            continue
        default = params[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value) and (isinstance(default, float) or isinstance(value, int))
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, (int, float, str, bool))
        if not ok:
            kind = type(default).__name__ if default is not inspect.Parameter.empty else "value"
            problems.add("data", "options", f"{key} = {value!r} is not a valid {kind}",
                         f"e.g. {key} = {default!r}" if default is not inspect.Parameter.empty
                         else "")


def _resolve_path(file: str, spec_path: Path, problems: _Problems) -> Path | None:
    folder = spec_path.resolve().parent
    target = (folder / file).resolve()
    allowed = [folder] + [Path(p).resolve() for p in
                          os.environ.get("GLMFORMULA_DATA", "").split(os.pathsep) if p]
    if not any(target == root or root in target.parents for root in allowed):
        problems.add("data", "path", f"{file!r} lies outside the spec file's folder",
                     "a spec may only read files beside it or below; list other data folders "
                     "in the GLMFORMULA_DATA environment variable")
        return None
    if not target.is_file():
        problems.add("data", "path", f"file {file!r} not found (looked for {target})")
        return None
    if target.suffix.lower() not in (".nwb", ".npz"):
        problems.add("data", "path", f"{target.suffix or 'no'} suffix: expected .nwb or .npz")
    return target


def _models(section, problems: _Problems) -> dict:
    if section is None:
        problems.add(None, "models", "the [models] section is missing",
                     "e.g. [models] hd = \"spikes ~ cyclic(head_direction, 12)\"")
        return {}
    models = {}
    for name, text in section.items():
        if not isinstance(text, str):
            problems.add("models", name, "must be a formula string")
            continue
        try:
            models[name] = parse(text)
        except FormulaError as err:
            problems.add("models", name, err.what.replace("\n", " "),
                         (err.hint or "").replace("\n", " "))
    responses = {f.response_text for f in models.values()}
    if len(responses) > 1:
        problems.add("models", None, "all models must have the same response, found " +
                     ", ".join(sorted(responses)))
    return models


def _regularizer(value, problems: _Problems):
    try:
        return regularizers.from_dict(value)
    except ValueError as err:
        problems.add("fit", "regularizer", str(err))
        return None


def run_spec(path, *, progress: bool = False):
    """Load a spec, read its data and run it: the comparison table (pandas DataFrame)."""
    spec = load_spec(path)
    data = spec.load_data()
    return compare(spec.models, data, bin_size=spec.data.bin_size, epochs=spec.data.epochs,
                   cv=spec.cv, regularizer=spec.regularizer, solver=spec.solver,
                   dtype=spec.dtype, per_unit=spec.per_unit, progress=progress,
                   family=spec.family, smoothing=spec.smoothing, select=spec.select)


__all__ = ["ModelSpec", "DataSpec", "load_spec", "run_spec", "Formula"]
