"""Writing files all or nothing: the one helper every output of the package goes through.

A file is written under a temporary name in its own folder and renamed over the target
(``os.replace``, atomic on POSIX and Windows) only once every byte is on disk. An exception at
any point, ``KeyboardInterrupt`` included, removes the temporary file and leaves the target as it
was: an interrupted run never leaves a file that looks complete. The file gets the mode any file
a script writes gets (``0666`` less the umask, so ``0644`` under the usual umask ``022``), not
``tempfile.mkstemp``'s owner-only ``0600``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

#: How many random temporary names to try before giving up (a clash is ~1 in 2**32 each).
_ATTEMPTS = 16


def atomic_write(path, data: bytes, *, abort: Callable[[], bool] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (all or nothing); returns the path.

    Parameters
    ----------
    path : str or Path
        The target; its folder is created if missing. An existing file is replaced only when
        the new content is complete.
    data : bytes
        The content.
    abort : callable, optional
        Asked after the content is written and before the rename; if it returns True the
        temporary file is removed and ``KeyboardInterrupt`` raised (the command line passes
        "was Ctrl-C pressed?", since Python can swallow an interrupt inside a callback).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    tmp = None
    try:
        for _ in range(_ATTEMPTS):
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
            try:
                fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any new file
                break
            except FileExistsError:
                tmp = None
        else:
            raise FileExistsError(f"could not create a temporary file beside {path}")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if abort is not None and abort():
            raise KeyboardInterrupt
        os.replace(tmp, path)
        tmp = None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["atomic_write"]
