"""Fuzz the formula parser: N generated inputs must give a Formula or a FormulaError, never
anything else (no other exception, no hang, no code run).

    python benchmarks/fuzz_parser.py --n 100000 --seed 0 --timeout 2

Inputs: random strings over the formula alphabet, random printable/unicode strings, random
mutations (insert, delete, replace, swap, duplicate) of valid formulas, and hostile shapes
(issue 18): long sums and chains, deep nesting of parentheses, calls and lists, huge numeric
literals, wide powers, long names, many interactions. Each input runs under a SIGALRM guard of
``--timeout`` seconds: an input that takes longer counts as a hang, and fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import signal
import sys
import time

import glmformula as gf
from glmformula.terms import formula as formula_module

SEEDS = [
    "spikes ~ cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)",
    "spikes[[0, 4, 7]] ~ rcos(position, 7, range=(0, 100)) * speed - 1",
    "y ~ (a + b + c)**2 - a:b + bspline(log(speed), 6, order=3)",
    "spikes[3] ~ filter(current, 8, window=200ms, log=False) + lag(x, 25ms) + onehot(p, 5)",
    "y ~ cyclic(hd, 8, period=2pi):speed + center(x) + scale(y) + pow(z, 2) + offset(e)",
    "y ~ a/b + (c + d)/e + 0",
]
ALPHABET = "abcxyz_~+-*/:()[],=. 0123456789'\"mspilogcyclicrcos\t\n#$!@{}<>;^%&|\\"
TOKENS = ["~", "+", "-", "*", "/", ":", "**", "(", ")", "[", "]", ",", "=", "100ms", "2pi",
          "1e-3", "log", "all", "cyclic(", "history(", "coupling(", "rcos(", "'s'", "0", "1"]


OPERATORS = ["+", "-", ":", "*", "/"]


def _size(rng: random.Random, most: int) -> int:
    """A size from 1 to ``most``, log-uniform: mostly small, sometimes huge."""
    return int(math.exp(rng.uniform(0, math.log(most))))


def _names(rng: random.Random, n: int) -> list[str]:
    return [f"x{rng.randrange(n)}" for _ in range(n)]


def _long_chain(rng: random.Random) -> str:
    op = rng.choice(OPERATORS)
    return "y ~ " + f"{op}".join(_names(rng, _size(rng, 12_000)))


def _deep_nesting(rng: random.Random) -> str:
    depth = _size(rng, 30_000)
    opener, closer = rng.choice([("(", ")"), ("(a + ", ")"), ("log(", ")"), ("(a:", ")"),
                                 ("[", "]")])
    inner = "x" if opener != "[" else "1"
    closing = closer * (depth if rng.random() < 0.8 else rng.randrange(depth + 1))
    if opener == "[":
        return "y ~ coupling(" + opener * depth + inner + closing + ")"
    return "y ~ " + opener * depth + inner + closing


def _huge_literal(rng: random.Random) -> str:
    digits = "9" * _size(rng, 5_000)
    literal = rng.choice([digits, f"1e{digits[:rng.randint(1, 12)]}", f"{digits}.5",
                          f"1e-{digits[:rng.randint(1, 12)]}"])
    return rng.choice([
        f"y ~ (a + b + c)**{literal}", f"y ~ rcos(x, {literal})", f"y ~ lag(x, {literal}s)",
        f"y ~ lag(x, -{literal}ms)", f"y[{literal}] ~ x", f"y ~ coupling([{literal}])",
        f"y ~ cyclic(hd, 12, period={literal}pi)", f"y ~ pow(x, {literal})",
        f"y ~ onehot(x, {literal})", f"y ~ a**{literal}"])


def _wide_power(rng: random.Random) -> str:
    factors = _size(rng, 100)
    power = rng.choice([factors, _size(rng, 100), 2, 3])
    return "y ~ (" + " + ".join(f"x{i}" for i in range(factors)) + f")**{power}"


def _long_name(rng: random.Random) -> str:
    name = rng.choice("abx_") * _size(rng, 200_000)
    return rng.choice([f"y ~ {name}", f"{name} ~ a", f"y ~ rcos({name}, 5)", f"y ~ a:{name}"])


def _many_interactions(rng: random.Random) -> str:
    n = _size(rng, 60)
    product = rng.choice(["*", ":", "/"]).join(f"x{i}" for i in range(n))
    side = "(" + " + ".join(f"x{i}" for i in range(_size(rng, 14))) + f")**{_size(rng, 14)}"
    other = side.replace("x", rng.choice(["x", "z"]))
    return rng.choice([f"y ~ {product}", f"y ~ {side}:{other}", f"y ~ {side}*{other}",
                       f"y ~ {side} + {other}", f"y ~ ({product})**{_size(rng, 5)}"])


HOSTILE = [_long_chain, _deep_nesting, _huge_literal, _wide_power, _long_name,
           _many_interactions]


def generate(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.05:
        return rng.choice(HOSTILE)(rng)
    if kind < 0.25:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
    if kind < 0.35:
        return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 30)))
    text = list(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        position = rng.randint(0, len(text))
        if op < 0.3 and text:
            del text[min(position, len(text) - 1)]
        elif op < 0.6:
            text[position:position] = list(rng.choice(TOKENS))
        elif op < 0.8 and text:
            text[min(position, len(text) - 1)] = rng.choice(ALPHABET)
        elif text:
            a, b = sorted(rng.sample(range(len(text) + 1), 2))
            text[a:b] = text[a:b] * 2
    return "".join(text)


class Hang(Exception):
    """An input took longer than the per-input time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the block after ``seconds`` (SIGALRM, main thread only).

    The alarm repeats every 0.1 s after the first: an exception raised while a garbage-collector
    callback runs is swallowed, and a one-shot alarm would be lost with it.
    """
    def interrupt(signum, frame):
        raise Hang

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_one(text: str, seconds: float) -> tuple[str, float, str | None]:
    """``(outcome, seconds taken, error repr)``; outcome: parsed, FormulaError, other, hang."""
    formula_module._parse_cached.cache_clear()
    started = time.perf_counter()
    outcome, error = "parsed", None
    try:
        with time_limit(seconds):
            gf.parse(text)
    except gf.FormulaError:
        outcome = "FormulaError"
    except Hang:
        outcome = "hang"
    except Exception as err:  # noqa: BLE001 - this is what the fuzzer looks for
        outcome, error = "other", repr(err)[:300]
    return outcome, time.perf_counter() - started, error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds an input may take before it counts as a hang")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts = {"parsed": 0, "FormulaError": 0, "other": 0, "hang": 0}
    problems, slowest = [], (0.0, "")
    started = time.perf_counter()
    for _ in range(args.n):
        text = generate(rng)
        outcome, seconds, error = run_one(text, args.timeout)
        counts[outcome] += 1
        slowest = max(slowest, (seconds, text))
        if outcome in ("other", "hang"):
            problems.append((text, error or f"no answer within {args.timeout} s"))
    seconds = time.perf_counter() - started
    print(f"{args.n} inputs in {seconds:.1f} s: {counts['parsed']} parsed, "
          f"{counts['FormulaError']} FormulaError, {counts['other']} other exceptions, "
          f"{counts['hang']} hangs (over {args.timeout:g} s); slowest input "
          f"{slowest[0]:.2f} s ({len(slowest[1]):,} characters: {slowest[1][:60]!r}...)")
    for text, err in problems[:20]:
        print(f"  {text[:200]!r}: {err}")
    return 1 if counts["other"] or counts["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
