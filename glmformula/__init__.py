"""glmformula: a formula language for Poisson GLMs of spike trains.

    >>> import glmformula as gf
    >>> f = gf.parse("spikes ~ cyclic(hd, 12) + history(8, log, window=100ms)")
    >>> f.terms
    ('cyclic(hd, 12)', 'history(8, log, window=100ms)')
"""

from . import functions as _functions  # noqa: F401  (registers the built-in term functions)
from .errors import (DataError, FitError, FormulaError, FormulaSyntaxError, SpecError,
                     TermArgumentError, UnknownNameError)
from .terms.formula import Formula, parse
from .terms.registry import Param, registered, term_function, unregister

__version__ = "0.1.0"

__all__ = ["parse", "Formula", "FormulaError", "FormulaSyntaxError", "UnknownNameError",
           "TermArgumentError", "DataError", "SpecError", "FitError", "term_function", "Param",
           "registered", "unregister", "__version__"]
