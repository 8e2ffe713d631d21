"""An interrupted command line (Ctrl-C) leaves no output file that looks complete.

The real command is started in a subprocess on a spec whose comparison takes a while; once it
says it is fitting, it gets SIGINT (what Ctrl-C sends). It must exit with status 130 and a
one-line message, no traceback, and leave no ``comparison.csv`` (nor any half-written
temporary file) in its output folder. Output files are written under a temporary name and
renamed when complete (``glmformula._files.atomic_write``, the package's one file writer), which
is checked directly too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from glmformula import _files, cli

ROOT = Path(__file__).resolve().parents[2]

SLOW_SPEC = """
[data]
simulate = "head_direction"
options = { n_units = 6, duration = 300.0 }
bin_size = "10ms"
epochs = "wake"

[models]
null = "spikes ~ 1"
hd = "spikes ~ cyclic(head_direction, 10)"
hd_hist = "spikes ~ cyclic(head_direction, 10) + history(6, log, window=100ms)"
full = "spikes ~ cyclic(head_direction, 10) + history(6, log, window=100ms) + coupling(all, 3)"

[compare]
cv = 10
"""


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "glmformula", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc, marker: str, timeout: float) -> list[str]:
    """Read stderr lines until one contains ``marker`` (or the process ends)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return seen
    pytest.fail(f"the command never said {marker!r}; stderr so far:\n{''.join(seen)}")


@pytest.mark.parametrize("command", ["compare", "fit"])
def test_ctrl_c_exits_130_and_leaves_no_complete_looking_output(tmp_path, command):
    spec = tmp_path / "slow.toml"
    spec.write_text(textwrap.dedent(SLOW_SPEC))
    out = tmp_path / "results"
    extra = ["--model", "full"] if command == "fit" else []
    proc = _start([command, str(spec), "--out", str(out), *extra], tmp_path)
    try:
        _wait_for_line(proc, f"glmformula {command}: ", timeout=300)
        time.sleep(1.0)  # inside the fits
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted; no output was completed" in stderr
    assert "Traceback" not in stderr
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert written == [], f"an interrupted run left files: {written}"


def test_ctrl_c_swallowed_by_a_gc_callback_still_stops_the_run(tmp_path, monkeypatch, capsys):
    """Python only *prints* a KeyboardInterrupt raised in a destructor or gc callback (JAX has
    one) and carries on; the command must still stop with 130 and write nothing."""
    out = tmp_path / "results"

    class RaisesWhenCollected:
        def __del__(self):
            raise KeyboardInterrupt  # what SIGINT does when it lands in a gc callback

    def command(args):
        RaisesWhenCollected()            # collected at once: the interrupt is swallowed
        cli._write_output(out / "comparison.csv", b"model,n_params\nnull,1\n")
        return 0

    monkeypatch.setattr(cli, "_check", command)
    # (a process started in the background by a shell without job control ignores SIGINT
    # from the start: what must come back is the handler it had)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(["check", "spec.toml"]) == 130
    assert not out.exists() or list(out.iterdir()) == []
    stderr = capsys.readouterr().err
    assert "interrupted" in stderr and "Exception ignored" not in stderr
    # the handlers are restored afterwards
    assert signal.getsignal(signal.SIGINT) is before


def test_atomic_write_interrupted_midway_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out" / "comparison.csv"
    real_fdopen = os.fdopen

    class Interrupting:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

        def write(self, content):
            self.handle.write(content[: len(content) // 2])  # half the bytes, then Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, "fdopen", lambda fd, mode: Interrupting(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write(target, b"model,n_params\nnull,1\n")
    assert list(target.parent.iterdir()) == []


def test_atomic_write_replaces_a_previous_file_only_when_complete(tmp_path):
    target = tmp_path / "comparison.csv"
    target.write_bytes(b"old, complete\n")
    _files.atomic_write(target, b"new, complete\n")
    assert target.read_bytes() == b"new, complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["comparison.csv"]
