"""glmformula and NeMoS on the same rows of the same design: where the two libraries' cv
bits/spike differ on the REAL head-direction recording, is it the fit or the stopping point?

One cross-validation fold (``--fold``, default the first of 5) of one model (``--model``,
default the coupled model) of ``benchmarks/hd_real_fits.py``, unpenalised, 10 ms bins, the
``valid`` epochs. glmformula fits the fold as ``gf.compare`` does (warm-started at its fit on
all rows, ``Comparison.run_task`` / ``Comparison.fit``); NeMoS 0.2.8 fits the same training rows
of glmformula's own stored design (``PopulationGLM(regularizer="UnRegularized",
solver_name="LBFGS")``, default settings). Both are scored on the same rows: the training
mean Poisson negative log-likelihood (without log y!, nats per bin, summed over units: the
objective both minimise) and the held-out bits/spike pooled over units.

    flock /tmp/glmformula-bench.lock python benchmarks/hd_real_same_design.py [--fold 0]

A lower training objective with a lower held-out score means the other library stopped
short of the maximum-likelihood fit (early stopping acts as a regularizer), not that it fits
the stated model better.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from compare import pooled_bits_per_spike
from hd_real_fits import MODELS, load_or_exit

from glmformula.compare.compare import _named
from glmformula.compare.comparison import Comparison


def mean_nll(eta, counts) -> np.ndarray:
    """Each unit's mean Poisson negative log-likelihood without log y! (nats per bin)."""
    return np.mean(np.exp(eta) - counts * eta, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="hd+history+coupling")
    parser.add_argument("--fold", type=int, default=0, help="0-based, of 5")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    data = load_or_exit()
    comparison = Comparison(_named({args.model: MODELS[args.model]}), data, bin_size="10ms",
                            epochs="valid", cv=5, regularizer=None, solver="auto", dtype=None,
                            smoothing=None)
    comparison.run_task(args.model, -1)  # the fit on all rows: the fold's start
    full = comparison._full[args.model]
    test = comparison.folds[args.fold]
    train = comparison.valid & ~test
    started = time.perf_counter()
    fit = comparison.fit(args.model, train, init=(full.weights, full.intercepts), fold=True)
    gf_seconds = time.perf_counter() - started
    design = comparison.designs[args.model]
    X, Y = np.asarray(design.storage, float), np.asarray(design.counts, float)
    rows, held = np.flatnonzero(train), np.flatnonzero(test)

    import jax
    jax.config.update("jax_enable_x64", True)
    import nemos as nmo
    started = time.perf_counter()
    model = nmo.glm.PopulationGLM(regularizer="UnRegularized", solver_name="LBFGS")
    model.fit(X[rows], Y[rows])
    nemos_seconds = time.perf_counter() - started

    fits = {"glmformula": (np.asarray(fit.weights), np.asarray(fit.intercepts), gf_seconds,
                           f"converged {bool(np.all(fit.diagnostics.converged))}"),
            "NeMoS": (np.asarray(model.coef_), np.asarray(model.intercept_), nemos_seconds,
                      f"{int(model.optim_info_.num_steps)} L-BFGS steps, converged "
                      f"{bool(model.optim_info_.converged)}")}
    print(f"REAL hd_mouse28_140313, model {args.model}, fold {args.fold + 1} of 5: "
          f"{rows.size:,} training rows, {held.size:,} held out, {X.shape[1]} stored columns")
    nll = {}
    for name, (W, b, seconds, status) in fits.items():
        nll[name] = mean_nll(X[rows] @ W + b, Y[rows])
        print(f"  {name:10s} {seconds:6.1f} s ({status}): training objective "
              f"{nll[name].sum():.6f} nats/bin (sum over units), held-out "
              f"{pooled_bits_per_spike(Y[held], np.exp(X[held] @ W + b)):.4f} bits/spike, "
              f"max |w| {np.abs(W).max():.1f}")
    gap = nll["NeMoS"] - nll["glmformula"]
    print(f"  NeMoS - glmformula training objective per unit: {gap.min():.2e} to "
          f"{gap.max():.2e} nats/bin ({int(np.sum(gap > 0))} of {gap.size} units higher)")


if __name__ == "__main__":
    main()
