"""glmformula: a formula language for Poisson GLMs of spike trains."""

__version__ = "0.1.0"
