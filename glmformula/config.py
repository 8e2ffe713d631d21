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


class Config:
    """Settings: ``memory_limit`` (bytes a design may take before fits go blocked or are
    refused; default half of the memory available at import)."""

    def __init__(self):
        self.memory_limit = int(_available_memory() * 0.5)

    def __repr__(self) -> str:
        return f"Config(memory_limit={self.memory_limit / 1024**3:.1f} GiB)"


config = Config()
