"""How the host's memory is handed out, measured where it shows: fresh buffers and page faults.

Issue 16, session 30. Two parts, each in fresh Python processes (the settings are process-wide):

``--part buffers``: the time to write a fresh 390 MB buffer (the real coupled model's fold
copy: 184,044 x 268 float64), three in a row, allocated by numpy (which advises the kernel to
back it by huge pages) and by ``glmformula._memory.aligned_zeros`` (an anonymous map,
populated at once). Where the kernel compacts memory to find huge pages on the first write
(``/sys/kernel/mm/transparent_hugepage/defrag`` = ``madvise``), numpy's first buffer stalls.

``--part allocator``: the real head-direction recording's ``gf.compare`` (hd / +history /
+coupling, cv=5, 10 ms, ``valid``, unpenalised; ``--models`` to choose) in a process with
``GLMFORMULA_KEEP_FREED_MEMORY=1`` (glibc's malloc keeps freed memory for reuse, the
default) and one with ``=0`` (malloc as it is), alternated ``--repeats`` times: wall, CPU,
system time and minor page faults of the first and the second (warm) call.

    python benchmarks/memory_policy.py [--part buffers allocator] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

BUFFERS = """
import json, sys, time
import numpy as np
from glmformula._memory import aligned_zeros
shape = (184044, 268)
make = (lambda: np.zeros(shape)) if sys.argv[1] == "numpy" else (
    lambda: aligned_zeros(shape, np.float64))
times = []
for _ in range(3):
    t = time.perf_counter()
    a = make()
    a.fill(0.5)
    times.append(time.perf_counter() - t)
    del a
print(json.dumps(times))
"""

COMPARE = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import hd_real_fits as h
import glmformula as gf
import warnings
warnings.simplefilter("ignore")
data = h.load_or_exit()
models = {{m: h.MODELS[m] for m in {models!r}}}
rows = []
for _ in range(2):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    table = gf.compare(models, data, bin_size="10ms", epochs="valid", cv=5, smoothing=None)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rows.append({{"wall": wall, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                 "sys": r1.ru_stime - r0.ru_stime, "faults": r1.ru_minflt - r0.ru_minflt,
                 "bits": [round(float(b), 6) for b in table["cv_bits_per_spike"]]}})
print(json.dumps(rows))
"""


def _child(code: str, args: list[str], env: dict | None = None):
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, check=True,
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    return json.loads(done.stdout.strip().splitlines()[-1])


def buffers() -> None:
    print("fresh 390 MB buffers, written whole, three in a row (s):")
    for how in ("numpy", "aligned_zeros", "numpy", "aligned_zeros"):
        times = _child(BUFFERS, [how])
        print(f"  {how:14s} " + "  ".join(f"{t:.3f}" for t in times), flush=True)


def allocator(models: list[str], repeats: int) -> None:
    code = COMPARE.format(bench=str(ROOT / "benchmarks"), models=models)
    print(f"gf.compare of {', '.join(models)} (cv=5), a fresh process each:")
    for _ in range(repeats):
        for keep in ("1", "0"):
            rows = _child(code, [], {"GLMFORMULA_KEEP_FREED_MEMORY": keep})
            for label, row in zip(("first", "warm "), rows):
                print(f"  keep_freed_memory={keep} {label} {row['wall']:6.1f} s wall, "
                      f"CPU {row['cpu']:6.1f} s, system {row['sys']:5.1f} s, "
                      f"{row['faults'] / 1e6:.2f} M page faults, cv bits/spike {row['bits']}",
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="*", default=["buffers", "allocator"],
                        choices=["buffers", "allocator"])
    parser.add_argument("--models", nargs="*",
                        default=["hd", "hd+history", "hd+history+coupling"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if "buffers" in args.part:
        buffers()
    if "allocator" in args.part:
        allocator(args.models, args.repeats)


if __name__ == "__main__":
    main()
