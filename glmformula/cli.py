"""The ``glmformula`` command: compare, fit, check and demo.

Every error becomes a one-paragraph message and a non-zero exit status, never a traceback
(set GLMFORMULA_DEBUG=1 to see one). Output files are written under a temporary name and
renamed when complete, so an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__, datasets
from ._files import atomic_write
from .backend import Ridge
from .compare import compare
from .compare.distributed import dask_executor
from .compare.plotting import plot_comparison
from .errors import FormulaError, SpecError
from .fitting.families import FAMILY_NAMES
from .graph.design import prepare
from .results import fit
from .spec import load_spec

EXAMPLES = """examples:
  glmformula demo                               the built-in head-direction example
  glmformula check models.toml                  parse and validate a spec, fit nothing
  glmformula compare models.toml --out results  compare its models (table, CSV, PNG)
  glmformula fit models.toml --model hd --out results
"""


#: Seconds of simulated recording the demo uses by default.
DEMO_DURATION = 400.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glmformula", description="Formula-driven Poisson GLMs of spike trains.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"glmformula {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        return p

    p = add("compare", "cross-validated comparison of the models in a spec file")
    p.add_argument("spec", help="model-spec file (TOML)")
    p.add_argument("--out", metavar="DIR", help="folder for comparison.csv and comparison.png")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run (model, fold) fits on N local Dask workers")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a Dask scheduler to run the fits on")
    _family_option(p)
    _smoothing_option(p)

    p = add("fit", "fit one model of a spec file and write its tables and curves")
    p.add_argument("spec", help="model-spec file (TOML)")
    p.add_argument("--model", required=True, metavar="NAME",
                   help="name of the model in [models]")
    p.add_argument("--out", metavar="DIR",
                   help="folder for coefficients.csv, summary.csv and plots")
    _family_option(p)
    _smoothing_option(p)

    p = add("check", "parse and validate a spec file (and its data) without fitting")
    p.add_argument("spec", help="model-spec file (TOML)")

    p = add("demo", "run the built-in head-direction example (no files needed)")
    p.add_argument("--out", metavar="DIR", help="folder for the demo's CSV and PNG files")
    p.add_argument("--duration", type=float, default=DEMO_DURATION, metavar="SECONDS",
                   help=f"seconds of simulated recording (default {DEMO_DURATION:g})")
    return parser


def _family_option(parser) -> None:
    parser.add_argument("--family", choices=FAMILY_NAMES, metavar="NAME",
                        help="observation family, overriding the spec's [fit] family: "
                             + ", ".join(FAMILY_NAMES))


def _smoothing_option(parser) -> None:
    parser.add_argument("--smoothing", choices=("auto", "none"),
                        help="smoothness penalties, overriding the spec's [fit] smoothing: "
                             "auto (strengths chosen from the data) or none")


def _smoothing(args, spec):
    """``--smoothing`` if given, else the spec's ``[fit] smoothing`` (None: off)."""
    chosen = getattr(args, "smoothing", None)
    if chosen is None:
        return spec.smoothing
    return None if chosen == "none" else "auto"


def _family(args, spec) -> str:
    """The family to fit: ``--family`` if given, else the spec's ``[fit] family``."""
    return getattr(args, "family", None) or spec.family


class _Interrupts:
    """Ctrl-C handling for the command's lifetime.

    Python swallows a KeyboardInterrupt that lands in a garbage-collector callback or a
    destructor (JAX registers one: "Exception ignored in: <function _xla_gc_callback>"), and the
    run would go on and write its outputs as if nothing happened. Here such an interrupt is
    noted, raised again a moment later (SIGALRM, where available), and in any case no output
    file is renamed into place once Ctrl-C was pressed (:func:`_write_output`).
    """

    seen = False

    def __enter__(self):
        type(self).seen = False
        self._hook = sys.unraisablehook
        self._handlers = {}
        sys.unraisablehook = self._unraisable
        if threading.current_thread() is threading.main_thread():
            self._handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
            if hasattr(signal, "setitimer"):
                self._handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc):
        if signal.SIGALRM in self._handlers:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        sys.unraisablehook = self._hook
        type(self).seen = False
        return False

    def _on_signal(self, signum, frame):
        type(self).seen = True
        raise KeyboardInterrupt

    def _on_alarm(self, signum, frame):
        if type(self).seen:
            raise KeyboardInterrupt

    def _unraisable(self, info):
        if isinstance(info.exc_value, KeyboardInterrupt):
            type(self).seen = True
            if signal.SIGALRM in self._handlers:
                signal.setitimer(signal.ITIMER_REAL, 0.05)  # raise it again, outside the callback
            return
        self._hook(info)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _Interrupts():
        status = _run(args)
    if argv is None:
        # Run as the program: nothing is left to clean up (outputs are written atomically and
        # closed), and finalising the interpreter while JAX's runtime threads may still be busy
        # can crash after the work is done: SIGSEGV after an interrupt, and an intermittent
        # native abort ("terminate called without an active exception", SIGABRT) seen twice in
        # CI in a `glmformula fit` subprocess (whether at exit was not pinned down). Leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if status is None else int(status))
    return status


def _run(args) -> int:
    try:
        status = {"compare": _compare, "fit": _fit, "check": _check, "demo": _demo}[
            args.command](args)
        if _Interrupts.seen:
            raise KeyboardInterrupt
        return status
    except FormulaError as err:
        print(f"glmformula {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"glmformula {args.command}: interrupted; no output was completed.",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place that turns crashes into messages
        if os.environ.get("GLMFORMULA_DEBUG"):
            raise
        print(f"glmformula {args.command}: internal error ({type(err).__name__}: {err}). "
              "This is a bug in glmformula; please report it with the spec file "
              "(run with GLMFORMULA_DEBUG=1 for the traceback).", file=sys.stderr)
        return 1


# -- commands ------------------------------------------------------------------------------------
def _check(args) -> int:
    spec = load_spec(args.spec)
    data = spec.load_data()
    for name, formula in spec.models.items():
        prepare(formula, data, bin_size=spec.data.bin_size, epochs=spec.data.epochs)
    print(f"{args.spec}: OK ({len(spec.models)} models: {', '.join(spec.models)})")
    return 0


def _executor(args):
    if getattr(args, "scheduler", None) or getattr(args, "workers", None):
        return dask_executor(address=args.scheduler, workers=args.workers)
    return None


def _compare(args) -> int:
    spec = load_spec(args.spec)
    data = spec.load_data()
    _status(f"glmformula compare: {len(spec.models)} models, cv={spec.cv}: fitting "
            "(Ctrl-C stops without writing outputs)")
    started = time.perf_counter()
    executor = _executor(args)
    try:
        table = compare(spec.models, data, bin_size=spec.data.bin_size,
                        epochs=spec.data.epochs, cv=spec.cv, regularizer=spec.regularizer,
                        solver=spec.solver, dtype=spec.dtype, per_unit=spec.per_unit,
                        progress=True, family=_family(args, spec),
                        smoothing=_smoothing(args, spec), select=spec.select,
                        **({"executor": executor} if executor else {}))
    finally:
        if executor is not None and hasattr(executor, "close"):
            executor.close()
    _print_table(table, f"{spec.source.name}: {len(spec.models)} models, cv={spec.cv} "
                        f"({time.perf_counter() - started:.1f} s)")
    if args.out:
        _write_comparison(table, Path(args.out))
    return 0


def _fit(args) -> int:
    spec = load_spec(args.spec)
    if args.model not in spec.models:
        raise SpecError(f"{spec.source}: no model named {args.model!r} in [models]",
                        hint="models: " + ", ".join(spec.models))
    data = spec.load_data()
    _status(f"glmformula fit: fitting {args.model!r} (Ctrl-C stops without writing outputs)")
    result = fit(spec.models[args.model], data, bin_size=spec.data.bin_size,
                 epochs=spec.data.epochs, regularizer=spec.regularizer, solver=spec.solver,
                 dtype=spec.dtype, family=_family(args, spec),
                 smoothing=_smoothing(args, spec), select=spec.select)
    summary = result.summary()
    _print_table(summary, f"{args.model}: {result.formula}")
    if args.out:
        out = Path(args.out)
        _write_output(out / "coefficients.csv", result.coef.to_csv().encode())
        _write_output(out / "summary.csv", summary.to_csv().encode())
        _write_curves(result, out)
        print(f"wrote {out}/coefficients.csv, summary.csv and curve plots")
    return 0


def _demo(args) -> int:

    data = datasets.head_direction(n_units=8, duration=args.duration)
    print(data.description)
    # Few filters per coupling pair and a light ridge keep 8 x 7 coupling filters estimable
    # from a few minutes of data, so the comparison can show what coupling adds.
    models = {
        "null": "spikes ~ 1",
        "hd": "spikes ~ cyclic(head_direction, 10)",
        "hd+history": "spikes ~ cyclic(head_direction, 10) + history(4, log, window=100ms)",
        "hd+history+coupling": "spikes ~ cyclic(head_direction, 10) + "
                               "history(4, log, window=100ms) + coupling(all, 2)",
    }
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare(models, data, bin_size="10ms", epochs="wake", cv=5,
                        regularizer=Ridge(1e-4), progress=True)
    _print_table(table, f"simulated head-direction population, wake, 10 ms bins, cv=5 "
                        f"({time.perf_counter() - started:.1f} s)")
    best = table["cv_bits_per_spike"].idxmax()
    print(f"best model by cross-validated bits/spike: {best}")
    if args.out:
        _write_comparison(table, Path(args.out))
    return 0


# -- output helpers --------------------------------------------------------------------------------
def _status(message: str) -> None:
    """A progress line on stderr (stdout keeps the results), shown at once."""
    print(message, file=sys.stderr, flush=True)


def _write_output(path: Path, content: bytes) -> None:
    """Write one output file all or nothing (:func:`glmformula._files.atomic_write`); nothing is
    renamed into place once Ctrl-C was pressed, even if Python swallowed the interrupt."""
    atomic_write(path, content, abort=lambda: _Interrupts.seen)


#: Terminal headers of the comparison and summary tables (the CSV keeps the full names).
HEADERS = {
    "n_params": "params", "edf": "edf", "train_bits_per_spike": "train bits/spk",
    "cv_bits_per_spike": "cv bits/spk", "cv_bits_per_spike_se": "± se",
    "delta_cv_bits_per_spike": "Δ cv", "lr_pvalue": "LR p", "nested_in": "nested in",
    "wald_chi2": "Wald χ²", "p_value": "p", "lr_stat": "LR χ²",
    "deviance_explained": "dev. expl.", "train_deviance_explained": "train dev. expl.",
    "cv_deviance_explained": "cv dev. expl.", "cv_deviance_explained_se": "± se",
    "delta_cv_deviance_explained": "Δ cv",
}
#: The comparison columns the terminal shows, in order (``edf`` only where smoothing is on).
COMPARISON_COLUMNS = ("n_params", "edf", "train_bits_per_spike", "cv_bits_per_spike",
                      "cv_bits_per_spike_se", "delta_cv_bits_per_spike", "lr_pvalue",
                      "nested_in")
COMPARISON_LEGEND = (
    "params: free parameters, summed over units. train bits/spk: information per spike "
    "gained over a constant rate, on the rows fitted. cv bits/spk ± se: the same on held-out "
    "folds (mean ± standard error over folds). Δ cv: held-out bits/spk minus the best "
    "model's. LR p: likelihood-ratio test against the model in \"nested in\" (the largest "
    "model of the set nested in this one). The null model's held-out bits/spk can be "
    "negative: its constant rate is the training folds' mean rate, which misses the "
    "held-out fold's own mean rate; the other models are measured against that fold's mean "
    "too.")
CONTINUOUS_LEGEND = (
    "params: free parameters, summed over units. train dev. expl.: the share of the "
    "constant model's deviance the model explains (1 - D / D_null; R^2 for the gaussian "
    "family), on the rows fitted. cv dev. expl. ± se: the same on held-out folds (mean ± "
    "standard error over folds). Δ cv: held-out deviance explained minus the best model's. "
    "LR p: likelihood-ratio test against the model in \"nested in\".")
SUMMARY_LEGEND = (
    "columns: the unit's weights in the term. df: free weights (one fewer for a term "
    "constrained to average zero). Wald χ²: test that all the term's weights are 0; p: its "
    "p-value.")
P_VALUE_COLUMNS = ("lr_pvalue", "p_value")
BITS_COLUMNS = ("train_bits_per_spike", "cv_bits_per_spike", "cv_bits_per_spike_se",
                "delta_cv_bits_per_spike", "train_deviance_explained", "cv_deviance_explained",
                "cv_deviance_explained_se", "delta_cv_deviance_explained")


def _print_table(table, title: str) -> None:
    """Print a comparison (or summary) table to the terminal, at the terminal's width.

    Short headers (:data:`HEADERS`) and a legend under the table; cells wrap rather than being
    cut when the terminal is narrow (rich honours ``COLUMNS``).
    """
    continuous = "cv_deviance_explained" in table.columns  # a gamma or gaussian comparison
    if continuous:
        table = table.rename(columns=lambda c: c.replace("deviance_explained", "bits_per_spike"))
    comparison = all(c in table.columns for c in COMPARISON_COLUMNS if c != "edf")
    if comparison:  # the terminal gets the key columns, the CSV all of them
        table = table[[c for c in COMPARISON_COLUMNS if c in table.columns]]
    if continuous:
        table = table.rename(columns=lambda c: c.replace("bits_per_spike", "deviance_explained"))
    shown = table.reset_index()
    headers = [HEADERS.get(str(c), str(c)) for c in shown.columns]
    rows = [[_fmt(column, v) for column, v in row.items()] for _, row in shown.iterrows()]
    legend = (CONTINUOUS_LEGEND if continuous else COMPARISON_LEGEND) if comparison else \
        SUMMARY_LEGEND if "wald_chi2" in table.columns else ""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        import pandas as pd
        print(title)
        print(pd.DataFrame(rows, columns=headers).to_string(index=False))
        if legend:
            print(legend)
        return
    rich_table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                       collapse_padding=True, title_justify="left")
    needed = 2 + 2 * (len(headers) - 1)  # the narrowest width that keeps every column
    for i, (column, header) in enumerate(zip(shown.columns, headers)):
        text = column in ("model", "term", "nested_in") or shown[column].dtype == object
        # numbers are never broken (their column keeps its width); headers and names wrap
        widest = max([len(row[i]) for row in rows] + [1])
        word = max(len(w) for w in header.split())
        keep = None if text else max(widest, word)
        needed += min(widest, 8) if text else keep
        rich_table.add_column(header, justify="left" if text else "right", overflow="fold",
                              min_width=keep)
    for row in rows:
        rich_table.add_row(*row)
    console = Console()  # the terminal's width (COLUMNS where set; 80 when not a terminal)
    if console.width < needed:  # too narrow even wrapped: let the lines run on rather than
        console = Console(width=needed)  # have rich drop a column
    console.print(rich_table)
    if legend:
        console.print(legend, markup=False, highlight=False)


def _fmt(column, value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        if column in P_VALUE_COLUMNS:
            return "<1e-16" if value < 1e-16 else f"{value:.2g}"
        if float(value).is_integer() and column in ("n_params", "columns", "df", "lr_df"):
            return f"{value:.0f}"
        if column in BITS_COLUMNS:
            return f"{value:.3f}"
        return f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


def _write_comparison(table, out: Path) -> None:
    _write_output(out / "comparison.csv", table.to_csv().encode())
    written = ["comparison.csv"]
    try:
        figure = plot_comparison(table)
    except ImportError:
        figure = None
    if figure is not None:
        _save_figure(figure, out / "comparison.png")
        written.append("comparison.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")


def _save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _write_output(path, buffer.getvalue())  # figures are built without pyplot: nothing to close


def _write_curves(result, out: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for term in result.formula.terms:
        try:
            figure = result.plot(term)
        except Exception:  # noqa: BLE001 - a term without a curve (e.g. a bare covariate)
            continue
        safe = "".join(c if c.isalnum() else "_" for c in term).strip("_")
        _save_figure(figure, out / f"curve_{safe}.png")


if __name__ == "__main__":
    sys.exit(main())
