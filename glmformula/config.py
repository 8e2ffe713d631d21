"""Process-wide settings (``gf.config``), with defaults a user rarely needs to change."""

from __future__ import annotations

import os


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
#: peaks at ~3x its design (benchmarks/scale.py, one unit, 100 columns, 3e6 bins: 7.4 GiB for a
#: 2.4 GB design: the design, a copy of every full-grid feature kept by the feature graph while
#: building, the solver's per-row arrays), so a design may take a quarter of the available
#: memory; with half, a design just under the limit would need ~1.5x the memory available.
MEMORY_FRACTION = 0.25


class Config:
    """Settings: ``memory_limit`` (bytes a design may take before fits go blocked or are
    refused; default a quarter of the memory available at import, :data:`MEMORY_FRACTION`)."""

    def __init__(self):
        self.memory_limit = int(_available_memory() * MEMORY_FRACTION)

    def __repr__(self) -> str:
        return f"Config(memory_limit={self.memory_limit / 1024**3:.1f} GiB)"


config = Config()
