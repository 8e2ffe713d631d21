"""R's mgcv as an oracle for smoothness selection: penalised Poisson GLMs fitted by ``Rscript``.

Arrays travel to R as little-endian float64 ``.bin`` files (``readBin``) with a ``.dim`` text
file of their shape (R's column-major order), in a temporary directory, and come back the same
way; no rpy2. Each call starts one ``Rscript`` process.

* :func:`fit_paraPen` fits ``gam(y ~ X, paraPen=list(X=list(S1, S2, ...)), method="REML")`` on a
  design of ours (no intercept column: mgcv adds its own) with our penalty blocks.
* :func:`fit_smooth_cc` fits mgcv's own cyclic smooth ``s(x, bs="cc", k=k)`` with ``gam``
  (REML) or ``bam(discrete=TRUE, method="fREML")``, one or many response columns, and predicts
  on new covariate values (held-out comparisons).
* :data:`requires_mgcv` skips a test where ``Rscript`` with mgcv is not installed.

Unit conventions (checked in ``test_mgcv_oracle_selfcheck.py``)
-----------------------------------------------------------------
mgcv minimises the penalised deviance ``D(b) + sum_j sp_j b' S_j b``, with the Poisson deviance
``D(b) = 2 (LL_saturated - LL(b)) = 2 sum_t NLL_t(b) + const``. Our objective over ``n`` rows is
``(1/n) sum_t NLL_t(b) + 0.5 sum_j s_j w' S_j w``; multiplied by ``2 n`` it is
``2 sum_t NLL_t + sum_j (n s_j) w' S_j w``, the same minimiser as mgcv's when::

    sp_j = n * s_j          (s_j = sp_j / n; MgcvFit.strength)

mgcv's ``Vp`` is the inverse of the penalised Hessian of the *deviance over two*,
``(X1' W X1 + sum_j sp_j S_j)^-1 = (n * H)^-1`` with ``H`` the Hessian of our objective (``X1``
is the design with the intercept column first). ``reml`` (``fit$gcv.ubre``) is the Laplace
approximate negative log restricted likelihood mgcv minimises for a known scale (Poisson)::

    -LL(b) + 0.5 b' S b + 0.5 log|X1' W X1 + S| - 0.5 log|S|_+ - (M_p / 2) log(2 pi)

at the penalised fit ``b`` for those ``sp``, with ``W = diag(exp(X1 b))``, ``LL`` including
``-log y!``, ``S = sum_j sp_j S_j`` (zero on the intercept), ``|S|_+`` the product of its
positive eigenvalues and ``M_p`` the dimension of its null space, intercept included.

``paraPen`` penalties are used as given, so ``fit_paraPen``'s ``sp`` is on our ``S_j``. mgcv's
own smooths (``s(...)``) divide their penalty by ``S.scale`` first and report ``sp`` on that
scale: ``SmoothFit.sp_raw = sp / S.scale`` is on the basis' own penalty.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

#: Seconds one ``Rscript`` call may take before it is killed.
TIMEOUT = 3600.0

_SKIP_REASON = ("Rscript with mgcv not found; `apt-get install r-cran-mgcv` (or run .ci/run) to "
                "run the mgcv oracle tests")


class MgcvError(RuntimeError):
    """``Rscript`` failed (the message ends with its stderr)."""


@functools.cache
def mgcv_version() -> str | None:
    """The installed mgcv's version, or None when ``Rscript`` or mgcv is missing."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    code = ('suppressPackageStartupMessages(library(mgcv)); '
            'cat(as.character(packageVersion("mgcv")))')
    try:
        out = subprocess.run([rscript, "--vanilla", "-e", code], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip()


#: Marks a test that needs ``Rscript`` with mgcv; it skips, saying how to install it, elsewhere.
requires_mgcv = pytest.mark.skipif(mgcv_version() is None, reason=_SKIP_REASON)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class MgcvFit:
    """One ``gam(..., paraPen=...)`` fit (mgcv's units; see the module docstring).

    Attributes
    ----------
    sp : ndarray (m,)
        Smoothing parameters, one per penalty, as ``fit$sp`` (fixed ones as given).
    edf : ndarray (m,)
        Effective degrees of freedom per penalty block: ``fit$edf`` summed over the block's
        columns (columns shared by several blocks count in each).
    edf_total : float
        ``sum(fit$edf)``, the intercept (1) included.
    edf_coef : ndarray (p + 1,)
        ``fit$edf``, intercept first.
    coefficients : ndarray (p + 1,)
        Intercept first, then the columns of ``X``.
    reml : float
        ``fit$gcv.ubre``: the criterion minimised (REML: Laplace negative log restricted
        likelihood).
    Vp : ndarray (p + 1, p + 1)
        Bayesian posterior covariance of the coefficients.
    n : int
        Rows.
    converged : bool
        The penalised IRLS converged (``fit$converged``).
    outer : str
        ``fit$outer.info$conv`` (smoothing-parameter search), ``""`` when every sp was fixed.
    seconds : float
        Wall time of the ``gam`` call inside R.
    warnings : tuple of str
        R warnings raised by the fit.
    scale : float
        ``fit$sig2``: the estimated scale (1 for Poisson and binomial).
    """

    sp: np.ndarray
    edf: np.ndarray
    edf_total: float
    edf_coef: np.ndarray
    coefficients: np.ndarray
    reml: float
    Vp: np.ndarray
    n: int
    converged: bool
    outer: str
    seconds: float
    warnings: tuple[str, ...]
    scale: float = 1.0

    @property
    def log_sp(self) -> np.ndarray:
        """``log(sp)``, the scale mgcv searches on."""
        return np.log(self.sp)

    @property
    def strength(self) -> np.ndarray:
        """The smoothing parameters in our units, ``s_j = sp_j / n``."""
        return self.sp / self.n


@dataclasses.dataclass(frozen=True)
class SmoothFit:
    """``s(x, bs="cc")`` fits of one or several response columns (one entry per column).

    Attributes
    ----------
    engine : str
        ``"gam"`` (method REML) or ``"bam"`` (discrete, method fREML).
    sp, S_scale, edf, edf_total, reml, seconds : ndarray (u,)
        Smoothing parameter (``fit$sp``, on mgcv's rescaled penalty: see :attr:`sp_raw`), the
        penalty's rescaling ``fit$smooth[[1]]$S.scale``, the smooth's edf (intercept excluded),
        ``sum(fit$edf)`` (intercept included), ``fit$gcv.ubre`` and the wall time of the fit
        inside R (prediction excluded). NaN where that column's fit failed.
    cpu_seconds : ndarray (u,)
        The R process's CPU time (user + system) of each fit: less sensitive than wall time to
        other jobs on a shared machine.
    knots : ndarray (k, u)
        The knots mgcv used (``fit$smooth[[1]]$xp``).
    coefficients : ndarray (k - 1, u)
        Intercept first, then the ``k - 2`` constrained cyclic coefficients.
    predictions : ndarray (n_new, u)
        Expected counts (response scale, offset included) at ``x_new``.
    converged : ndarray (u,) bool
    errors : tuple of str
        Per column: R's error message, or ``""``.
    warnings : tuple of str
        Per column: R's warnings joined with ``" | "``.
    """

    engine: str
    sp: np.ndarray
    S_scale: np.ndarray
    knots: np.ndarray
    edf: np.ndarray
    edf_total: np.ndarray
    reml: np.ndarray
    seconds: np.ndarray
    cpu_seconds: np.ndarray
    coefficients: np.ndarray
    predictions: np.ndarray
    converged: np.ndarray
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def log_sp(self) -> np.ndarray:
        return np.log(self.sp)

    @property
    def sp_raw(self) -> np.ndarray:
        """``sp / S.scale``: the smoothing parameter on the cc basis' own penalty matrix.

        mgcv divides a smooth's penalty by ``S.scale`` (from the norms of its model matrix
        and penalty, so it depends on the knots and the data) before fitting and reports
        ``sp`` on that scale; fits with other knots or data compare through ``sp_raw``.
        """
        return self.sp / self.S_scale


# --------------------------------------------------------------------------- transfer

# rd/wr mirror _write/_read below: float64 little-endian, column-major, shape in a .dim file.
_R_PRELUDE = r"""
suppressPackageStartupMessages(library(mgcv))
dir <- commandArgs(trailingOnly = TRUE)[1]
path <- function(name, ext) file.path(dir, paste0(name, ext))
rd <- function(name) {
  d <- scan(path(name, ".dim"), quiet = TRUE)
  x <- readBin(path(name, ".bin"), "double", n = prod(d), size = 8, endian = "little")
  if (length(d) > 1) dim(x) <- d
  x
}
wr <- function(name, x) {
  d <- if (is.null(dim(x))) length(x) else dim(x)
  writeBin(as.double(x), path(name, ".bin"), size = 8, endian = "little")
  writeLines(paste(d, collapse = " "), path(name, ".dim"))
}
has <- function(name) file.exists(path(name, ".bin"))
# Collect warnings instead of printing them; `warns` is reset by the caller.
quietly <- function(expr) withCallingHandlers(expr, warning = function(w) {
  warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
})
"""


def _write(directory: Path, name: str, array) -> None:
    a = np.asarray(array, dtype="<f8")
    a.ravel(order="F").tofile(directory / f"{name}.bin")
    (directory / f"{name}.dim").write_text(" ".join(map(str, a.shape or (1,))))


def _read(directory: Path, name: str) -> np.ndarray:
    dims = [int(v) for v in (directory / f"{name}.dim").read_text().split()]
    data = np.fromfile(directory / f"{name}.bin", dtype="<f8")
    return data.reshape(dims, order="F") if len(dims) > 1 else data


def _run(script: str, directory: Path, timeout: float) -> None:
    rscript = shutil.which("Rscript")
    if rscript is None or mgcv_version() is None:
        raise MgcvError(_SKIP_REASON)
    file = directory / "fit.R"
    file.write_text(_R_PRELUDE + script)
    out = subprocess.run([rscript, "--vanilla", str(file), str(directory)], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise MgcvError(f"Rscript failed (exit {out.returncode}):\n{out.stderr[-4000:]}")


#: Our family names -> the R family (with our links) where the plain name is not it.
R_FAMILIES = {"bernoulli": "binomial()", "gamma": 'Gamma(link = "log")'}


def _r_name(value: str, what: str) -> str:
    """A bare R identifier (family or method name), so that it can be pasted into R code."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._]*", value):
        raise ValueError(f"{what} must be an R name, not {value!r}")
    return value


def _r_control(control: dict | None) -> str:
    """``gam.control(...)`` arguments from numbers, e.g. ``{"epsilon": 1e-12}``."""
    items = []
    for key, value in (control or {}).items():
        if isinstance(value, bool):
            value = "TRUE" if value else "FALSE"
        elif isinstance(value, int | float):
            value = repr(float(value)) if isinstance(value, float) else str(value)
        else:
            raise ValueError(f"control values must be numbers or booleans, not {value!r}")
        items.append(f"{_r_name(key, 'a control name')} = {value}")
    return ", ".join(items)


# --------------------------------------------------------------------------- paraPen

_PARAPEN_R = r"""
X <- rd("X"); y <- rd("y"); off <- rd("offset"); rank <- rd("rank")
S <- lapply(seq_along(rank), function(j) rd(paste0("S", j)))
# Fixed sp go inside paraPen: gam(sp=) fails without smooth terms (mgcv 1.8-41, gam.setup's
# sp[1:ncol(L)] with ncol(L) = 0). Negative entries are estimated.
pen <- c(S, list(rank = rank))
if (has("sp")) pen$sp <- rd("sp")
warns <- character(0)
t0 <- proc.time()[["elapsed"]]
fit <- quietly(gam(y ~ X + offset(off), paraPen = list(X = pen), family = @FAMILY@,
                   method = "@METHOD@", control = gam.control(@CONTROL@)))
wr("seconds", proc.time()[["elapsed"]] - t0)
# fit$sp holds the estimated ones only; fit$full.sp all of them once any is fixed.
wr("sp", if (is.null(fit$full.sp)) fit$sp else fit$full.sp)
wr("edf", fit$edf); wr("coefficients", coef(fit)); wr("Vp", fit$Vp); wr("reml", fit$gcv.ubre)
wr("converged", as.numeric(isTRUE(fit$converged)))
wr("scale", fit$sig2)
writeLines(if (is.null(fit$outer.info$conv)) "" else as.character(fit$outer.info$conv),
           path("outer", ".txt"))
writeLines(warns, path("warnings", ".txt"))
"""


def fit_paraPen(X, y, penalties: Sequence[tuple[object, np.ndarray]], *, offset=None,
                family: str = "poisson", method: str = "REML", sp=None, theta=None,
                control: dict | None = None, timeout: float = TIMEOUT) -> MgcvFit:
    """Fit ``gam(y ~ X + offset(offset), paraPen=list(X=list(S1, S2, ...)))`` with mgcv.

    mgcv's ``paraPen`` wants each penalty as wide as the whole term ``X`` (``ncol(X)`` square,
    checked in ``mgcv:::parametricPenalty``), so each block is zero-padded to full width; its
    rank is passed (``rank=``) rather than left to mgcv's eigenvalue threshold.

    Units: mgcv's ``sp_j`` is ``n`` times our ``s_j`` for the objective
    ``mean NLL + 0.5 sum_j s_j w' S_j w`` over ``n`` rows (see the module docstring, where the
    posterior covariance and the REML criterion are written out too).

    Parameters
    ----------
    X : array (n, p)
        Design WITHOUT an intercept column (mgcv adds one). ``[1, X]`` must have full column
        rank (e.g. basis columns under a sum-to-zero constraint), else mgcv would silently
        zero aliased coefficients; a ValueError is raised instead.
    y : array (n,)
        Counts.
    penalties : sequence of (columns, S)
        ``columns`` indexes columns of ``X`` (ints, a slice or a boolean mask); ``S`` is the
        symmetric penalty on them (``len(columns)`` square). One smoothing parameter each.
    offset : array (n,), optional
        Added to the linear predictor.
    family : str
        Ours (``"poisson"``, ``"bernoulli"``, ``"gamma"`` (log link), ``"gaussian"``,
        ``"negative_binomial"`` with ``theta``: mgcv's ``negbin(theta)``, variance
        ``mu + mu^2 / theta``) or an R family function name.
    theta : float, optional
        The negative binomial's fixed ``theta`` (ours: ``1 / a``).
    method : str
        mgcv's ``method`` (``"REML"``; ``"ML"``, ``"GCV.Cp"`` also work).
    sp : array (m,), optional
        Fixed smoothing parameters in mgcv's units (negative entries are estimated); default:
        all estimated.
    control : dict, optional
        Numeric ``gam.control`` arguments, e.g. ``{"epsilon": 1e-12}`` for tight IRLS
        convergence.
    timeout : float
        Seconds before ``Rscript`` is killed.

    Returns
    -------
    MgcvFit
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = X.shape
    if y.shape != (n,):
        raise ValueError(f"y has shape {y.shape}, expected ({n},)")
    if np.linalg.matrix_rank(np.column_stack([np.ones(n), X])) < p + 1:
        raise ValueError("[1, X] is rank deficient: X (or a block of it) spans the intercept; "
                         "constrain it (e.g. sum-to-zero) before handing it to mgcv")
    blocks = []
    for columns, S in penalties:
        index = np.arange(p)[columns]
        S = np.asarray(S, dtype=float)
        if S.shape != (len(index), len(index)):
            raise ValueError(f"a penalty of shape {S.shape} on {len(index)} columns")
        full = np.zeros((p, p))
        full[np.ix_(index, index)] = 0.5 * (S + S.T)
        eigenvalues = np.linalg.eigvalsh(full)
        rank = int((eigenvalues > eigenvalues.max() * 1e-10).sum())
        blocks.append((index, full, rank))
    if not blocks:
        raise ValueError("no penalties: use a plain GLM")
    if family == "negative_binomial":  # mgcv's negbin at our dispersion a = 1 / theta
        if theta is None or not np.isfinite(theta) or theta <= 0:
            raise ValueError("the negative binomial oracle needs a positive theta")
        r_family = f"negbin(theta = {float(theta)!r})"
    else:
        r_family = R_FAMILIES.get(family) or _r_name(family, "family") + "()"
    script = (_PARAPEN_R.replace("@FAMILY@", r_family)
              .replace("@METHOD@", _r_name(method, "method"))
              .replace("@CONTROL@", _r_control(control)))
    with tempfile.TemporaryDirectory(prefix="mgcv_oracle_") as tmp:
        d = Path(tmp)
        _write(d, "X", X)
        _write(d, "y", y)
        _write(d, "offset", np.zeros(n) if offset is None else offset)
        _write(d, "rank", [rank for _, _, rank in blocks])
        for j, (_, full, _) in enumerate(blocks, start=1):
            _write(d, f"S{j}", full)
        if sp is not None:
            sp = np.asarray(sp, dtype=float).ravel()
            if len(sp) != len(blocks):
                raise ValueError(f"{len(sp)} sp values for {len(blocks)} penalties")
            _write(d, "sp", sp)
        _run(script, d, timeout)
        edf_coef = _read(d, "edf")
        warns = (d / "warnings.txt").read_text().splitlines()
        return MgcvFit(
            sp=_read(d, "sp"),
            edf=np.array([edf_coef[1 + index].sum() for index, _, _ in blocks]),
            edf_total=float(edf_coef.sum()), edf_coef=edf_coef,
            coefficients=_read(d, "coefficients"), reml=float(_read(d, "reml")[0]),
            Vp=_read(d, "Vp"), n=n, converged=bool(_read(d, "converged")[0]),
            outer=(d / "outer.txt").read_text().strip(), seconds=float(_read(d, "seconds")[0]),
            warnings=tuple(w for w in warns if w), scale=float(_read(d, "scale")[0]))


# --------------------------------------------------------------------------- s(x, bs="cc")

_SMOOTH_R = r"""
x <- rd("x"); Y <- rd("y"); if (is.null(dim(Y))) dim(Y) <- c(length(Y), 1)
dat <- data.frame(x = x, off = rd("offset"))
new <- data.frame(x = rd("x_new"), off = rd("offset_new"))
knots <- list(x = rd("knots"))
fit_one <- function(d) {
  if ("@ENGINE@" == "gam") {
    gam(y ~ s(x, bs = "cc", k = @K@) + offset(off), data = d, knots = knots, family = @FAMILY@(),
        method = "REML", control = gam.control(@CONTROL@))
  } else {
    bam(y ~ s(x, bs = "cc", k = @K@) + offset(off), data = d, knots = knots, family = @FAMILY@(),
        method = "fREML", discrete = TRUE, nthreads = @NTHREADS@,
        control = gam.control(@CONTROL@))
  }
}
u <- ncol(Y); nc <- @K@ - 1
sp <- sscale <- edf <- edf_total <- reml <- seconds <- cpu <- conv <- rep(NaN, u)
coefs <- matrix(NaN, nc, u); xp <- matrix(NaN, @K@, u); pred <- matrix(NaN, nrow(new), u)
errors <- warnings <- rep("", u)
# The first fit in a session loads and byte-compiles code: keep that out of the timings.
if (@WARMUP@) {
  w <- dat[seq_len(min(nrow(dat), 2000)), ]; w$y <- Y[seq_len(nrow(w)), 1]
  warns <- character(0); try(quietly(fit_one(w)), silent = TRUE)
}
for (j in seq_len(u)) {
  dat$y <- Y[, j]; warns <- character(0)
  t0 <- proc.time()
  fit <- tryCatch(quietly(fit_one(dat)), error = function(e) conditionMessage(e))
  t1 <- proc.time() - t0
  seconds[j] <- t1[["elapsed"]]; cpu[j] <- t1[["user.self"]] + t1[["sys.self"]]
  if (is.character(fit)) { errors[j] <- fit; next }
  sp[j] <- fit$sp[1]; sscale[j] <- fit$smooth[[1]]$S.scale; xp[, j] <- fit$smooth[[1]]$xp
  edf[j] <- sum(fit$edf[-1]); edf_total[j] <- sum(fit$edf)
  reml[j] <- fit$gcv.ubre; conv[j] <- as.numeric(isTRUE(fit$converged))
  coefs[, j] <- coef(fit)
  if (nrow(new) > 0) pred[, j] <- predict(fit, newdata = new, type = "response")
  warnings[j] <- paste(warns, collapse = " | ")
}
wr("sp", sp); wr("S_scale", sscale); wr("knots", xp); wr("edf", edf)
wr("edf_total", edf_total); wr("reml", reml); wr("seconds", seconds); wr("cpu_seconds", cpu)
wr("converged", conv); wr("coefficients", coefs); wr("pred", pred)
writeLines(gsub("\n", " ", errors), path("errors", ".txt"))
writeLines(gsub("\n", " ", warnings), path("warnings", ".txt"))
"""


def fit_smooth_cc(x, y, k: int, *, x_new=None, offset=None, offset_new=None,
                  bounds: tuple[float, float] = (-np.pi, np.pi), even_knots: bool = False,
                  engine: str = "gam", family: str = "poisson", nthreads: int = 1,
                  control: dict | None = None, warmup: bool = True,
                  timeout: float = TIMEOUT) -> SmoothFit:
    """mgcv's cyclic smooth of ``x``: ``gam(y ~ s(x, bs="cc", k=k), knots=list(x=bounds),
    family=poisson, method="REML")``, or ``bam(..., discrete=TRUE, method="fREML")``.

    ``k`` is mgcv's: ``k`` knots, ``k - 1`` cyclic cubic-spline coefficients, ``k - 2`` after
    the sum-to-zero constraint. With ``knots=list(x=bounds)`` (two values) mgcv places the
    interior knots at quantiles of ``x`` and wraps at the bounds; ``even_knots=True`` passes
    ``k`` evenly spaced knots instead (as our ``cyclic`` basis places them).

    Parameters
    ----------
    x : array (n,)
        Covariate in ``[bounds[0], bounds[1]]`` (an angle: wrap it first).
    y : array (n,) or (n, u)
        Counts; each column is fitted on its own (one R process for all).
    k : int
        Basis dimension (knots), ``k >= 4``.
    x_new : array (n_new,), optional
        Covariate values to predict at (response scale); default none.
    offset, offset_new : array, optional
        Offsets of the fitted and the predicted rows.
    bounds : (float, float)
        The period's ends (``knots=list(x=c(lo, hi))``).
    even_knots : bool
        ``k`` evenly spaced knots over ``bounds`` rather than mgcv's quantile placement.
    engine : str
        ``"gam"`` (REML) or ``"bam"`` (``discrete=TRUE``, fREML).
    family : str
        An R family function name.
    nthreads : int
        ``bam``'s threads.
    control : dict, optional
        Numeric ``gam.control`` arguments.
    warmup : bool
        Fit a small problem first so that the timed fits exclude R's first-call overheads.
    timeout : float
        Seconds before ``Rscript`` is killed.

    Returns
    -------
    SmoothFit
        ``seconds`` is each fit's wall time inside R (data transfer and prediction excluded).
    """
    if engine not in ("gam", "bam"):
        raise ValueError(f"engine must be 'gam' or 'bam', not {engine!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    lo, hi = map(float, bounds)
    x_new = np.zeros(0) if x_new is None else np.asarray(x_new, dtype=float)
    for name, values in (("x", x), ("x_new", x_new)):
        if len(values) and not (values.min() >= lo and values.max() <= hi):
            raise ValueError(f"{name} lies outside bounds {bounds}; wrap it first")
    if y.shape[0] != len(x):
        raise ValueError(f"y has {y.shape[0]} rows, x {len(x)}")
    units = 1 if y.ndim == 1 else y.shape[1]
    knots = np.linspace(lo, hi, k) if even_knots else np.array([lo, hi])
    script = (_SMOOTH_R.replace("@ENGINE@", engine)
              .replace("@FAMILY@", _r_name(family, "family"))
              .replace("@CONTROL@", _r_control(control))
              .replace("@NTHREADS@", str(int(nthreads)))
              .replace("@WARMUP@", "TRUE" if warmup else "FALSE").replace("@K@", str(int(k))))
    with tempfile.TemporaryDirectory(prefix="mgcv_oracle_") as tmp:
        d = Path(tmp)
        _write(d, "x", x)
        _write(d, "y", y)
        _write(d, "offset", np.zeros(len(x)) if offset is None else offset)
        _write(d, "x_new", x_new)
        _write(d, "offset_new", np.zeros(len(x_new)) if offset_new is None else offset_new)
        _write(d, "knots", knots)
        _run(script, d, timeout)
        lines = lambda name: tuple((d / f"{name}.txt").read_text().splitlines()[:units])
        return SmoothFit(
            engine=engine, sp=_read(d, "sp"), S_scale=_read(d, "S_scale"),
            knots=_read(d, "knots").reshape(k, units, order="F"), edf=_read(d, "edf"),
            edf_total=_read(d, "edf_total"), reml=_read(d, "reml"),
            seconds=_read(d, "seconds"), cpu_seconds=_read(d, "cpu_seconds"),
            coefficients=_read(d, "coefficients"),
            predictions=_read(d, "pred").reshape(len(x_new), units, order="F"),
            converged=_read(d, "converged") == 1, errors=lines("errors"),
            warnings=lines("warnings"))


__all__ = ["MgcvError", "MgcvFit", "SmoothFit", "fit_paraPen", "fit_smooth_cc", "mgcv_version",
           "requires_mgcv"]


def fit_our_design(formula: str, data, bin_size, *, family: str = "poisson", theta=None):
    """Our design and penalties for unit 0 of ``formula``, rotated and constrained as the
    engine does, fitted by mgcv (:func:`fit_paraPen`, REML).

    Returns
    -------
    setup (our :class:`~glmformula.fitting.smoothing.PenaltySetup`), the :class:`MgcvFit`,
    mgcv's weights in our stored columns and the number of rows fitted.
    """
    from glmformula.fitting import engine
    from glmformula.fitting import identifiability as ident
    from glmformula.fitting.smoothing import penalty_setup
    from glmformula.graph.design import build, prepare
    from glmformula.graph.penalties import term_penalties

    kind = "continuous" if family in ("gamma", "gaussian") else "counts"
    design = build(prepare(formula, data, bin_size=bin_size, response_kind=kind))
    plan = design.plan
    constraints = engine.design_constraints(design)
    T = ident.rotation(constraints, plan.term_storage, plan.n_storage)
    mask = ident.mask_constant_directions(plan.column_mask(), constraints, plan.term_storage)[0]
    kept = np.flatnonzero(mask)
    setup = penalty_setup(term_penalties(plan, design.graph), tuple(plan.unit_ids),
                          plan.n_storage, T)
    used = design.valid
    X = (np.asarray(design.storage, float) @ T)[used][:, kept]
    y = np.asarray(design.counts, float)[used, 0]
    penalties = []
    for m in range(len(setup.keys)):
        S = setup.S[m, 0][np.ix_(kept, kept)]
        cols = np.flatnonzero(np.abs(S).sum(axis=0) > 0)
        penalties.append((cols, S[np.ix_(cols, cols)]))
    oracle = fit_paraPen(X, y, penalties, family=family, theta=theta,
                         control={"epsilon": 1e-10})
    return setup, oracle, T[:, kept] @ oracle.coefficients[1:], X.shape[0]


def assert_matches_mgcv(res, setup, oracle, mgcv_weights) -> None:
    """The issue's oracle tolerances for unit 0 of our fit ``res`` against mgcv's on our
    design (:func:`fit_our_design`): log-strengths within 0.1, edf (whole model, mgcv counting
    the intercept; and per penalty, tensor margins left out: mgcv reports them per smooth)
    within 2%, weights and intercept within 1e-3 of the weights' scale."""
    table = res.smoothing
    ours = np.array([table.loc[(key, 0), "strength"] for key in setup.keys])
    np.testing.assert_allclose(np.log(ours), np.log(oracle.strength), atol=0.1)
    np.testing.assert_allclose(res.n_params_units[0], oracle.edf_total, rtol=0.02)
    for key, edf in zip(setup.keys, oracle.edf):
        if " [margin" not in key:
            np.testing.assert_allclose(table.loc[(key, 0), "edf"], edf, rtol=0.02)
    scale = np.abs(mgcv_weights).max()
    np.testing.assert_allclose(res.weights[:, 0], mgcv_weights, atol=1e-3 * scale)
    np.testing.assert_allclose(res.intercepts[0], oracle.coefficients[0],
                               atol=1e-3 * max(scale, 1.0))
