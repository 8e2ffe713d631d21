"""How long does it take to parse a formula?

Parses 1,000 distinct, realistic formulas (term functions with quantities, interactions,
history and coupling, Wilkinson operators) with the parse cache cleared, and prints one line
for the docs: the total and the time per formula (median of 5 rounds). Run from the
repository root::

    python benchmarks/parse.py
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
import time
from pathlib import Path

import lark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import glmformula as gf  # noqa: E402
from glmformula.syntax.grammar import formula_parser  # noqa: E402
from glmformula.terms.formula import _parse_cached  # noqa: E402

N_FORMULAS = 1000
ROUNDS = 5
COVARIATES = ["position", "speed", "hd", "theta_phase", "current", "x", "y", "accel"]


def _term(rng: random.Random) -> str:
    x = rng.choice(COVARIATES)
    k = rng.randint(3, 16)
    return rng.choice([
        x,
        f"rcos({x}, {k})",
        f"rcos({x}, {k}, log=True, range=(0, {rng.randint(10, 200)}))",
        f"bspline({x}, {max(k, 4)}, order={rng.choice([3, 4])})",
        f"cyclic({x}, {max(k, 4)})",
        f"onehot({x}, {k}, range=(0, {rng.randint(50, 150)}))",
        f"filter({x}, {k}, window={rng.randint(20, 500)}ms)",
        f"lag({x}, {rng.randint(1, 200)}ms)",
        f"rcos(log({x}), {k})",
        f"cyclic({x}, {max(k, 4)}):{rng.choice(COVARIATES)}",
        f"rcos({x}, {k}):rcos({rng.choice(COVARIATES)}, {k})",
        f"({x} + {rng.choice(COVARIATES)})**2",
        f"{x}*{rng.choice(COVARIATES)}",
    ])


def formulas(n: int, seed: int) -> list[str]:
    """``n`` distinct formulas of 2 to 8 terms."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < n:
        terms = [_term(rng) for _ in range(rng.randint(2, 8))]
        if rng.random() < 0.5:
            terms.append(f"history({rng.randint(2, 12)}, log, window={rng.randint(20, 300)}ms)")
        if rng.random() < 0.4:
            terms.append(rng.choice(["coupling(all)", "coupling([0, 3, 5])"]))
        text = f"spikes ~ {' + '.join(terms)}"
        if rng.random() < 0.1:
            text += " - 1"
        found[text] = None
    return list(found)


def one_round(texts: list[str]) -> float:
    """CPU seconds to parse ``texts`` (CPU time: stable on a shared, busy machine)."""
    _parse_cached.cache_clear()  # cold: every formula is parsed from text
    start = time.process_time()
    for text in texts:
        gf.parse(text)
    return time.process_time() - start


def main() -> None:
    formula_parser()  # the LALR tables are built once per process: not part of a parse
    rounds = [formulas(N_FORMULAS, seed) for seed in range(ROUNDS)]
    total = statistics.median(one_round(texts) for texts in rounds)
    n_terms = statistics.mean(len(gf.parse(t).terms) for t in rounds[0])
    n_chars = statistics.mean(len(t) for t in rounds[0])
    print(f"Parsing {N_FORMULAS:,} distinct formulas ({n_terms:.1f} terms, {n_chars:.0f} "
          f"characters on average; cold cache) takes {total:.2f} s in total, "
          f"{total / N_FORMULAS * 1e3:.2f} ms per formula (CPU time, median of {ROUNDS} rounds; "
          f"Python {platform.python_version()}, lark {lark.__version__}).")


if __name__ == "__main__":
    main()
