"""Fuzz the formula parser: N generated inputs must give a Formula or a FormulaError, never
anything else (no other exception, no hang, no code run).

    python benchmarks/fuzz_parser.py --n 100000 --seed 0

Inputs: random strings over the formula alphabet, random printable/unicode strings, and random
mutations (insert, delete, replace, swap, duplicate) of valid formulas.
"""

from __future__ import annotations

import argparse
import random
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


def generate(rng: random.Random) -> str:
    kind = rng.random()
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts = {"parsed": 0, "FormulaError": 0, "other": 0}
    others = []
    started = time.perf_counter()
    for _ in range(args.n):
        text = generate(rng)
        formula_module._parse_cached.cache_clear()
        try:
            gf.parse(text)
            counts["parsed"] += 1
        except gf.FormulaError:
            counts["FormulaError"] += 1
        except Exception as err:  # noqa: BLE001 - this is what the fuzzer looks for
            counts["other"] += 1
            others.append((text, repr(err)))
    seconds = time.perf_counter() - started
    print(f"{args.n} inputs in {seconds:.1f} s: {counts['parsed']} parsed, "
          f"{counts['FormulaError']} FormulaError, {counts['other']} other exceptions")
    for text, err in others[:20]:
        print(f"  {text!r}: {err}")
    return 1 if counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
