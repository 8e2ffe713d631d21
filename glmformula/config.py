"""Process-wide settings (``gf.config``), with defaults a user rarely needs to change."""

from __future__ import annotations

import os
import threading
import warnings


def _available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; a conservative guess elsewhere)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


#: Default ``memory_limit`` as a fraction of the memory available at import. An in-memory fit
#: peaks at ~3x its design (the design, a copy of every full-grid feature kept by the feature
#: graph while building, the solver's per-row arrays), so a design may take a quarter of the
#: available memory; with half, a design just under the limit would need ~1.5x the memory
#: available (measured: docs/performance_decisions.md, 'Default memory limit').
MEMORY_FRACTION = 0.25

#: Environment variable that turns the persistent compilation cache off (``0``, ``false``,
#: ``no``, ``off``) or points it at a folder; read when ``gf.config`` is created (import).
CACHE_ENV = "GLMFORMULA_COMPILATION_CACHE"

#: Kernels that took at least this long to compile are written to the persistent cache. JAX's
#: default (1 s) would leave out most of glmformula's kernels, which compile in 0.05-1 s each;
#: with 0 every kernel is kept (13 files, ~0.2 MB for a one-unit fit), and a second process
#: fitting the same model spent 0.3-0.5 s compiling instead of 1.0 s (0.1 s) or 3.5-5 s (off).
CACHE_MIN_COMPILE_SECONDS = 0.0


#: Environment variable that leaves glibc's ``malloc`` as it is (``0``, ``false``, ``no``,
#: ``off``): ``gf.config.keep_freed_memory = False``; read when ``gf.config`` is created.
KEEP_FREED_MEMORY_ENV = "GLMFORMULA_KEEP_FREED_MEMORY"


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/glmformula/jax``, or ``~/.cache/glmformula/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "glmformula", "jax")


def _cache_from_env():
    value = os.environ.get(CACHE_ENV)
    if value is None or not value.strip():
        return True
    text = value.strip()
    if text.lower() in ("0", "false", "no", "off"):
        return False
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    return text  # a folder


def _switch_from_env(name: str, default: bool = True) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


class Config:
    """Settings.

    ``memory_limit``
        Bytes a design may take before fits go blocked or are refused; default a quarter of
        the memory available at import, :data:`MEMORY_FRACTION`.
    ``compilation_cache``
        JAX's persistent compilation cache, so that a new Python process fitting the same
        shapes loads its kernels from disk instead of compiling them again: True (default:
        in :func:`default_cache_dir`), False (off), or a folder. The environment variable
        ``GLMFORMULA_COMPILATION_CACHE=0`` turns it off (or names a folder). It is set up the
        first time glmformula compiles a kernel, as JAX's own setting
        (``jax_compilation_cache_dir``), so it then also serves other JAX code in the process;
        a cache folder already configured in JAX is left as it is, and a folder that cannot be
        written leaves the cache off (one warning), never a fit failed.
    ``threads``
        How many independent problems run at the same time, on threads: the folds of a
        comparison (``gf.compare``, ``gf.select``), and the groups of units of a fit whose
        units are solved on their own columns (e.g. ``history`` without ``coupling``: one
        small problem per unit, whose compiled kernels keep about one CPU core busy each).
        Default the number of CPUs; 1 runs them one after another. The answers are the same
        either way.
    ``keep_freed_memory``
        Ask glibc's ``malloc`` (Linux) to keep the memory a fit frees for the fits that
        follow instead of returning it to the system and faulting new pages in again: the real
        coupled head-direction model's comparison ~11% faster, with a third fewer page faults
        (:func:`glmformula._memory.keep_freed_memory`). Applied once, the first time
        glmformula builds a design or runs a compiled kernel, for the rest of the process;
        the process's resident memory then stays at its peak. Default True (not inside a
        dask worker, whose memory monitor expects freed memory back); False, or the
        environment variable ``GLMFORMULA_KEEP_FREED_MEMORY=0``, leaves ``malloc`` as it is.
    """

    def __init__(self):
        self.memory_limit = int(_available_memory() * MEMORY_FRACTION)
        self.compilation_cache = _cache_from_env()
        self.threads = max(os.cpu_count() or 1, 1)
        self.keep_freed_memory = _switch_from_env(KEEP_FREED_MEMORY_ENV)

    def __repr__(self) -> str:
        return (f"Config(memory_limit={self.memory_limit / 1024**3:.1f} GiB, "
                f"compilation_cache={self.compilation_cache!r}, threads={self.threads}, "
                f"keep_freed_memory={self.keep_freed_memory!r})")


config = Config()

_cache_lock = threading.Lock()
_cache_done = False
_cache_path: str | None = None


def setup_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache as ``config.compilation_cache`` says, once
    per process (called before glmformula compiles a kernel; cheap after the first call).

    Returns the cache folder in use (None: off). JAX settings the user made win: a cache
    folder already set in JAX (``jax_compilation_cache_dir``, ``JAX_COMPILATION_CACHE_DIR``) is
    used as it is and its thresholds are not touched; ``jax_enable_compilation_cache=False``
    keeps it off. A folder that cannot be created or written is reported once
    (``RuntimeWarning``) and the cache stays off.
    """
    global _cache_done, _cache_path
    if _cache_done:
        return _cache_path
    with _cache_lock:
        if not _cache_done:
            try:
                _cache_path = _setup_cache(config.compilation_cache)
            except Exception as err:  # never let the cache break a fit
                warnings.warn(f"glmformula could not set up JAX's compilation cache ({err}); "
                              "kernels are compiled in every new process", RuntimeWarning,
                              stacklevel=2)
            _cache_done = True
        return _cache_path


def _setup_cache(setting) -> str | None:
    import jax

    if setting is False or setting is None:
        return None
    if jax.config.jax_compilation_cache_dir:  # the user's own choice
        return str(jax.config.jax_compilation_cache_dir)
    if not getattr(jax.config, "jax_enable_compilation_cache", True):
        return None
    path = default_cache_dir() if setting is True else os.fspath(setting)
    path = os.path.abspath(os.path.expanduser(path))
    problem = _writable(path)
    if problem:
        warnings.warn(f"glmformula's compilation cache folder {path} cannot be used "
                      f"({problem}); kernels are compiled in every new process (set "
                      "gf.config.compilation_cache to another folder, or to False)",
                      RuntimeWarning, stacklevel=3)
        return None
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          CACHE_MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def _writable(path: str) -> str | None:
    """None when ``path`` exists (created if missing) and a file can be written in it, else
    why not."""
    import tempfile
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def reset_compilation_cache_setup() -> None:
    """Let :func:`setup_compilation_cache` run again (tests; JAX keeps a folder it used)."""
    global _cache_done, _cache_path
    with _cache_lock:
        _cache_done, _cache_path = False, None
