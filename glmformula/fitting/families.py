"""Observation families on arrays (numpy): what a family's fit means outside the solver.

Each :class:`Family` turns a linear predictor into expected values (its inverse link), gives
log-likelihoods in nats with every constant (so they equal statsmodels' ``llf``), unit
deviances (for ``deviance_explained``), the Fisher weights of an intercept, draws for
simulation, and checks the response before a fit. The solver's side of a family (its loss,
gradient and curvature on the device) is :mod:`glmformula.backend.families`; the choice
travels in :class:`~glmformula.fitting.FitOptions` (``family=``).

=====================  ========  =================================  ==========================
family                 link      response (per bin)                 dispersion (``res.dispersion``)
=====================  ========  =================================  ==========================
``poisson``            log       spike counts                       none
``bernoulli``          logit     spike / no spike (counts clipped   none
                                 to 1)
``negative_binomial``  log       spike counts                       ``a`` per unit, maximum
                                                                    likelihood (variance
                                                                    ``mu + a mu^2``)
``gamma``              log       positive values, bin means of a    scale ``1/shape`` per
                                 Tsd/TsdFrame                       unit: Pearson chi2 / df
``gaussian``           identity  values, bin means of a Tsd/        variance per unit (the
                                 TsdFrame                           response's units squared):
                                                                    Pearson chi2 / df
=====================  ========  =================================  ==========================

Log-likelihoods follow statsmodels: the gamma family's at its Pearson scale, the gaussian's
(the *training* log-likelihood of a fit, ``res.log_likelihood``) at the maximum-likelihood
variance ``RSS / n`` (statsmodels' concentrated ``llf``); scores on data (``res.score``) use
the fitted dispersion.
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.special import expit, gammaln, xlogy

from ..errors import FitError, did_you_mean
from . import poisson

#: The observation families, in the order documentation lists them.
FAMILY_NAMES = ("poisson", "bernoulli", "negative_binomial", "gamma", "gaussian")

#: How each family reads its response from the data (``glmformula.graph`` response kinds).
RESPONSE_KINDS = {"poisson": "counts", "bernoulli": "binary", "negative_binomial": "counts",
                  "gamma": "continuous", "gaussian": "continuous"}
LINKS = {"poisson": "log", "bernoulli": "logit", "negative_binomial": "log", "gamma": "log",
         "gaussian": "identity"}


def _weights(w, like: np.ndarray) -> np.ndarray:
    if w is None:
        return np.ones(like.shape[0])
    return np.asarray(w, float)


def _per_row(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    return values * w.reshape(-1, *([1] * (values.ndim - 1)))


def _log_gamma_ratio(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``log Gamma(y + r) - log Gamma(r)``, by Stirling's series where ``r`` is large (the two
    terms there are ~``r log r`` each, their difference ~``y log r``)."""
    x = r + y
    with np.errstate(divide="ignore", invalid="ignore"):
        series = ((r - 0.5) * np.log1p(y / r) + xlogy(y, x) - y
                  - y / (12.0 * r * x)
                  - (1.0 / x ** 3 - 1.0 / r ** 3) / 360.0
                  + (1.0 / x ** 5 - 1.0 / r ** 5) / 1260.0)
        small = np.minimum(r, 100.0)  # the direct branch where it is used
        direct = gammaln(y + small) - gammaln(small)
    return np.where(r > 100.0, series, direct)


@attrs.frozen
class Family:
    """An observation family (see the module's table).

    Attributes
    ----------
    name : str
        ``"poisson"``, ``"bernoulli"``, ``"negative_binomial"``, ``"gamma"`` or
        ``"gaussian"``.
    """

    name: str

    @property
    def link(self) -> str:
        """``"log"``, ``"logit"`` or ``"identity"``."""
        return LINKS[self.name]

    @property
    def response_kind(self) -> str:
        """How the response is read: ``"counts"`` (summed into bins), ``"binary"`` (counts
        clipped to 1) or ``"continuous"`` (samples of a Tsd/TsdFrame averaged in each bin)."""
        return RESPONSE_KINDS[self.name]

    @property
    def counts(self) -> bool:
        """Whether the response is spikes (bits per spike make sense)."""
        return self.response_kind != "continuous"

    @property
    def estimated_scale(self) -> bool:
        """Whether standard errors are scaled by an estimated scale (gamma, gaussian)."""
        return self.name in ("gamma", "gaussian")

    @property
    def has_dispersion(self) -> bool:
        return self.name in ("negative_binomial", "gamma", "gaussian")

    # -- means -----------------------------------------------------------------------------
    def mean(self, eta: np.ndarray) -> np.ndarray:
        """Expected value per bin from the linear predictor: counts (log link), spike
        probability (logit) or the response's own units (identity)."""
        eta = np.asarray(eta, float)
        if self.link == "log":
            return poisson.expected_counts(eta)
        if self.link == "logit":
            return expit(eta)
        return eta

    def fisher_weight(self, mu: np.ndarray, dispersion=None) -> np.ndarray:
        """Fisher information per bin of the linear predictor at unit scale
        (``(dmu/deta)^2 / V(mu)``)."""
        mu = np.asarray(mu, float)
        if self.name == "poisson":
            return mu
        if self.name == "bernoulli":
            return mu * (1 - mu)
        if self.name == "negative_binomial":
            return mu / (1 + np.asarray(dispersion, float) * mu)
        return np.ones_like(mu)

    def scale(self, dispersion) -> np.ndarray | float:
        """The factor of the covariance: the estimated scale (gamma, gaussian), else 1."""
        return np.asarray(dispersion, float) if self.estimated_scale else 1.0

    # -- likelihoods ---------------------------------------------------------------------------
    def log_likelihood(self, y, mu, weights=None, dispersion=None) -> np.ndarray:
        """Per-unit log-likelihood (nats, every constant included) of ``y`` (T, U) given the
        means ``mu`` (T, U), at ``dispersion`` (U,). For the gaussian family a ``dispersion``
        of None means the maximum-likelihood variance on these rows (statsmodels' ``llf``)."""
        parts = self.log_likelihood_parts(y, mu, weights, dispersion)
        return self.log_likelihood_total(parts, dispersion)

    def log_likelihood_parts(self, y, mu, weights=None, dispersion=None) -> tuple:
        """Sums over rows that add over blocks of rows (see :meth:`log_likelihood_total`)."""
        y = np.asarray(y, float)
        mu = np.asarray(mu, float)
        w = _weights(weights, y)
        name = self.name
        if name == "poisson":
            return (poisson.log_likelihood(y, mu, w),)
        if name == "bernoulli":
            with np.errstate(divide="ignore"):
                terms = xlogy(y, mu) + xlogy(1 - y, 1 - mu)
            return (_per_row(terms, w).sum(axis=0),)
        if name == "negative_binomial":
            r = np.broadcast_to(1.0 / np.asarray(dispersion, float), y.shape[-1:])
            with np.errstate(divide="ignore", invalid="ignore"):
                # log Gamma(y + r) - log Gamma(r) - log y! + r log(r / (r + mu))
                # + y log(mu / (r + mu)), without cancellation for large r (small a)
                terms = (_log_gamma_ratio(y, r) - gammaln(y + 1) - r * np.log1p(mu / r)
                         + xlogy(y, mu) - xlogy(y, r + mu))
            return (_per_row(terms, w).sum(axis=0),)
        if name == "gamma":
            phi = np.asarray(dispersion, float)
            k = 1.0 / phi
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = y / mu
                terms = k * np.log(k * ratio) - k * ratio - gammaln(k) - np.log(y)
            used = w > 0  # rows of weight 0 may hold anything (padding)
            terms = np.where(used[:, None] if terms.ndim > 1 else used, terms, 0.0)
            return (_per_row(terms, w).sum(axis=0),)
        # gaussian: the residual sum of squares and the weight, so that the scale can be the
        # maximum-likelihood one over all rows
        rss = _per_row((y - mu) ** 2, w).sum(axis=0)
        return rss, np.broadcast_to(w.sum(), rss.shape).astype(float)

    def log_likelihood_total(self, parts: tuple, dispersion=None) -> np.ndarray:
        """The log-likelihood from :meth:`log_likelihood_parts` summed over blocks."""
        if self.name != "gaussian":
            return parts[0]
        rss, n = parts
        phi = rss / n if dispersion is None else np.asarray(dispersion, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -0.5 * rss / phi - 0.5 * n * np.log(2 * np.pi * phi)

    def deviance(self, y, mu, weights=None, dispersion=None) -> np.ndarray:
        """Per-unit deviance ``2 (LL_saturated - LL)`` at unit scale (the negative binomial's
        at its dispersion ``a``): the unit deviances statsmodels' families sum."""
        y = np.asarray(y, float)
        mu = np.asarray(mu, float)
        w = _weights(weights, y)
        name = self.name
        with np.errstate(divide="ignore", invalid="ignore"):
            if name == "poisson":
                terms = 2 * (xlogy(y, y / mu) - (y - mu))
            elif name == "bernoulli":
                terms = -2 * (xlogy(y, mu) + xlogy(1 - y, 1 - mu))
            elif name == "negative_binomial":
                a = np.asarray(dispersion, float)
                terms = 2 * (xlogy(y, y / mu) - (y + 1 / a) * np.log1p(a * (y - mu) / (1 + a * mu)))
            elif name == "gamma":
                terms = 2 * (-np.log(y / mu) + (y - mu) / mu)
                used = w > 0
                terms = np.where(used[:, None] if terms.ndim > 1 else used, terms, 0.0)
            else:
                terms = (y - mu) ** 2
        return _per_row(terms, w).sum(axis=0)

    def null_mean(self, y, weights=None) -> np.ndarray:
        """The null (intercept-only) model's mean per unit: the weighted mean of ``y``."""
        y = np.asarray(y, float)
        w = _weights(weights, y)
        return (w @ y) / w.sum()

    # -- draws -----------------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, mu: np.ndarray, dispersion=None) -> np.ndarray:
        """Draws of the response given the means ``mu`` (T, U) (``dispersion`` per unit)."""
        mu = np.asarray(mu, float)
        if self.name == "poisson":
            return rng.poisson(mu)
        if self.name == "bernoulli":
            return (rng.random(mu.shape) < mu).astype(np.int64)
        d = np.broadcast_to(np.asarray(dispersion, float), mu.shape[-1:])
        if self.name == "negative_binomial":
            return rng.negative_binomial(1.0 / d, 1.0 / (1.0 + d * mu))
        if self.name == "gamma":
            return rng.gamma(1.0 / d, mu * d)
        return rng.normal(mu, np.sqrt(d))

    # -- checks ----------------------------------------------------------------------------------
    def check_response(self, y: np.ndarray, used: np.ndarray, unit_ids, times, response: str,
                       formula: str | None = None) -> None:
        """Refuse a response this family cannot fit (the gamma family's values <= 0), naming
        the units, how many bins and the first time (s)."""
        if self.name != "gamma":
            return
        bad = used[:, None] & ~(np.asarray(y) > 0)
        if not bad.any():
            return
        units = np.flatnonzero(bad.any(axis=0))
        first = [float(times[np.flatnonzero(bad[:, u])[0]]) for u in units[:5]]
        detail = ", ".join(f"unit {unit_ids[u]}: {int(bad[:, u].sum())} bins, first at "
                           f"t = {t:.6g} s" for u, t in zip(units[:5], first))
        raise FitError(
            f"the gamma family needs a positive response, but '{response}' has bin means <= 0 "
            f"({detail}{', ...' if len(units) > 5 else ''})", formula=formula,
            hint="fit such data with family=\"gaussian\", or make the response positive "
                 "(e.g. raw fluorescence F rather than dF/F, or add a baseline), or leave "
                 "those epochs out")


#: The families by name.
FAMILIES = {name: Family(name) for name in FAMILY_NAMES}


def get_family(family) -> Family:
    """The :class:`Family` called ``family`` (or ``family`` itself); an unknown name is a
    :class:`~glmformula.FitError` naming the families."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str) and family in FAMILIES:
        return FAMILIES[family]
    guess = did_you_mean(str(family), FAMILY_NAMES) if isinstance(family, str) else None
    raise FitError(f"unknown family {family!r}",
                   hint=(guess + " " if guess else "") + "families: " +
                   ", ".join(f'"{n}"' for n in FAMILY_NAMES) +
                   " (e.g. family=\"gaussian\" for fluorescence)")


def family_name(family) -> str:
    """The canonical name of ``family`` (checked by :func:`get_family`)."""
    return get_family(family).name


__all__ = ["Family", "FAMILIES", "FAMILY_NAMES", "RESPONSE_KINDS", "LINKS", "get_family",
           "family_name"]
