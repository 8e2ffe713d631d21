"""``gf.select``: forward selection of terms by cross-validated log-likelihood.

As in Hardcastle et al. (2017, Neuron): start from a base model, add the candidate term that
raises the held-out log-likelihood most, and keep going while the improvement over the current
model is significant across folds (one-sided Wilcoxon signed-rank test on the per-fold
differences); stop at the first step that is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import pandas as pd
from scipy import stats

from ..errors import FormulaError
from ..fitting.families import get_family
from ..terms.formula import Formula, parse
from .comparison import Comparison, ModelScores


@attrs.frozen(eq=False)
class Selection:
    """The outcome of forward selection.

    Attributes
    ----------
    formula : Formula
        The chosen model.
    path : DataFrame
        One row per step: the term added, the formula, held-out bits/spike (mean over folds),
        the improvement over the previous step and its signed-rank p-value, and whether the
        step was accepted.
    """

    formula: Formula
    path: pd.DataFrame

    @property
    def terms(self) -> tuple[str, ...]:
        return self.formula.terms


def select(base, candidates: Sequence[str], data: Mapping, *, bin_size, epochs=None,
           cv: int = 10, alpha: float = 0.05, regularizer=None, solver: str = "auto",
           dtype=None, family: str = "poisson", smoothing: str | None = "auto",
           select: bool = False) -> Selection:
    """Forward selection from ``base`` over ``candidates`` (term texts).

    Parameters
    ----------
    base : str or Formula
        Starting model, e.g. ``"spikes ~ 1"``.
    candidates : list of str
        Terms that may be added, e.g. ``["cyclic(hd, 12)", "speed", "history(8)"]``.
    cv : int
        Contiguous folds (10 by default, so a signed-rank test can reach significance).
    alpha : float
        Significance level of the one-sided signed-rank test for adding a term.
    smoothing, select :
        As for :func:`glmformula.fit` (strengths chosen inside each training fold).
    family : str
        The observation family (as for :func:`glmformula.fit`). The path reports the gain in
        held-out bits per spike for the count families, and for gamma and gaussian (no
        spikes) the gain in held-out log-likelihood (``gain_log_likelihood``, nats summed
        over folds and units).
    """
    family = get_family(family)
    base = parse(base)
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        raise FormulaError("candidates must be a non-empty list of term texts",
                           hint='e.g. ["cyclic(hd, 12)", "speed"]')
    candidate_terms = {}
    for text in candidates:
        formula = parse(f"{base.response_text} ~ {text}")
        if len(formula.term_objects) != 1:
            raise FormulaError(f"candidate {text!r} is not a single term",
                               hint="list interactions as 'a:b' and separate terms separately")
        candidate_terms[formula.terms[0]] = formula.term_objects[0]

    current = base
    # Build every formula the search can visit lazily on one shared graph.
    full = base.with_terms(base.term_objects + tuple(candidate_terms.values()))
    comparison = Comparison({"base": base, "full": full}, data, bin_size=bin_size,
                            epochs=epochs, cv=cv, regularizer=regularizer, solver=solver,
                            dtype=dtype, family=family.name, smoothing=smoothing,
                            select=select)
    scores = {base: _score(comparison, base)}
    steps = [_step(0, "(base)", base, scores[base], None, counts=family.counts)]
    remaining = dict(candidate_terms)
    while remaining:
        trials = {}
        for text, term in remaining.items():
            formula = current.with_terms(current.term_objects + (term,))
            if formula not in scores:
                scores[formula] = _score(comparison, formula)
            trials[text] = formula
        best_text = max(trials, key=lambda t: _cv_ll(scores[trials[t]]))
        best = trials[best_text]
        diff = scores[best].fold_ll.sum(axis=1) - scores[current].fold_ll.sum(axis=1)
        pvalue = _signed_rank_p(diff)
        accepted = pvalue < alpha
        steps.append(_step(len(steps), best_text, best, scores[best], scores[current], pvalue,
                           accepted, counts=family.counts))
        if not accepted:
            break
        current = best
        del remaining[best_text]
    return Selection(current, pd.DataFrame(steps).set_index("step"))


def _score(comparison: Comparison, formula: Formula) -> ModelScores:
    name = str(formula)
    if name not in comparison.designs:
        comparison.add(name, formula)
    return comparison.score_model(name)


def _cv_ll(scores: ModelScores) -> float:
    return float(scores.fold_ll.sum())


def _signed_rank_p(diff: np.ndarray) -> float:
    if np.all(diff == 0):
        return 1.0
    return float(stats.wilcoxon(diff, alternative="greater").pvalue)


def _step(index, term, formula, scores, previous, pvalue=np.nan, accepted=True,
          counts: bool = True) -> dict:
    spikes = scores.fold_spikes.sum(axis=1)
    bps = scores.fold_ll.sum(axis=1)
    gain = np.nan if previous is None else float(np.sum(scores.fold_ll - previous.fold_ll))
    if counts:  # fold_spikes are spikes (not null deviances): the gain per spike, in bits
        gain = gain / (np.log(2) * spikes.sum())
    return {"step": index, "term": term, "formula": str(formula),
            "cv_log_likelihood": float(bps.sum()),
            "gain_bits_per_spike" if counts else "gain_log_likelihood": gain,
            "p_value": pvalue, "accepted": bool(accepted)}
