"""The ``glmformula`` command: compare, fit, check and demo.

Every error becomes a one-paragraph message and a non-zero exit status, never a traceback
(set GLMFORMULA_DEBUG=1 to see one). Output files are written under a temporary name and
renamed when complete, so an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

EXAMPLES = """examples:
  glmformula demo                               the built-in head-direction example
  glmformula check models.toml                  parse and validate a spec, fit nothing
  glmformula compare models.toml --out results  compare its models (table, CSV, PNG)
  glmformula fit models.toml --model hd --out results
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glmformula", description="Formula-driven Poisson GLMs of spike trains.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        return p

    p = add("compare", "cross-validated comparison of the models in a spec file")
    p.add_argument("spec", help="model-spec file (TOML)")
    p.add_argument("--out", help="folder for comparison.csv and comparison.png")
    p.add_argument("--workers", type=int, help="run (model, fold) fits on N local Dask workers")
    p.add_argument("--scheduler", help="address of a Dask scheduler to run the fits on")

    p = add("fit", "fit one model of a spec file and write its tables and curves")
    p.add_argument("spec", help="model-spec file (TOML)")
    p.add_argument("--model", required=True, help="name of the model in [models]")
    p.add_argument("--out", help="folder for coefficients.csv, summary.csv and plots")

    p = add("check", "parse and validate a spec file (and its data) without fitting")
    p.add_argument("spec", help="model-spec file (TOML)")

    p = add("demo", "run the built-in head-direction example (no files needed)")
    p.add_argument("--out", help="folder for the demo's CSV and PNG files")
    p.add_argument("--duration", type=float, default=400.0,
                   help="seconds of simulated recording (default 400)")
    return parser


class _Interrupts:
    """Ctrl-C handling for the command's lifetime.

    Python swallows a KeyboardInterrupt that lands in a garbage-collector callback or a
    destructor (JAX registers one: "Exception ignored in: <function _xla_gc_callback>"), and the
    run would go on and write its outputs as if nothing happened. Here such an interrupt is
    noted, raised again a moment later (SIGALRM, where available), and in any case no output
    file is renamed into place once Ctrl-C was pressed (:func:`atomic_write`).
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
    if status == 130 and argv is None:
        # Run as the program and interrupted mid-computation: JAX's runtime threads may still
        # be busy, and finalising the interpreter under them can crash (SIGSEGV) after the
        # message. Nothing is left to clean up (outputs are written atomically): leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return status


def _run(args) -> int:
    from .errors import FormulaError
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
    from .graph.design import prepare
    from .spec import load_spec
    spec = load_spec(args.spec)
    data = spec.load_data()
    for name, formula in spec.models.items():
        prepare(formula, data, bin_size=spec.data.bin_size, epochs=spec.data.epochs)
    print(f"{args.spec}: OK ({len(spec.models)} models: {', '.join(spec.models)})")
    return 0


def _executor(args):
    if getattr(args, "scheduler", None) or getattr(args, "workers", None):
        from .compare.distributed import dask_executor
        return dask_executor(address=args.scheduler, workers=args.workers)
    return None


def _compare(args) -> int:
    from .compare import compare
    from .spec import load_spec
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
                        progress=True, **({"executor": executor} if executor else {}))
    finally:
        if executor is not None and hasattr(executor, "close"):
            executor.close()
    _print_table(table, f"{spec.source.name}: {len(spec.models)} models, cv={spec.cv} "
                        f"({time.perf_counter() - started:.1f} s)")
    if args.out:
        _write_comparison(table, Path(args.out))
    return 0


def _fit(args) -> int:
    from .errors import SpecError
    from .fitting import fit
    from .spec import load_spec
    spec = load_spec(args.spec)
    if args.model not in spec.models:
        raise SpecError(f"{spec.source}: no model named {args.model!r} in [models]",
                        hint="models: " + ", ".join(spec.models))
    data = spec.load_data()
    _status(f"glmformula fit: fitting {args.model!r} (Ctrl-C stops without writing outputs)")
    result = fit(spec.models[args.model], data, bin_size=spec.data.bin_size,
                 epochs=spec.data.epochs, regularizer=spec.regularizer, solver=spec.solver,
                 dtype=spec.dtype)
    summary = result.summary()
    _print_table(summary, f"{args.model}: {result.formula}")
    if args.out:
        out = Path(args.out)
        atomic_write(out / "coefficients.csv", result.coef.to_csv().encode())
        atomic_write(out / "summary.csv", summary.to_csv().encode())
        _write_curves(result, out)
        print(f"wrote {out}/coefficients.csv, summary.csv and curve plots")
    return 0


def _demo(args) -> int:
    from . import datasets
    from .compare import compare
    import warnings

    from .backend import Ridge
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


def atomic_write(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` via a temporary file and a rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if _Interrupts.seen:  # Ctrl-C was pressed (even if Python swallowed it): write nothing
            raise KeyboardInterrupt
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _print_table(table, title: str) -> None:
    import pandas as pd
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(table.to_string())
        return
    readable = ["n_params", "train_bits_per_spike", "cv_bits_per_spike", "cv_bits_per_spike_se",
                "delta_cv_bits_per_spike", "lr_pvalue", "nested_in"]
    if all(c in table.columns for c in readable):  # the terminal gets the key columns, the
        table = table[readable]                    # CSV all of them
    shown = table.reset_index()
    rich_table = Table(title=title)
    for column in shown.columns:
        rich_table.add_column(str(column), justify="right")
    for _, row in shown.iterrows():
        rich_table.add_row(*[_fmt(v) for v in row])
    Console(width=max(100, min(200, 16 * len(shown.columns)))).print(rich_table)


def _fmt(value) -> str:
    import numpy as np
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def _write_comparison(table, out: Path) -> None:
    atomic_write(out / "comparison.csv", table.to_csv().encode())
    written = ["comparison.csv"]
    try:
        from .compare.plotting import plot_comparison
        figure = plot_comparison(table)
    except ImportError:
        figure = None
    if figure is not None:
        _save_figure(figure, out / "comparison.png")
        written.append("comparison.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")


def _save_figure(figure, path: Path) -> None:
    import io
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, buffer.getvalue())
    import matplotlib.pyplot as plt
    plt.close(figure)


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
