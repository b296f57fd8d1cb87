"""The narrow question asked about each frame while a task is followed, and the reading of its answer.

Small models answer a narrow yes/no question about one step far better than an open one, so each frame
asks only whether the current step is done (naming what done looks like), whether a later step is shown,
or whether there is a hazard. The first word of the answer carries the verdict: the model's probability of
each answer word is read from one decoding step (inference/verdict.py), and only STEP (its number) and HAZARD
(what the danger is, said when the card names no caution) are followed by more words.
"""

from __future__ import annotations

import re

from .cards import Card, Limits, clean_text
from .evidence import clean_probs
from .tracker import Reading

ANSWER_WORDS = "DONE, NOT YET, STEP <number> if it shows a later step, or HAZARD if something is unsafe"
# The answer words' first words, and how many tokens the model writes after each (0: the word is the answer).
VERDICT_WORDS = (("DONE", 0), ("NOT", 0), ("STEP", 4), ("HAZARD", 24))
KINDS = {"DONE": "done", "NOT": "not_done", "HAZARD": "hazard"}
WRITTEN_P = 0.8  # how sure a written answer (no probabilities) counts as: two of them move a step, as two in a row did
OPPOSITE = {"done": "not_done", "not_done": "done"}


def frame_context(card: Card, step: int) -> str:
    """The task, the current step and what done looks like: the same on every frame of the step, so it goes
    before the image with the instructions and is evaluated once per step (`bench model`: the task frame's text
    prefill, most of a frame's cost after the encoder, shrinks to the short question)."""
    s = card.steps[step]
    done = s.done_when or f"{s.instruction[0].lower()}{s.instruction[1:].rstrip('.')} is complete"
    return f"Task: {card.title}. Current step {step + 1} of {len(card.steps)}: {s.instruction} Done looks like: {done}."


def frame_question(step: int) -> str:
    """The per-frame question after the image (its step number ties an answer to the step it was asked about)."""
    return (f"Is step {step + 1} done in the image? "
            f"Start your answer with {ANSWER_WORDS}, then at most one short sentence.")


_STEP = re.compile(r"^\W*step\s*(\d{1,3})\b")


def parse_reply(text: str, card: Card, step: int) -> Reading:
    """The verdict in an answer; anything else is `unclear` (which breaks a done streak, as it should)."""
    low = " ".join(text.lower().split())
    rest = text.strip()
    if m := _STEP.match(low):
        n = int(m.group(1)) - 1
        if n > step + 1 and n < len(card.steps):
            return Reading("later", n, rest)
        return Reading("done" if n == step + 1 else "not_done", None, rest)
    for prefix, kind in (("not yet", "not_done"), ("not done", "not_done"), ("not", "not_done"), ("no", "not_done"),
                         ("done", "done"), ("yes", "done"), ("hazard", "hazard"), ("danger", "hazard")):
        if re.match(rf"^\W*{prefix}\b", low):
            return Reading(kind, None, rest)
    return Reading("unclear", None, rest)


def read_answer(text: str, word_probs: dict[str, float], card: Card, step: int) -> Reading:
    """An answer with its verdict probabilities (answer word → p; empty when the model wrote the answer instead):
    the kind from its words, the probabilities per kind. STEP counts as the kind its number makes it."""
    reading = parse_reply(text, card, step)
    probs = clean_probs(word_probs)
    if not probs:  # a written answer: its kind at WRITTEN_P, or (unclear) no verdict at all
        written = {} if reading.kind == "unclear" else {reading.kind: WRITTEN_P}
        if reading.kind in OPPOSITE:
            written[OPPOSITE[reading.kind]] = 1 - WRITTEN_P
        return Reading(reading.kind, reading.later_step, reading.text, written)
    kinds: dict[str, float] = {}
    step_kind = reading.kind if _STEP.match(" ".join(text.lower().split())) else None  # no number: no kind
    for word, p in probs.items():
        kind = step_kind if word == "STEP" else KINDS.get(word)
        if kind is not None:
            kinds[kind] = kinds.get(kind, 0.0) + p
    return Reading(reading.kind, reading.later_step, reading.text, kinds)


def draft_question(task: str) -> str:
    """Asks for numbered steps of a task the person named (the person accepts or edits the draft)."""
    return (f"List the steps to {task.strip().rstrip('.')}, as a numbered list of at most 8 short steps, "
            "one per line. Use what the image shows if it helps.")


_NUMBERED = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s*(.+)$")


def parse_draft(text: str, limits: Limits) -> list[str]:
    """Numbered or bulleted lines of a draft answer, cleaned; lines that cannot be steps are left out."""
    steps = []
    for line in text.splitlines():
        m = _NUMBERED.match(line)
        if not m:
            continue
        try:
            steps.append(clean_text(m.group(1), "drafted step", limits))
        except ValueError:
            continue
    return steps[:limits.max_steps]
