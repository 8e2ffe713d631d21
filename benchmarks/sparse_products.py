"""BACKEND ONLY: the real coupled design's product passes as sparse products (Numba) against
XLA's dense ones, alone and inside a jitted loop through ``jax.pure_callback``.

A measured lead, not a code path of the package (docs/performance.md, 'Real recordings',
session 27). Reads ../shared/data/hd_mouse28_140313, builds the design of
``cyclic(head_direction, 12) + history(8, log, window=100ms) + coupling(all)`` (10 ms bins,
``valid`` epochs, 268 columns without the intercept) and times, for 32 units:

* ``X @ W`` and ``X' R``: a CSR matrix in a Numba kernel on two threads against XLA's dense
  products (``X' R`` from the transposed copy, as L-BFGS forms it);
* ten passes of a jitted ``fori_loop``: XLA's dense step pass (``problem.step_sums`` with the
  transposed copy) against (a) the two sparse products as callbacks with XLA's element-wise
  work between them and (b) one callback fusing the whole step pass (products, rates, sums)::

    python benchmarks/sparse_products.py
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import _common as common
import jax
import jax.numpy as jnp
import numba
import numpy as np
import scipy.sparse as sp
from hd_real_fits import DATA, MODELS, load
from jax import lax

import glmformula as gf
from glmformula.backend import problem as pb

jax.config.update("jax_enable_x64", True)
UNITS = 32
POOL = ThreadPoolExecutor(2)


@numba.njit(nogil=True)
def csr_times(indptr, indices, values, B, out, r0, r1):  # pragma: no cover - compiled
    """``out[r0:r1] = X[r0:r1] @ B``."""
    for t in range(r0, r1):
        for k in range(B.shape[1]):
            out[t, k] = 0.0
        for i in range(indptr[t], indptr[t + 1]):
            j, v = indices[i], values[i]
            for k in range(B.shape[1]):
                out[t, k] += v * B[j, k]


@numba.njit(nogil=True)
def csr_transposed_times(indptr, indices, values, R, out, r0, r1):  # pragma: no cover
    """``out = X[r0:r1]' @ R[r0:r1]``."""
    out[:, :] = 0.0
    for t in range(r0, r1):
        for i in range(indptr[t], indptr[t + 1]):
            j, v = indices[i], values[i]
            for k in range(R.shape[1]):
                out[j, k] += v * R[t, k]


@numba.njit(nogil=True)
def fused_step(indptr, indices, values, eta, Y, rw, dW, db, r0, r1, xi, G, sums):  # noqa: E501
    """The step pass of ``problem.step_sums`` (Poisson, below the rate cap) on rows r0:r1."""
    U = dW.shape[1]
    resid = np.empty(U)
    for t in range(r0, r1):
        for k in range(U):
            xi[t, k] = db[k]
        for i in range(indptr[t], indptr[t + 1]):
            j, v = indices[i], values[i]
            for k in range(U):
                xi[t, k] += v * dW[j, k]
        w = rw[t]
        for k in range(U):
            e = eta[t, k] + xi[t, k]
            rate = np.exp(e)
            sums[0, k] += w * (rate - Y[t, k] * e)
            resid[k] = w * (rate - Y[t, k])
            sums[1, k] += resid[k]
            sums[2, k] += w * (rate + Y[t, k] * abs(e))
        for i in range(indptr[t], indptr[t + 1]):
            j, v = indices[i], values[i]
            for k in range(U):
                G[j, k] += v * resid[k]


def median_ms(fn, repeats: int = 7) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call, in milliseconds."""
    return 1e3 * common.time_calls(fn, repeats, warmup=1)["median"]


def main() -> None:
    if not DATA.exists():
        raise SystemExit(f"the real recording is not at {DATA} (it lives in ../shared/data)")
    data = load()
    design = gf.design_matrix(MODELS["hd+history+coupling"], data, bin_size="10ms",
                              epochs="valid")
    X = np.ascontiguousarray(design.to_numpy()[:, 1:])
    T, P = X.shape
    csr = sp.csr_matrix(X)
    parts = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data)
    halves = [(0, T // 2), (T // 2, T)]
    print(f"design {T} x {P}, {csr.nnz / X.size:.1%} non-zero, {UNITS} units")

    def sparse_times(B):
        out = np.empty((T, B.shape[1]))
        list(POOL.map(lambda h: csr_times(*parts, B, out, *h), halves))
        return out

    def sparse_transposed_times(R):
        outs = [np.empty((P, R.shape[1])) for _ in halves]
        list(POOL.map(lambda i: csr_transposed_times(*parts, R, outs[i], *halves[i]), range(2)))
        return outs[0] + outs[1]

    def fused(eta, Y, rw, dW, db):
        eta, Y, rw, dW, db = map(np.asarray, (eta, Y, rw, dW, db))
        xi = np.empty((T, dW.shape[1]))
        G = [np.zeros((P, dW.shape[1])) for _ in halves]
        S = [np.zeros((3, dW.shape[1])) for _ in halves]
        list(POOL.map(lambda i: fused_step(*parts, eta, Y, rw, dW, db, *halves[i], xi, G[i],
                                           S[i]), range(2)))
        sums = S[0] + S[1]
        return xi, sums[0], G[0] + G[1], sums[1], sums[2]

    rng = np.random.default_rng(0)
    W = rng.standard_normal((P, UNITS)) * 0.01
    R = rng.standard_normal((T, UNITS))
    Xj, Xtj = jnp.asarray(X), jnp.asarray(np.ascontiguousarray(X.T))
    print(f"X @ W: sparse {median_ms(lambda: sparse_times(W)):.1f} ms, XLA dense "
          f"{median_ms(lambda: jax.block_until_ready(jax.jit(jnp.matmul)(Xj, W))):.1f} ms")
    print(f"X' R:  sparse {median_ms(lambda: sparse_transposed_times(R)):.1f} ms, XLA dense "
          f"{median_ms(lambda: jax.block_until_ready(jax.jit(jnp.matmul)(Xtj, R))):.1f} ms")

    Y = jnp.asarray(rng.poisson(0.1, (T, UNITS)).astype(float))
    rw = jnp.ones(T)
    eta0 = Xj @ W - 2.3
    db = jnp.zeros(UNITS)
    chunk = pb.step_chunk(P, 8)
    f64 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float64)  # noqa: E731

    def step(kind, eta, d):
        if kind == "XLA dense":
            xi, (loss, grad, _, _) = pb.step_sums(Xj, Y, rw, eta, d, db, chunk, None, Xtj)
        elif kind == "sparse products as callbacks":
            xi = jax.pure_callback(lambda b: sparse_times(np.asarray(b)), f64(T, UNITS), d)
            e = eta + xi
            resid = jnp.exp(e) - Y
            loss = jnp.sum(jnp.exp(e) - Y * e, axis=0)
            grad = jax.pure_callback(lambda r: sparse_transposed_times(np.asarray(r)),
                                     f64(P, UNITS), resid)
        else:
            xi, loss, grad, _, _ = jax.pure_callback(
                fused, (f64(T, UNITS), f64(UNITS), f64(P, UNITS), f64(UNITS), f64(UNITS)),
                eta, Y, rw, d, db)
        return jnp.sum(loss) + jnp.sum(grad) + jnp.sum(xi[::1000])

    for kind in ("XLA dense", "sparse products as callbacks", "one fused callback"):
        loop = jax.jit(lambda eta, d, kind=kind: lax.fori_loop(
            0, 10, lambda i, acc: acc + step(kind, eta, d * (1.0 + 1e-3 * i)), 0.0))
        ms = median_ms(lambda: jax.block_until_ready(loop(eta0, jnp.asarray(W))), 3) / 10
        print(f"step pass inside a jitted loop, {kind}: {ms:.0f} ms")


if __name__ == "__main__":
    main()
