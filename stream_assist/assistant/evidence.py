"""Evidence added up over frames: how far the model's answers since the last reset favour "done" (or "a later
step", or "a hazard") over its opposite, as a log-likelihood ratio.

Each answer is read through the describer's error rate ε (a symmetric channel): a verdict given with
probability q is worth ((1-ε)q + ε(1-q)) / (εq + (1-ε)(1-q)), at most (1-ε)/ε for a sure one and nothing for a
coin toss. The sum is Page's CUSUM: it never goes below zero (evidence against a change does not pile up as
credit), and a change is taken once it reaches ln(odds). While nothing has changed, a run of evidence reaches
that bound with probability at most 1/odds (Wald), so `advance_odds` bounds false advances; one noisy answer
lowers the sum a little instead of starting the count again.
"""

from __future__ import annotations

import math


def channel_llr(q: float, error: float) -> float:
    """The log-likelihood ratio of an answer that says yes with probability q, from a describer wrong at `error`."""
    q = min(1.0, max(0.0, q))
    return math.log(((1 - error) * q + error * (1 - q)) / (error * q + (1 - error) * (1 - q)))


def done_llr(probs: dict[str, float], error: float) -> float:
    """Evidence that the step is done: done against not done, weighted by how much of the answer is about that
    (a later step, a hazard or no verdict say little about this step)."""
    yes, no = probs.get("done", 0.0), probs.get("not_done", 0.0)
    return (yes + no) * channel_llr(yes / (yes + no), error) if yes + no > 0 else 0.0


def accumulate(total: float, llr: float) -> float:
    """One CUSUM step: the evidence so far plus this answer's, never below zero."""
    return max(0.0, total + llr)


def clean_probs(probs: dict[str, float]) -> dict[str, float]:
    """Probabilities as the tracker takes them: finite and non-negative, normalised; anything else is none."""
    if not probs or not all(isinstance(p, float | int) and math.isfinite(p) and p >= 0 for p in probs.values()):
        return {}
    total = sum(probs.values())
    return {k: p / total for k, p in probs.items()} if total > 0 else {}
