"""What a voice is given to say: only what it can say, cut into pieces that it synthesises quickly.

The first piece is short (up to the first comma, or a few words), so the first sample leaves soon after the
text is known; the rest go sentence by sentence, long ones cut at commas or spaces, so no one synthesis call
runs for seconds. Emoji, symbols and letters of another script are left out (an English voice reads Cyrillic
as noise); text with nothing sayable left becomes no speech at all.
"""

from __future__ import annotations

import re
import unicodedata

FIRST_WORDS = 6  # the first piece, when there is no early comma: long enough to sound like a phrase
MAX_PIECE_CHARS = 100  # a longer sentence is cut: one Piper call per piece, so a newer utterance waits at most one
_SENTENCE = re.compile(r"[^.!?;:\n]+(?:[.!?;:]+|\n|$)")
_CLAUSE = re.compile(r"[^,]+(?:,|$)")


def _keep(ch: str, scripts: tuple[str, ...] | None) -> bool:
    """A character the voice can say: letters of its scripts, digits, spaces and ordinary punctuation."""
    cat = unicodedata.category(ch)
    if cat[0] in "LM":
        return scripts is None or unicodedata.name(ch, "").startswith(scripts)
    if cat[0] == "N" or cat[0] == "Z":
        return True
    return cat[0] == "P" or ch in "%$&+=/"


def sayable(text: str, scripts: tuple[str, ...] | None = ("LATIN",), max_chars: int = 600) -> str:
    """The text with what the voice cannot say dropped (a dropped word's gap closed), cut at max_chars on a word
    boundary; empty when nothing sayable is left."""
    kept = "".join(ch if _keep(ch, scripts) else " " for ch in unicodedata.normalize("NFC", text))
    words = [w for w in kept.split() if any(c.isalnum() for c in w)]
    out = " ".join(words)
    if len(out) > max_chars:
        out = out[:max_chars].rsplit(" ", 1)[0]
    return out


def _cut(sentence: str, limit: int) -> list[str]:
    """One sentence in pieces of at most `limit` characters, at commas where it can, else at spaces."""
    if len(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    for clause in (c.strip() for c in _CLAUSE.findall(sentence)):
        while len(clause) > limit:
            head = clause[:limit].rsplit(" ", 1)[0] or clause[:limit]
            pieces.append(head)
            clause = clause[len(head):].strip()
        if clause:
            pieces.append(clause)
    return pieces


def pieces(text: str, first_words: int = FIRST_WORDS, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """Sayable text in the order to synthesise it: a short first piece, then sentences (long ones cut)."""
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    out = [p for s in sentences for p in _cut(s, limit)]
    if not out:
        return []
    first = out[0]
    comma = first.find(",")
    words = first.split()
    if 0 < comma and len(first[:comma].split()) <= first_words + 2:
        head, tail = first[:comma + 1], first[comma + 1:].strip()
    elif len(words) > first_words + 2:
        head, tail = " ".join(words[:first_words]), " ".join(words[first_words:])
    else:
        return out
    return [head, tail, *out[1:]] if tail else [head, *out[1:]]


def first_sentence(text: str) -> str | None:
    """The first complete sentence of an answer still being written: complete once text follows its stop (so
    "3." of "3.5" is not taken for one); None until then."""
    m = re.match(r"\s*[^.!?]*[.!?]+(?=\s)", text)
    return m.group(0).strip() if m else None
