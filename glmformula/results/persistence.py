"""Save and load fitted results in an open format: one ``.npz`` of arrays plus JSON metadata.

No pickle: a result file holds only numbers and text, so loading one from an untrusted source
can do nothing but create a :class:`FitResult`. Everything needed to predict on new data is
kept: the formula, the binning, the training statistics and the weights.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import FormulaError
from ..terms.formula import parse
from .covariance import CovarianceStack

FORMAT = "glmformula-result"
#: 2 added the covariates' training ranges; 3 stores the covariances of the units computed so
#: far (``covariance_units``). Files of versions 1 and 2 still load.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

_ARRAYS = ("weights", "intercepts", "epochs", "log_likelihood_units",
           "n_spikes", "converged_units", "n_iter_units", "grad_norm")


def _unit_json(unit):
    return unit.item() if hasattr(unit, "item") else unit


def save_result(result, path) -> Path:
    """Write ``result`` to ``path`` (``.npz`` added if missing), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    arrays = {name: np.asarray(getattr(result, name)) for name in _ARRAYS}
    # Covariances a large fit has not computed yet are not computed here (that may take
    # hours): the file holds those computed so far.
    covariance = result.covariance
    arrays["covariance_units"] = covariance.computed_units
    arrays["covariance"] = np.stack([covariance[u] for u in covariance.computed_units]) \
        if len(covariance.computed_units) else np.zeros((0,) + covariance.shape[1:])
    for u, columns in enumerate(result.unit_columns):
        arrays[f"unit_columns_{u}"] = np.asarray(columns, dtype=np.int64)
    state_keys = []
    for i, (key, values) in enumerate(result.state.items()):
        state_keys.append([key, len(values)])
        for j, value in enumerate(values):
            arrays[f"state_{i}_{j}"] = np.asarray(value, dtype=float)
    range_keys = []
    for i, (name, rng) in enumerate(result.covariate_ranges.items()):
        range_keys.append([name, bool(rng.interval)])
        arrays[f"range_{i}_low"] = np.asarray(rng.low, dtype=float)
        arrays[f"range_{i}_high"] = np.asarray(rng.high, dtype=float)
    regularizer = result.regularizer
    metadata = {
        "format": FORMAT, "version": VERSION, "formula": str(result.formula),
        "unit_ids": [_unit_json(u) for u in result.unit_ids], "bin_size": result.bin_size,
        "storage_columns": list(result.storage_columns),
        "unit_labels": [[list(pair) for pair in labels] for labels in result.unit_labels],
        "term_storage": {k: [v.start, v.stop] for k, v in result.term_storage.items()},
        "state_keys": state_keys, "covariate_ranges": range_keys, "n_rows": result.n_rows,
        "solver": result.solver,
        "dtype": result.dtype, "constrained_terms": list(result.constrained_terms),
        "fit_seconds": result.fit_seconds, "compile_seconds": result.compile_seconds,
        "dropped": result.dropped,
        "regularizer": None if regularizer is None else {
            "type": type(regularizer).__name__,
            "strength": _strength_json(getattr(regularizer, "strength", None)),
            "l1_ratio": getattr(regularizer, "l1_ratio", None)},
    }
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _strength_json(strength):
    if strength is None or isinstance(strength, (int, float)):
        return strength
    return dict(strength)


def _covariance(arrays) -> CovarianceStack:
    dense = arrays["covariance"]
    if "covariance_units" not in arrays:  # versions 1 and 2: every unit
        return CovarianceStack.from_dense(dense)
    n_units, n_columns = len(arrays["intercepts"]), dense.shape[1] - 1
    support = np.arange(n_columns)
    parts = {int(u): (support, dense[i]) for i, u in enumerate(arrays["covariance_units"])}
    return CovarianceStack(n_units, n_columns, parts=parts,
                           unavailable="it had not been computed when the result was saved "
                                       "(large fits compute it on first use)")


def load_result(path):
    """Read a result written by :meth:`FitResult.save` (no pickle involved)."""
    from .. import backend
    from .evaluation import CovariateRange
    from .fit_result import FitResult

    path = Path(path)
    if not path.is_file():
        raise FormulaError(f"result file {path} not found", hint="check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        metadata = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError) as err:
        raise FormulaError(f"{path} is not a glmformula result file ({err})",
                           hint="results are written by FitResult.save()") from None
    if metadata.get("format") != FORMAT:
        raise FormulaError(f"{path} is not a glmformula result file",
                           hint="results are written by FitResult.save()")
    if metadata.get("version") not in READABLE_VERSIONS:
        raise FormulaError(f"{path} was written by a newer glmformula (result format version "
                           f"{metadata.get('version')})", hint="upgrade glmformula to read it")
    state = {}
    for i, (key, n) in enumerate(metadata["state_keys"]):
        state[key] = tuple(arrays[f"state_{i}_{j}"] for j in range(n))
    ranges = {name: CovariateRange(arrays[f"range_{i}_low"], arrays[f"range_{i}_high"],
                                   bool(interval))
              for i, (name, interval) in enumerate(metadata.get("covariate_ranges", []))}
    units = metadata["unit_ids"]
    regularizer = None
    if metadata["regularizer"] is not None:
        spec = metadata["regularizer"]
        cls = getattr(backend, spec["type"])
        kwargs = {"strength": spec["strength"]}
        if spec.get("l1_ratio") is not None:
            kwargs["l1_ratio"] = spec["l1_ratio"]
        regularizer = cls(**kwargs)
    return FitResult(
        formula=parse(metadata["formula"]), unit_ids=tuple(units),
        bin_size=float(metadata["bin_size"]), epochs=arrays["epochs"],
        storage_columns=tuple(metadata["storage_columns"]),
        unit_columns=tuple(arrays[f"unit_columns_{u}"] for u in range(len(units))),
        unit_labels=tuple(tuple(tuple(p) for p in labels) for labels in metadata["unit_labels"]),
        term_storage={k: slice(*v) for k, v in metadata["term_storage"].items()},
        weights=arrays["weights"], intercepts=arrays["intercepts"],
        covariance=_covariance(arrays), state=state,
        log_likelihood_units=arrays["log_likelihood_units"], n_rows=int(metadata["n_rows"]),
        n_spikes=arrays["n_spikes"], converged_units=arrays["converged_units"],
        n_iter_units=arrays["n_iter_units"], grad_norm=arrays["grad_norm"],
        solver=metadata["solver"], dtype=metadata["dtype"], regularizer=regularizer,
        constrained_terms=tuple(metadata["constrained_terms"]),
        fit_seconds=float(metadata["fit_seconds"]),
        compile_seconds=float(metadata["compile_seconds"]), dropped=metadata["dropped"],
        covariate_ranges=ranges)
