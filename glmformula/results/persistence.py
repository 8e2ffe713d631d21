"""Save and load fitted results in an open format: one ``.npz`` of arrays plus JSON metadata.

No pickle: a result file holds only numbers and text, so loading one from an untrusted source
can do nothing but create a :class:`FitResult`. Everything needed to predict on new data is
kept: the formula, the binning, the training statistics and the weights.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .._files import atomic_write
from ..backend import regularizers
from ..errors import FormulaError
from ..fitting import CovarianceStack, FitDiagnostics
from ..fitting.families import RESPONSE_KINDS
from ..fitting.smoothing import SmoothingSummary
from ..graph.layout import CovariateRange, DesignSpec
from ..terms.formula import parse

FORMAT = "glmformula-result"
#: 2 added the covariates' training ranges; 3 stores the covariances of the units computed so
#: far (``covariance_units``); 4 writes the regularizer as spec files do (``{"ridge": 1e-3}``)
#: the solver's passes and the training means of the columns (``column_means``, for curves in
#: Hz); 5 records the smoothness strengths and edf chosen (``smoothing``), the observation
#: family (``family``) and its fitted dispersion per unit (``dispersion``). Files of versions 1
#: to 4 still load (as Poisson fits).
VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)

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
    if result.spec.column_means is not None:
        arrays["column_means"] = np.asarray(result.spec.column_means, float)
    if getattr(result, "dispersion", None) is not None:
        arrays["dispersion"] = np.asarray(result.dispersion, float)
    smoothing = getattr(result, "smoothing_fit", None)
    if smoothing is not None:
        arrays["smoothing_strength"] = np.asarray(smoothing.strength, float)
        arrays["smoothing_total_edf"] = np.asarray(smoothing.total_edf, float)
        arrays["smoothing_criterion"] = np.asarray(smoothing.criterion, float)
        arrays["smoothing_converged"] = np.asarray(smoothing.converged, bool)
        arrays["smoothing_edf"] = np.asarray([smoothing.edf[t] for t in smoothing.edf], float)
    diagnostics = result.diagnostics
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
        "dropped": result.dropped, "chunk_size": result.chunk_size,
        "status": list(diagnostics.status),
        "passes": [diagnostics.n_hessian_passes, diagnostics.n_matmul_passes],
        "regularizer": regularizers.to_dict(result.regularizer),
        "offset_mean": result.spec.offset_mean,
        "family": getattr(result, "family", "poisson"),
        "smoothing": None if smoothing is None else {
            "keys": list(smoothing.keys), "key_terms": list(smoothing.key_terms),
            "edf_terms": list(smoothing.edf), "n_outer": smoothing.n_outer,
            "n_inner": smoothing.n_inner},
    }
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, buffer.getvalue())


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


def _regularizer(saved):
    """The regularizer of any readable version (1-3 wrote ``{"type": "Ridge", ...}``)."""
    if saved is None or "type" not in saved:
        return regularizers.from_dict(saved)
    key = {cls.__name__: k for k, cls in regularizers.KEYS.items()}[saved["type"]]
    value = {key: saved["strength"]}
    if saved.get("l1_ratio") is not None and key == "elastic_net":
        value["l1_ratio"] = saved["l1_ratio"]
    return regularizers.from_dict(value)


def read_result(path) -> dict:
    """The fields of a saved :class:`~glmformula.results.FitResult` (no pickle involved):
    ``FitResult(**read_result(path))`` is the result."""
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
    family = metadata.get("family", "poisson")  # versions 1-4: Poisson fits
    if family not in RESPONSE_KINDS:
        raise FormulaError(f"{path} holds a fit of an unknown family {family!r}",
                           hint="upgrade glmformula to read it")
    spec = DesignSpec(
        formula=parse(metadata["formula"]), bin_size=float(metadata["bin_size"]),
        epochs=arrays["epochs"], unit_ids=tuple(units),
        storage_columns=tuple(metadata["storage_columns"]),
        unit_columns=tuple(arrays[f"unit_columns_{u}"] for u in range(len(units))),
        unit_labels=tuple(tuple(tuple(p) for p in labels) for labels in metadata["unit_labels"]),
        term_storage={k: slice(*v) for k, v in metadata["term_storage"].items()},
        state=state, covariate_ranges=ranges, column_means=arrays.get("column_means"),
        offset_mean=float(metadata.get("offset_mean", 0.0)),
        response_kind=RESPONSE_KINDS[family])
    passes = metadata.get("passes", [0, 0])
    diagnostics = FitDiagnostics(
        converged=arrays["converged_units"], n_iter=arrays["n_iter_units"],
        grad_norm=arrays["grad_norm"], log_likelihood=arrays["log_likelihood_units"],
        n_rows=int(metadata["n_rows"]), n_spikes=arrays["n_spikes"],
        solver=metadata["solver"], dtype=metadata["dtype"],
        constrained_terms=tuple(metadata["constrained_terms"]), dropped=metadata["dropped"],
        fit_seconds=float(metadata["fit_seconds"]),
        compile_seconds=float(metadata["compile_seconds"]),
        chunk_size=metadata.get("chunk_size"), status=tuple(metadata.get("status", ())),
        n_hessian_passes=int(passes[0]), n_matmul_passes=int(passes[1]))
    return {"spec": spec, "weights": arrays["weights"], "intercepts": arrays["intercepts"],
            "covariance": _covariance(arrays), "diagnostics": diagnostics,
            "regularizer": _regularizer(metadata["regularizer"]), "family": family,
            "dispersion": arrays.get("dispersion"),
            "smoothing_fit": _smoothing(metadata.get("smoothing"), arrays)}


def _smoothing(saved, arrays) -> SmoothingSummary | None:
    """The smoothing record of a version-5 file (None for older files and unsmoothed fits)."""
    if not saved:
        return None
    edf = dict(zip(saved["edf_terms"], arrays["smoothing_edf"]))
    return SmoothingSummary(tuple(saved["keys"]), tuple(saved["key_terms"]),
                            arrays["smoothing_strength"], edf, arrays["smoothing_total_edf"],
                            arrays["smoothing_criterion"], arrays["smoothing_converged"],
                            int(saved["n_outer"]), int(saved["n_inner"]))


__all__ = ["save_result", "read_result", "FORMAT", "VERSION", "READABLE_VERSIONS"]
