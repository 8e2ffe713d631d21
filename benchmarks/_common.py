"""Shared helpers for the benchmark scripts (not part of the package, not run by the tests).

* :func:`machine_info` / :func:`machine_line`: CPU model and cores (``lscpu``), RAM, load
  average, for the header of a results table.
* :func:`versions` / :func:`versions_line`: installed versions of the packages a benchmark uses.
* :func:`time_calls`: wall-clock times of repeated calls, with the median.
* :class:`PeakMemory`: the peak resident-memory increase of a block of code, in this process.
  Meant to run in a fresh child process (:func:`run_child`), right after the imports and the
  data are ready, so that the increase is that of the measured code alone.
* :func:`run_child`: run ``python script --child ...`` and read back the JSON it prints.
* :func:`markdown_table`: a GitHub Markdown table from rows of cells.

How peak memory is read (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the
process's resident high-water mark (``VmHWM`` in ``/proc/self/status``) to its current RSS,
so ``VmHWM`` after the block minus RSS before it is the peak increase of the block. Where
that reset is not allowed, the increase is ``ru_maxrss`` after the block minus RSS before it,
valid as long as nothing before the block peaked higher (then it is reported as unreliable).
A background thread also samples RSS (``psutil``) every millisecond as a cross-check; sampling
can only miss short peaks, never invent them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

MiB = 2**20


# --------------------------------------------------------------------------- machine, versions


def machine_info() -> dict:
    """CPU model, logical CPUs, physical cores, RAM and the current load average."""
    info = {"model": platform.processor() or "?", "cpus": os.cpu_count(), "cores": None,
            "ram_gib": None, "load": os.getloadavg(), "system": platform.platform()}
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("Model name", info["model"])
        info["cpus"] = int(fields.get("CPU(s)", info["cpus"]))
        with contextlib.suppress(Exception):
            info["cores"] = (int(fields["Core(s) per socket"]) * int(fields.get("Socket(s)", 1)))
    with contextlib.suppress(Exception):
        import psutil
        info["ram_gib"] = psutil.virtual_memory().total / 2**30
    return info


def machine_line(info: dict | None = None) -> str:
    """One Markdown-ready line describing the machine (and its load when measured)."""
    info = machine_info() if info is None else info
    cores = f", {info['cores']} physical cores" if info.get("cores") else ""
    ram = f", {info['ram_gib']:.0f} GiB RAM" if info.get("ram_gib") else ""
    return f"{info['model']}, {info['cpus']} logical CPUs{cores}{ram} (`lscpu`), CPU only"


def load_line(before: Sequence[float], after: Sequence[float]) -> str:
    """The 1/5/15-minute load averages at the start and at the end of a run."""
    fmt = lambda load: "/".join(f"{x:.2f}" for x in load)  # noqa: E731
    return f"load average (1/5/15 min) {fmt(before)} at the start, {fmt(after)} at the end"


def versions(names: Sequence[str]) -> dict[str, str]:
    """Version of each package, Python first: the installed distribution's, else the module's
    ``__version__`` (a source checkout), else ``"-"``."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            try:
                out[name] = str(importlib.import_module(name).__version__) + " (source)"
            except Exception:
                out[name] = "-"
    return out


def versions_line(names: Sequence[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions(names).items())


# --------------------------------------------------------------------------- timing


def time_calls(fn: Callable[[], object], repeats: int = 5, *, warmup: int = 0,
               between: Callable[[], object] | None = None) -> dict:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (after ``warmup`` untimed ones).

    ``between`` runs untimed after each call (e.g. to drop the result and collect garbage), so
    that one call's output does not sit in memory during the next. Returns the wall-clock
    times, their median and minimum, and the process CPU times (all threads) of the same calls
    with their median: on a shared machine CPU time shows the work done, wall time also the
    waiting for a core.
    """
    for _ in range(warmup):
        fn()
        if between is not None:
            between()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if between is not None:
            between()
    return {"times": times, "median": statistics.median(times), "min": min(times),
            "cpu": cpu, "cpu_median": statistics.median(cpu)}


# --------------------------------------------------------------------------- memory


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with contextlib.suppress(Exception):
        import psutil
        return psutil.Process().memory_info().rss
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Context manager: peak RSS increase (bytes) of the code inside it, in this process.

    Attributes after the block: ``increase`` (bytes, the reported number), ``method``
    (``"VmHWM"`` or ``"ru_maxrss"``), ``sampled`` (max RSS increase seen by the 1 ms sampler),
    ``baseline`` (RSS before the block) and ``reliable`` (False when only ru_maxrss was
    available and the process had already peaked higher before the block).
    """

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.increase = self.sampled = self.baseline = 0
        self.method = "?"
        self.reliable = True

    def __enter__(self) -> "PeakMemory":
        import gc
        gc.collect()
        self._reset = _reset_high_water_mark()
        self.baseline = current_rss()
        self._maxrss_before = _ru_maxrss_bytes()
        self._peak_sampled = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak_sampled = max(self._peak_sampled, current_rss())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        hwm = _status_kib("VmHWM")
        maxrss = _ru_maxrss_bytes()
        self._stop.set()
        self._thread.join()
        self.sampled = self._peak_sampled - self.baseline
        if self._reset and hwm is not None:
            self.method, self.increase = "VmHWM", hwm * 1024 - self.baseline
        else:
            self.method, self.increase = "ru_maxrss", maxrss - self.baseline
            self.reliable = maxrss > self._maxrss_before
        self.increase = max(self.increase, self.sampled)

    def as_dict(self) -> dict:
        return {"increase": self.increase, "sampled": self.sampled, "baseline": self.baseline,
                "method": self.method, "reliable": self.reliable}


# --------------------------------------------------------------------------- child processes


def run_child(script: str, args: Sequence[str], *, timeout: float = 900,
              env: dict | None = None) -> dict:
    """Run ``python script *args`` in a fresh interpreter; the last stdout line is JSON.

    Raises ``RuntimeError`` with the child's stderr when it fails.
    """
    cmd = [sys.executable, script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """Print a child's result as the JSON line :func:`run_child` reads."""
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- tables


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column (``l`` or ``r``, default r
    except the first column)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def fmt_mb(nbytes: float | None) -> str:
    """Megabytes (10^6 bytes), as the memory targets are stated."""
    return "-" if nbytes is None else f"{nbytes / 1e6:.0f}"


def write_section(path, text: str, name: str) -> None:
    """Replace the section of ``path`` generated by ``name`` (between its markers), keeping the
    rest.

    Markers are ``<!-- BEGIN {name} -->`` and ``<!-- END {name} -->``; a page without them gets
    the section appended. ``name`` is the script, e.g. ``"benchmarks/fit.py"``.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    old = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{text}{end}\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        new = old + ("\n" if old else "") + block
    with open(path, "w") as fh:
        fh.write(new)


#: The files that implement smoothing (fingerprinted by :func:`code_fingerprint`).
SMOOTHING_FILES = ("glmformula/backend/reml.py", "glmformula/fitting/smoothing.py",
                   "glmformula/graph/penalties.py", "glmformula/fitting/engine.py")


def code_fingerprint(files: Sequence[str] = SMOOTHING_FILES) -> dict:
    """sha256 (16 hex digits) and modification time of source files, relative to the repository
    root: which version of the code a benchmark measured while the package was being changed."""
    import datetime
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = {}
    for rel in files:
        path = root / rel
        if path.exists():
            out[rel] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                        "mtime": datetime.datetime.fromtimestamp(
                            path.stat().st_mtime).isoformat(timespec="seconds")}
    return out


def code_line(code: dict | None, rel: str = "glmformula/backend/reml.py") -> str:
    """The sentence a report adds about the measured version of ``rel`` ("" when unknown)."""
    measured = (code or {}).get(rel)
    if not measured:
        return ""
    return (f" Code measured: `{rel}` as of {measured['mtime']} (sha256 "
            f"{measured['sha256']}...; other files in the JSON).")
