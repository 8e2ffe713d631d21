"""Scaling of ``gf.fit``: time and peak memory against the number of bins and of units.

Run by hand (not part of the tests), one heavy job at a time on a shared machine::

    flock /tmp/glmformula-bench.lock python benchmarks/scale.py  # everything (~30 min)
    python benchmarks/scale.py --quick                         # small sizes (~2 min)
    flock /tmp/glmformula-bench.lock python benchmarks/scale.py --only t1e7
    flock /tmp/glmformula-bench.lock python benchmarks/scale.py --only pop200
    python benchmarks/scale.py --report                        # rewrite docs from saved results

Parts (``--only``, several allowed):

bins     one unit, bins T = 1e5 .. 3e6 (1 ms bins; two covariates sampled at 100 Hz, 50k-1e6
         spikes), formula ``bspline(x, 40) + bspline(y, 40) + history(20, log,
         window=200ms)`` = 100 columns. Series "blocked": ``gf.config.memory_limit`` set to
         64 MiB, so ``gf.fit`` goes blocked by itself and picks its block size; series
         "in memory": the default limit (every design here fits). The T = 1e7 point of the
         blocked series is ``t1e7``.
t1e7     target 1: the same one-unit model at T = 1e7 (an 8 GB float64 design if built
         whole), blocked, peak memory of the process (imports and data included) < 3 GiB.
units    T = 1e5 bins, populations of 10 .. 500 units driven by shared covariates: "shared"
         ``bspline(x, 20) + bspline(y, 20)`` (no history, no coupling; 40 columns shared by
         all units), and "+history" (each unit's own ``history(8, log, window=100ms)``
         added, no coupling; the stored design then has 40 + 8 U columns) up to 100 units.
pop200   target 2: 200 units x 1e6 bins with ``history(8) + coupling(all)`` (8 filters per
         unit; 1,640 columns) in float32 with Ridge(1e-3): complete ``gf.fit`` calls at
         2e4 and 1e6 bins, then the standard errors of one unit (computed on first use at
         this size) timed apart. gf.config.memory_limit is set to 10 GiB so that gf.fit
         keeps the 6.6 GB design in memory.

Every point runs in a fresh Python process: it simulates its data, fits once (so the time
includes JAX compilation, reported apart) and reports the fit's wall time, where it went
(design building, solver, standard errors, ...), and memory: the process's peak resident set
(imports and data included; ``VmHWM``), its resident set before the fit, and the parent's
20 ms psutil sampling of the child's RSS as a cross-check. A child whose RSS passes
``--mem-cap`` GiB, or that leaves less than 3 GiB of memory available to the machine, is
killed (the machine is shared). Results accumulate in ``benchmarks/scale_results.json``;
each run rewrites the section of ``docs/performance.md`` between the markers and the plot
``docs/scaling_time_memory.png`` from all saved results (``--quick`` writes to /tmp instead).
Measured 2026-12-03: bins + units 10 min, t1e7 8 min, pop200 12 min (plus waits for the lock).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import (  # noqa: E402
    PeakMemory,
    _status_kib,
    machine_info,
    machine_line,
    markdown_table,
    versions_line,
    write_section,
)

RESULTS = os.path.join(HERE, "scale_results.json")
REPORT = os.path.join(ROOT, "docs", "performance.md")
PLOT = os.path.join(ROOT, "docs", "scaling_time_memory.png")
BEGIN, END = "<!-- BEGIN benchmarks/scale.py -->", "<!-- END benchmarks/scale.py -->"
GiB = 2**30

BIN = 1e-3  # s
ONE_UNIT = "spikes ~ bspline(x, 40) + bspline(y, 40) + history(20, log, window=200ms)"
SHARED = "spikes ~ bspline(x, 20) + bspline(y, 20)"
HISTORY = SHARED + " + history(8, log, window=100ms)"
COUPLED = HISTORY + " + coupling(all)"
BLOCKED_LIMIT = 64 * 2**20  # gf.config.memory_limit for the blocked series
#: gf.config.memory_limit for target 2: above its 6.6 GB float32 design, so that gf.fit keeps
#: it in memory (blocked fits use Newton: 200 Hessians of 1,641^2 per pass, hours per pass)
POP_LIMIT = 10 * 2**30

FULL = dict(blocked_limit=BLOCKED_LIMIT, bins=[100_000, 300_000, 1_000_000, 3_000_000],
            t1e7=10_000_000,
            units_T=100_000, units=[10, 30, 100, 200, 500], history_units=[10, 30, 100],
            pop_T=1_000_000, pop_units=200, pop_small_T=20_000)
QUICK = dict(blocked_limit=4 * 2**20, bins=[20_000, 100_000], t1e7=300_000,
             units_T=20_000, units=[5, 20], history_units=[5, 10],
             pop_T=20_000, pop_units=10, pop_small_T=5_000)
PARTS = ("bins", "t1e7", "units", "pop200")


# --------------------------------------------------------------------------- data


def _walk(rng, n, tau):
    """A smooth covariate in (0, 1): a logistic-squashed AR(1) with time constant tau samples."""
    from scipy.signal import lfilter
    a = np.exp(-1.0 / tau)
    z = lfilter([1.0], [1.0, -a], rng.standard_normal(n) * np.sqrt(1 - a * a))
    return 1.0 / (1.0 + np.exp(-1.5 * z))


def make_data(n_bins: int, n_units: int, seed: int = 0, rate: float = 100.0) -> dict:
    """``n_bins`` 1 ms bins of two covariates (x, y sampled at ``rate`` Hz, 2 s correlation
    time) and ``n_units`` Poisson units (~5 Hz) tuned to both (no history or coupling in
    the truth: the fitted filters are ~0, which changes nothing in the cost). Simulated in
    chunks, so the data are the only large arrays (1e7 bins: ~10 MB of covariates, ~1 MB
    per 1e5 spikes)."""
    import pynapple as nap
    rng = np.random.default_rng(seed)
    duration = n_bins * BIN
    t = (np.arange(int(round(duration * rate))) + 0.5) / rate
    x, y = _walk(rng, t.size, 2 * rate), _walk(rng, t.size, 2 * rate)
    cx, cy = rng.uniform(0, 1, n_units), rng.uniform(0, 1, n_units)
    base = np.log(5.0) + 0.3 * rng.standard_normal(n_units)
    times = [[] for _ in range(n_units)]
    chunk = max(10_000, int(2e7 // n_units))
    for s in range(0, n_bins, chunk):
        e = min(s + chunk, n_bins)
        c = (np.arange(s, e) + 0.5) * BIN
        xi, yi = np.interp(c, t, x), np.interp(c, t, y)
        log_rate = (base + np.cos(2 * np.pi * (xi[:, None] - cx))
                    + 0.5 * np.cos(2 * np.pi * (yi[:, None] - cy)))
        counts = rng.poisson(np.exp(log_rate) * BIN)
        b, u = np.nonzero(counts)
        k = counts[b, u]
        b, u = np.repeat(b, k), np.repeat(u, k)
        spikes = (s + b + rng.random(b.size)) * BIN
        order = np.argsort(u, kind="stable")
        edges = np.searchsorted(u[order], np.arange(n_units + 1))
        for j in range(n_units):
            times[j].append(spikes[order[edges[j]:edges[j + 1]]])
    support = nap.IntervalSet(0.0, duration)
    spikes = nap.TsGroup({j: nap.Ts(np.sort(np.concatenate(times[j])), time_support=support)
                          for j in range(n_units)}, time_support=support)
    return {"spikes": spikes, "x": nap.Tsd(t=t, d=x, time_support=support),
            "y": nap.Tsd(t=t, d=y, time_support=support)}


def data_bytes(data: dict) -> int:
    total = 0
    for value in data.values():
        if hasattr(value, "keys") and hasattr(value, "__getitem__") and not hasattr(value, "d"):
            total += sum(np.asarray(value[k].t).nbytes for k in value.keys())
        else:
            total += np.asarray(value.t).nbytes + np.asarray(value.d).nbytes
    return total


# --------------------------------------------------------------------------- child: one point


class Stages:
    """Wall time spent in named functions of glmformula (wrapped for this process only)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth = threading.local()

    def wrap(self, owner, attr: str, label: str):
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, attr, timed)


def _instrument() -> Stages:
    import importlib

    # import_module, not ``import a.b.c as m``: the latter reads the attribute ``c`` of ``a.b``,
    # which for ``glmformula.results.fit`` is the function gf.fit, not its module
    module = importlib.import_module
    solve = module("glmformula.backend.solve")
    identifiability = module("glmformula.fitting.identifiability")
    information = module("glmformula.fitting.information")
    sharding = module("glmformula.fitting.sharding")
    design = module("glmformula.graph.design")
    fitting = module("glmformula.results.fit")
    st = Stages()
    st.wrap(design, "build_block", "design blocks")       # blocked: every pass rebuilds
    st.wrap(fitting, "build", "design")                   # in memory: built once
    st.wrap(identifiability, "term_moments", "constraint pass")
    st.wrap(solve, "_solve_blocked", "blocked solve")     # includes its design blocks
    st.wrap(information, "log_likelihood", "log-likelihood")
    st.wrap(sharding, "solve_on_devices", "solve")
    st.wrap(information.CovarianceSource, "__call__", "standard errors")
    return st


def _vmhwm() -> int:
    return (_status_kib("VmHWM") or 0) * 1024


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def child(spec: dict) -> dict:
    """Simulate, fit once, measure. ``spec``: kind, T, U, formula, dtype, options."""
    t_start = time.perf_counter()
    import glmformula as gf
    warnings.simplefilter("ignore")
    stages = _instrument()
    data = make_data(spec["T"], spec["U"], seed=spec.get("seed", 0))
    out = dict(spec, data_mb=data_bytes(data) / 1e6, setup_s=time.perf_counter() - t_start)
    if spec.get("memory_limit"):
        gf.config.memory_limit = int(spec["memory_limit"])
    regularizer = gf.Ridge(spec["ridge"]) if spec.get("ridge") else None
    out["peak_before_fit"] = _vmhwm()
    out["rss_before_fit"] = _rss()
    with PeakMemory() as pm:
        start = time.perf_counter()
        # smoothing=None: the fixed-ridge (or unpenalised) fits this benchmark has timed
        # (gf.fit's default became smoothing="auto" later; its cost is benchmarks/smoothing*)
        res = gf.fit(spec["formula"], data, bin_size=BIN, regularizer=regularizer,
                     dtype=spec.get("dtype"), chunk_size=spec.get("chunk_size"),
                     smoothing=None)
        out["fit_s"] = time.perf_counter() - start
    fit_stages = dict(stages.seconds)
    out["peak_fit"] = pm.baseline + pm.increase  # absolute RSS peak during the fit
    out["peak_process"] = max(out["peak_before_fit"], out["peak_fit"])
    out["covariance_computed_with_fit"] = int(res.covariance.computed_units.size)
    if spec.get("se_units") and not out["covariance_computed_with_fit"]:
        # a large fit computes standard errors on first use: time those of a few units
        start = time.perf_counter()
        se = res.standard_errors(unit=list(res.unit_ids[:spec["se_units"]]))
        out["se_s"] = time.perf_counter() - start
        out["se_stages"] = {k: v - fit_stages.get(k, 0.0) for k, v in stages.seconds.items()
                            if v - fit_stages.get(k, 0.0) > 0}
        out["se_finite"] = bool(np.isfinite(se.to_numpy()[~np.isnan(se.to_numpy())]).all())
        out["peak_process"] = max(out["peak_process"], _vmhwm())
    out["memory_method"] = pm.method
    out.update(stages=fit_stages, calls=dict(stages.calls), solver=res.solver,
               chunk_size=res.chunk_size, dtype=res.dtype,
               n_columns=len(res.storage_columns), n_rows=int(res.n_rows),
               iters_max=int(np.max(res.n_iter_units)), iters_mean=float(np.mean(res.n_iter_units)),
               converged=float(np.mean(res.converged_units)), solve_s=float(res.fit_seconds),
               compile_s=float(res.compile_seconds), n_spikes=float(np.sum(res.n_spikes)),
               design_gb=int(res.n_rows) * len(res.storage_columns) * 8 / 1e9)
    return out


# --------------------------------------------------------------------------- parent


def run_point(spec: dict, *, timeout: float, mem_cap: float) -> dict:
    """Run one point in a fresh process with an RSS watchdog; returns the child's results
    (or an ``error``) plus the parent's sampled peak RSS and the load average."""
    import psutil
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load0 = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    watched = psutil.Process(proc.pid)
    peak, killed = 0, None
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s, b: b.append(s.read()),
                                args=(proc.stdout, out_chunks)),
               threading.Thread(target=lambda s, b: b.append(s.read()),
                                args=(proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            rss = watched.memory_info().rss
            peak = max(peak, rss)
            available = psutil.virtual_memory().available
            if rss > mem_cap * GiB:
                killed = (f"killed by the watchdog: RSS {rss / GiB:.1f} GiB > "
                          f"--mem-cap {mem_cap:g} GiB")
            elif available < 3 * GiB:
                killed = (f"killed by the watchdog: machine memory available fell to "
                          f"{available / GiB:.1f} GiB (RSS {rss / GiB:.1f} GiB)")
            elif time.perf_counter() - start > timeout:
                killed = f"killed by the watchdog after {timeout:.0f} s"
            if killed:
                proc.kill()
                break
        time.sleep(0.02)
    proc.wait()
    for r in readers:
        r.join()
    wall = time.perf_counter() - start
    lines = [line for line in "".join(out_chunks).splitlines() if line.strip()]
    base = dict(spec, peak_sampled=peak, wall_s=wall, load=[load0, os.getloadavg()],
                date=datetime.datetime.now().isoformat(timespec="seconds"))
    if killed or proc.returncode != 0 or not lines:
        last = "".join(err_chunks).strip().splitlines()[-1:]
        return dict(base, error=killed or f"exit {proc.returncode}: {''.join(last)[-300:]}")
    return dict(base, **json.loads(lines[-1]))


def specs(parts, sizes) -> list[tuple[str, dict]]:
    """(key, spec) of every point of the requested parts."""
    out = []
    if "bins" in parts:
        for T in sizes["bins"]:
            out.append((f"bins/blocked/{T}", dict(kind="fit", series="blocked", T=T, U=1,
                                                 formula=ONE_UNIT, ridge=1e-4,
                                                 memory_limit=sizes["blocked_limit"])))
        for T in sizes["bins"]:
            out.append((f"bins/memory/{T}", dict(kind="fit", series="in memory", T=T, U=1,
                                                formula=ONE_UNIT, ridge=1e-4)))
    if "t1e7" in parts:
        T = sizes["t1e7"]
        out.append((f"bins/blocked/{T}", dict(kind="fit", series="blocked", T=T, U=1,
                                             formula=ONE_UNIT, ridge=1e-4,
                                             memory_limit=sizes["blocked_limit"], target=1)))
    if "units" in parts:
        for U in sizes["units"]:
            out.append((f"units/shared/{U}", dict(kind="fit", series="shared", T=sizes["units_T"],
                                                 U=U, formula=SHARED, ridge=1e-4)))
        for U in sizes["history_units"]:
            out.append((f"units/history/{U}", dict(kind="fit", series="+history",
                                                  T=sizes["units_T"], U=U, formula=HISTORY,
                                                  ridge=1e-4)))
    if "pop200" in parts:
        U = sizes["pop_units"]
        out.append((f"pop/fit/{sizes['pop_small_T']}",
                    dict(kind="fit", series="pop small", T=sizes["pop_small_T"], U=U,
                         formula=COUPLED, ridge=1e-3, dtype="float32",
                         memory_limit=POP_LIMIT)))
        out.append((f"pop/fit/{sizes['pop_T']}",
                    dict(kind="fit", series="pop", T=sizes["pop_T"], U=U, formula=COUPLED,
                         ridge=1e-3, dtype="float32", memory_limit=POP_LIMIT, se_units=1,
                         target=2)))
    return out


# --------------------------------------------------------------------------- report


def slope(xs, ys) -> float:
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(ys) & (ys > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])


def _series(results: dict, prefix: str, x: str):
    rows = sorted((r for k, r in results.items() if k.startswith(prefix) and "error" not in r),
                  key=lambda r: r[x])
    return rows


def _gib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / GiB:.2f}"


def _where(r) -> str:
    """The largest parts of a fit's time."""
    st = dict(r.get("stages", {}))
    if not st:
        return ""
    if "blocked solve" in st:
        # design blocks are built inside every pass: split them out of the passes' time
        inside = st.get("design blocks", 0.0)
        parts = {"design blocks (all passes)": inside,
                 "solver kernels": st["blocked solve"] + st.get("constraint pass", 0)
                 + st.get("final pass", 0) + st.get("log-likelihood", 0)
                 + st.get("standard errors", 0) - inside}
    else:
        parts = {k: v for k, v in st.items() if k in ("design", "solve", "standard errors",
                                                       "log-likelihood", "restore")}
    parts["compile"] = r.get("compile_s", 0.0)
    for key in ("solver kernels", "solve"):  # compilation happens inside the solve
        if key in parts:
            parts[key] -= parts["compile"]
    total = r["fit_s"]
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k} {v / total:.0%}" for k, v in top if v > 0.05 * total)


def _fit_row(r, x):
    per = (f"{r['fit_s'] / r[x] * 1e6:.0f}" if x == "T" else
           f"{r['fit_s'] / r[x] * 1e3:.0f}")
    return [f"{r[x]:,}", f"{r['fit_s']:.1f}", per, f"{r.get('compile_s', 0):.1f}",
            _gib(r["peak_process"]), _gib(r["peak_sampled"]), _gib(r["rss_before_fit"]),
            f"{r['n_columns']:,}",
            "in memory" if r.get("chunk_size") is None else f"{r['chunk_size']:,}",
            r["solver"],
            f"{r['iters_max']}" + (f" (mean {r['iters_mean']:.1f})" if r["U"] > 1 else ""),
            _where(r)]


FIT_HEADERS = ["{x}", "fit (s)", "{per}", "of which compile (s)", "peak RSS (GiB)",
               "sampled peak (GiB)", "RSS before fit (GiB)", "stored columns", "chunk_size",
               "solver", "iterations",
               "largest shares of the fit time"]


def write_report(results: dict, meta: dict) -> str:
    lines = ["<!-- generated by benchmarks/scale.py: rerun it rather than editing this -->",
             "## Scaling: time and memory against bins and units", ""]
    cmds = sorted({r.get("command", "") for r in results.values() if r.get("command")})
    lines += [f"Commands: {', '.join(f'`{c}`' for c in cmds)} "
              f"(points measured {min(r['date'] for r in results.values())[:10]} to "
              f"{max(r['date'] for r in results.values())[:10]}).",
              f"Machine: {meta['machine']}. {meta['versions']}.",
              "Load: each point's 1-minute load average at its start and end is in "
              "`benchmarks/scale_results.json`; over the run it ranged "
              f"{meta['load_min']:.1f}-{meta['load_max']:.1f} on 2 cores (other engineers' jobs "
              "shared the machine; times are single measurements, not medians).", "",
              "Every point is a fresh process: simulate data, `gf.fit` once (time includes JAX "
              "compilation), measure. *peak RSS*: the process's resident high-water mark "
              "(`VmHWM`: imports, data and fit); *sampled peak*: the parent's 20 ms psutil "
              "sampling of the same process; *RSS before fit*: imports + data. 1 ms bins; "
              "covariates sampled at 100 Hz; ~5 Hz units.", ""]

    # -- bins
    blocked = _series(results, "bins/blocked/", "T")
    memory = _series(results, "bins/memory/", "T")
    if blocked or memory:
        lines += ["### Bins: one unit, 100 columns", "",
                  f"`{ONE_UNIT}` (40 + 40 + 20 columns), Ridge(1e-4), float64. *blocked*: "
                  f"`gf.config.memory_limit = {BLOCKED_LIMIT // 2**20} MiB`, so `gf.fit` "
                  "chooses a blocked fit and its block size itself; *in memory*: the default "
                  "limit.", ""]
        for name, rows in (("blocked", blocked), ("in memory", memory)):
            if not rows:
                continue
            lines += [f"**{name}**", "",
                      markdown_table([h.format(x="bins T", per="s per 1e6 bins")
                                      for h in FIT_HEADERS],
                                     [_fit_row(r, "T") for r in rows]), ""]
        lines += _slopes_lines(blocked, memory, "T", "bins") + [""]
    errors = [(k, r) for k, r in results.items() if "error" in r]

    # -- units
    shared = _series(results, "units/shared/", "U")
    history = _series(results, "units/history/", "U")
    if shared or history:
        T = (shared or history)[0]["T"]
        lines += ["### Units: a population on shared covariates", "",
                  f"T = {T:,} bins, Ridge(1e-4), float64, in memory. *shared*: `{SHARED}` — "
                  "40 columns shared by every unit, **no history, no coupling**. *+history*: "
                  "each unit's own `history(8, log, window=100ms)` added (still no coupling); "
                  "the stored design then holds one bank of 8 filtered spike trains per "
                  "unit (40 + 8 U columns), which every unit's solve and standard errors run "
                  "over with the other units' columns masked.", ""]
        for name, rows in (("shared", shared), ("+history", history)):
            if rows:
                lines += [f"**{name}**", "",
                          markdown_table([h.format(x="units", per="ms per unit")
                                          for h in FIT_HEADERS],
                                         [_fit_row(r, "U") for r in rows]), ""]
        lines += _slopes_lines(shared, history, "U", "units") + [""]

    # -- targets
    lines += ["### Targets", ""]
    t1 = [r for r in blocked if r.get("target") == 1]
    if t1:
        r = t1[-1]
        ok = r["peak_process"] < 3 * GiB
        lines += [f"**1. One unit, T = {r['T']:,} bins, {r['n_columns']} columns** (a "
                  f"{r['design_gb']:.1f} GB float64 design if built whole): blocked, chosen by "
                  f"`gf.fit` with chunk_size {r['chunk_size']:,}; fit {r['fit_s']:.0f} s "
                  f"({r['fit_s'] / 60:.1f} min; {r['solver']}, {r['iters_max']} iterations); "
                  f"peak RSS of the process {_gib(r['peak_process'])} GiB (sampled "
                  f"{_gib(r['peak_sampled'])} GiB), imports and data included (data "
                  f"{r['data_mb']:.0f} MB as pynapple objects). Target < 3 GiB: "
                  f"**{'met' if ok else 'missed'}**. Time went to: {_where(r)}.", ""]
    else:
        lines += ["**1.** not measured (`--only t1e7`).", ""]
    lines += _pop_lines(_series(results, "pop/fit/", "T"))
    if errors:
        lines += ["### Points that failed", ""]
        lines += [f"- `{k}`: {r['error']}" for k, r in sorted(errors)] + [""]
    text = "\n".join(lines) + "\n"
    write_section(REPORT, text, "benchmarks/scale.py")
    return text


def _solver_seconds(r) -> float:
    """Seconds in the solver proper: the blocked solve without its design blocks, or the
    in-memory solve; compilation excluded."""
    st = r.get("stages", {})
    if "blocked solve" in st:
        inside = st.get("design blocks", 0.0) * (st["blocked solve"] / max(
            st["blocked solve"] + st.get("constraint pass", 0) + st.get("final pass", 0), 1e-9))
        return st["blocked solve"] - inside - r.get("compile_s", 0.0)
    return st.get("solve", 0.0) - r.get("compile_s", 0.0)


def _slopes_lines(a, b, x, what) -> list[str]:
    out = [f"Log-log slopes against {what} (least squares over the points; over the last "
           "three points in brackets, where fixed costs such as compilation and imports "
           "weigh less):", ""]
    for rows in (a, b):
        if len(rows) < 2:
            continue
        xs = [r[x] for r in rows]
        name = rows[0]["series"]

        def both(key):
            ys = [r[key] if not callable(key) else key(r) for r in rows]
            whole = slope(xs, ys)
            tail = slope(xs[-3:], ys[-3:]) if len(rows) > 3 else float("nan")
            return f"{whole:.2f}" + (f" [{tail:.2f}]" if np.isfinite(tail) else "")
        out.append(f"- {name}: time {both('fit_s')}, time without compilation "
                   f"{both(lambda r: r['fit_s'] - r.get('compile_s', 0))}, solver time "
                   f"without compilation {both(_solver_seconds)}, peak RSS "
                   f"{both('peak_process')}, peak above imports + data "
                   f"{both(lambda r: r['peak_process'] - r['rss_before_fit'])}")
    return out


def _all_units_se_hours(f) -> float:
    """Projected time of every unit's standard errors from one unit's (see
    glmformula.fitting.information: units are accumulated in passes of ``units_per_pass``)."""
    import math
    rebuild = f.get("se_stages", {}).get("design blocks", 0.0)
    per_unit = f["se_s"] - rebuild
    P1 = f["n_columns"] + 1
    per_pass = max(1, int(f["memory_limit"] // 4 // (4 * P1 * P1 * 8)))
    return (per_unit * f["U"] + rebuild * math.ceil(f["U"] / per_pass)) / 3600


def _pop_lines(fits) -> list[str]:
    if not fits:
        return ["**2.** not measured (`--only pop200`).", ""]
    r = fits[-1]
    U, T, P1 = r["U"], r["T"], r["n_columns"] + 1
    out = [f"**2. {U} units x {T:,} bins, `history(8) + coupling(all)`** (`{COUPLED}`; "
           f"{r['n_columns']:,} stored columns, all used by every unit: 40 shared, its own bank "
           "of 8 as history, the other units' banks as coupling), float32, Ridge(1e-3), "
           f"`gf.config.memory_limit = {r['memory_limit'] / GiB:.0f} GiB` (so that the "
           f"{r['design_gb'] / 2:.1f} GB float32 design stays in memory; a blocked fit would "
           f"use Newton, {U} Hessians of {P1:,}^2 per pass).", ""]
    for f in fits:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in
                           sorted(f["stages"].items(), key=lambda kv: -kv[1]) if v >= 0.5)
        line = (f"- T = {f['T']:,}: complete `gf.fit` {f['fit_s']:.0f} s "
                f"({f['fit_s'] / 60:.1f} min; compile {f['compile_s']:.0f} s); {f['solver']}, "
                f"iterations max {f['iters_max']} / mean {f['iters_mean']:.1f} per unit, "
                f"converged {f['converged']:.0%}; peak RSS {_gib(f['peak_process'])} GiB "
                f"(sampled {_gib(f['peak_sampled'])} GiB; imports + data "
                f"{_gib(f['rss_before_fit'])} GiB). Stages: {stages}.")
        if f.get("covariance_computed_with_fit") == 0 and "se_s" in f:
            line += (f" Standard errors are computed on first use at this size "
                     f"({U} x T x {P1:,}^2 multiply-adds): those of one unit took "
                     f"{f['se_s']:.0f} s (of which "
                     f"{f.get('se_stages', {}).get('design blocks', 0):.0f} s rebuilding the "
                     "design "
                     f"in blocks; finite: {f.get('se_finite')}), so all {U} would take "
                     f"~{_all_units_se_hours(f):.1f} h (the information of every unit, the "
                     "design rebuilt once per batch of units held in memory together).")
        out.append(line)
    ok = r["T"] >= 1_000_000 and r["converged"] > 0
    out += ["", f"Target: fits without running out of memory: **{'met' if ok else 'not shown'}**"
            + (f" (peak {_gib(r['peak_process'])} GiB on the 24 GiB machine)." if ok else ".")]
    return out + [""]


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [(axes[0], [("bins/blocked/", "T", "blocked, 1 unit"),
                         ("bins/memory/", "T", "in memory, 1 unit")], "bins T"),
              (axes[1], [("units/shared/", "U", "shared covariates"),
                         ("units/history/", "U", "+ own history")], "units (T = 1e5)")]
    for ax, series, xlabel in panels:
        for (prefix, x, label), color in zip(series, ("C0", "C1")):
            rows = _series(results, prefix, x)
            if not rows:
                continue
            xs = np.array([r[x] for r in rows], float)
            t = np.array([r["fit_s"] for r in rows])
            m = np.array([r["peak_process"] for r in rows]) / GiB
            ax.loglog(xs, t, "o-", color=color,
                      label=f"{label}: time (s), slope {slope(xs, t):.2f}")
            ax.loglog(xs, m, "s--", color=color, alpha=0.7,
                      label=f"{label}: peak RSS (GiB), slope {slope(xs, m):.2f}")
        lo, hi = ax.get_xlim()
        ref = np.array([lo * 1.5, hi / 1.5])
        anchor = ax.get_ylim()[1] / 3
        ax.loglog(ref, anchor * ref / ref[-1], color="grey", lw=0.8, ls="-.",
                  label="slope 1 (linear), for reference")
        if xlabel.startswith("bins"):
            ax.axhline(3.0, color="grey", lw=0.8, ls=":")
            ax.text(ax.get_xlim()[0] * 1.1, 3.2, "3 GiB", color="grey", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds  /  GiB")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_title("one unit, 100 columns")
    axes[1].set_title("population, fixed T")
    fig.suptitle("gf.fit: wall time (first fit, incl. compilation) and process peak RSS",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def load_results() -> dict:
    if os.path.exists(RESULTS):
        with open(RESULTS) as fh:
            return json.load(fh)
    return {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=PARTS, default=None,
                    help="parts to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes, a minute or two; "
                    "results, report and plot go to /tmp, the docs are not touched")
    ap.add_argument("--report", action="store_true", help="only rewrite the docs from the "
                    "saved results")
    ap.add_argument("--mem-cap", type=float, default=16.0, help="GiB of RSS at which a point "
                    "is killed (default 16)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per point")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        sys.stdout.write("\n" + json.dumps(result) + "\n")
        return
    global RESULTS, REPORT, PLOT
    if args.quick:  # never mixed with the full results or written into the docs
        RESULTS = os.path.join("/tmp", "glmformula_scale_quick.json")
        REPORT = os.path.join("/tmp", "glmformula_scale_quick.md")
        PLOT = os.path.join("/tmp", "glmformula_scale_quick.png")
    results = load_results()
    if not args.report:
        sizes = QUICK if args.quick else FULL
        parts = args.only or list(PARTS)
        command = "python benchmarks/scale.py" + (" --quick" if args.quick else "") + \
            (f" --only {' '.join(args.only)}" if args.only else "")
        for key, spec in specs(parts, sizes):
            print(f"{key} ...", flush=True)
            r = run_point(spec, timeout=args.timeout, mem_cap=args.mem_cap)
            r["command"] = command
            results[key] = r
            with open(RESULTS, "w") as fh:
                json.dump(results, fh, indent=1)
            if "error" in r:
                print(f"   ERROR {r['error']}", flush=True)
            elif r["kind"] == "fit":
                print(f"   fit {r['fit_s']:.1f} s (compile {r['compile_s']:.1f}), peak "
                      f"{r['peak_process'] / GiB:.2f} GiB (sampled {r['peak_sampled'] / GiB:.2f}), "
                      f"{r['solver']}, chunk {r['chunk_size']}, iters {r['iters_max']}, "
                      f"{_where(r)}", flush=True)
            else:
                shown = {k: v for k, v in r.items()
                         if k.endswith("_s") or k.startswith("peak") or k.startswith("batch")}
                print(f"   {json.dumps(shown)}", flush=True)
    info = machine_info()
    loads = [x for r in results.values() for pair in r.get("load", []) for x in pair[:1]]
    meta = dict(machine=machine_line(info),
                versions=versions_line(["jax", "jaxlib", "numpy", "scipy", "pynapple"]),
                load_min=min(loads, default=0.0), load_max=max(loads, default=0.0))
    text = write_report(results, meta)
    plot(results, PLOT)
    print(text)
    print(f"written: {REPORT} (section), {PLOT}, {RESULTS}")


if __name__ == "__main__":
    main()
