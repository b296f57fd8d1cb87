"""A verdict read from one decoding step: the probability of each answer word, from the next-token distribution.

A question that asks the model to start with one of a few words (DONE, NOT, STEP, HAZARD) is answered by the
model's first token, so after the prompt is evaluated its next-token distribution already holds the verdict and
how sure the model is; writing the rest costs a decode per token, for words nobody hears. A word counts through
every first token that spells at least its first MIN_PREFIX letters (" DONE", "Done", "DON"...); a token two
words share is nobody's. When the words together get less than `min_mass` of the probability (a template that
makes the model begin otherwise, a vocabulary that splits the words too finely), there is no verdict and the
model writes its answer as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

MIN_PREFIX = 3  # a token must spell this much of a word (or all of a shorter one) to count for it


@dataclass(frozen=True)
class Choices:
    """The answer words a question offers, and after which of them the model goes on writing (tokens, at most)."""

    words: tuple[tuple[str, int], ...]  # (word, tokens to write after it): ("DONE", 0), ("STEP", 4), ...
    min_mass: float = 0.5  # below this much probability on the words together, no verdict: the answer is written

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w for w, _ in self.words)

    def follow(self, word: str) -> int:
        return dict(self.words).get(word, 0)


@dataclass(frozen=True)
class Verdict:
    """The words' probabilities (normalised over them), the mass they had before that, and the most likely one."""

    probs: dict[str, float]
    mass: float

    @property
    def word(self) -> str:
        return max(self.probs, key=self.probs.__getitem__)


def word_for(piece: str, words: Iterable[str]) -> str | None:
    """The one word a token's text begins, if it spells enough of it (case and a leading space aside)."""
    text = piece.strip().upper()
    hits = [w for w in words if text and w.upper().startswith(text) and len(text) >= min(len(w), MIN_PREFIX)]
    return hits[0] if len(hits) == 1 else None


def first_tokens(words: Iterable[str], tokenize: Callable[[str], list[int]],
                 piece: Callable[[int], str]) -> dict[int, str]:
    """Token id → word for the first tokens the words can begin with; tokens that fit no single word are left out."""
    names = tuple(words)
    found: dict[int, str | None] = {}
    for word in names:
        for variant in (word.upper(), word.capitalize(), word.lower()):
            for text in (variant, " " + variant):
                tokens = tokenize(text)
                if not tokens:
                    continue
                owner = word_for(piece(tokens[0]), names)
                if owner is not None:
                    found[tokens[0]] = owner if found.get(tokens[0], owner) == owner else None
    return {t: w for t, w in found.items() if w is not None}


def from_logits(logits: np.ndarray, tokens: dict[int, str], choices: Choices) -> Verdict | None:
    """The verdict in a next-token distribution (raw logits); None when the words are not what the model would say."""
    if not tokens or set(tokens.values()) != set(choices.names):
        return None  # a word this vocabulary cannot start with one token of its own: no verdict from one step
    x = np.asarray(logits, np.float64)
    if not np.isfinite(x).all():
        return None
    p = np.exp(x - x.max())
    p /= p.sum()
    return _verdict({w: 0.0 for w in choices.names} | _sums((tokens[t], p[t]) for t in tokens), choices)


def from_top_logprobs(top: Iterable[tuple[str, float]], choices: Choices) -> Verdict | None:
    """The verdict in an engine's top_logprobs for the first token ((token text, log probability) pairs)."""
    pairs = [(w, math.exp(lp)) for text, lp in top if (w := word_for(text, choices.names)) and math.isfinite(lp)]
    return _verdict({w: 0.0 for w in choices.names} | _sums(pairs), choices) if pairs else None


def _sums(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for word, p in pairs:
        out[word] = out.get(word, 0.0) + float(p)
    return out


def _verdict(mass: dict[str, float], choices: Choices) -> Verdict | None:
    total = sum(mass.values())
    if not math.isfinite(total) or total <= 0 or total < choices.min_mass:
        return None
    return Verdict({w: round(m / total, 6) for w, m in mass.items()}, round(min(total, 1.0), 6))
