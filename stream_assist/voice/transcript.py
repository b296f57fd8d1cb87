"""Turns a free-text transcript (whisper's) into the words the command rules judge, and a dictated task.

Commands match only as the whole utterance: "Pause." is pause, "please pause the video" is a sentence and is
rejected by the same rules as pocketsphinx's results (commands.interpret), never forced into a command.
"""

from __future__ import annotations

import re

from .commands import Word

ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")  # [BLANK_AUDIO], (music), *laughs*: not speech
NOT_WORD = re.compile(r"[^a-z0-9']+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TASK_LEAD = re.compile(r"^\W*my\W+task\W+is\b\W*(?:to\b\W*)?", re.IGNORECASE)  # whisper adds "to" ("is to fix")


def normalise(text: str) -> str:
    """Lower case, annotations and punctuation dropped, single spaces: 'Stop talking!' → 'stop talking'."""
    words = NOT_WORD.sub(" ", ANNOTATION.sub(" ", text).lower()).split()
    return " ".join(w.strip("'") for w in words if w.strip("'"))


def transcript_words(segments: list[tuple[float, float, str]]) -> list[Word]:
    """Words of (start s, end s, text) segments, each segment's span shared evenly among its words (whisper
    times segments, not words; the command rules only need how much of the speech the words cover)."""
    words: list[Word] = []
    for start, end, text in segments:
        pieces = normalise(text).split()
        step = max(0.0, end - start) / max(1, len(pieces))
        words += [Word(p, start + i * step, start + (i + 1) * step) for i, p in enumerate(pieces)]
    return words


def task_text(transcript: str) -> str:
    """The task as said after 'my task is', with the recogniser's own casing and punctuation kept: its first
    sentence (whisper may go on into the silence after it: "Fix a bicycle inner tube puncture. My task it fix …")."""
    first = SENTENCE_END.split(ANNOTATION.sub(" ", transcript).strip(), maxsplit=1)[0]
    return " ".join(TASK_LEAD.sub("", first).split())
