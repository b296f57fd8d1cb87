"""Where the person is in the task: a pure state machine over the steps, fed by commands and model readings.

A step advances on next/done, or when the model's answers add up to enough evidence that it is done
(evidence.py: each answer weighed by its probability and the describer's error rate, so one noisy answer
neither skips a step nor starts the count again). A later step or a hazard is a warning on the same kind of
evidence. The older rule (`rule = "streak"`: `done_frames` answers in a row, a hazard at once) stays for
comparison in `bench assist`. Times are passed in, so tests and the benchmark replay them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cards import Card
from .evidence import accumulate, channel_llr, done_llr


@dataclass(frozen=True)
class Reading:
    """One model answer, read (questions.read_answer): done, not_done, later (step index), hazard or unclear, with
    the probability of each kind when the model gave them (a parsed answer is sure of its one kind)."""

    kind: str
    later_step: int | None = None
    text: str = ""
    probs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """Something worth telling the person; the speech policy decides whether it is said."""

    kind: str  # step | finished | warning | repeat | what_now | nudge
    text: str
    step: int
    by: str = ""  # for step changes: next, back, model


@dataclass
class Tracker:
    card: Card
    done_frames: int = 2  # the streak rule's K
    rule: str = "evidence"  # evidence | streak
    error: float = 0.03  # how often a sure answer is wrong, for weighing the answers
    advance_odds: float = 12.0  # evidence needed for a change, as odds: bounds false advances near 1/odds
    independent_s: float = 1.0  # answers closer than this are partly the same look: their evidence is scaled down
    last_answer_at: float = float("-inf")
    step: int = 0  # 0-based; == len(steps) once finished
    step_started_at: float = 0.0
    done_streak: int = 0
    later_streak: int = 0
    later_seen: int | None = None  # the later step the current streak is about
    warned: set[tuple[int, str]] = field(default_factory=set)  # (step, what) already warned during this step
    evidence: dict[str, float] = field(default_factory=dict)  # done / later / hazard: the CUSUM sums (nats)

    @property
    def confidence(self) -> float:
        """How far the evidence that this step is done has come towards advancing it (0..1; the task panel)."""
        if self.rule == "streak":
            return min(1.0, self.done_streak / self.done_frames)
        return min(1.0, self.evidence.get("done", 0.0) / math.log(self.advance_odds))

    @property
    def finished(self) -> bool:
        return self.step >= len(self.card.steps)

    def announce(self) -> Event:
        """The current step said in full: progress, instruction, caution."""
        n = len(self.card.steps)
        if self.finished:
            return Event("finished", f"All {n} steps of {self.card.title} are done.", self.step)
        s = self.card.steps[self.step]
        caution = f" Careful: {s.caution}" if s.caution else ""
        return Event("step", f"Step {self.step + 1} of {n}: {s.instruction}{caution}", self.step)

    def go_to(self, step: int, now: float, by: str) -> Event:
        """Moves to a step (clamped; len(steps) is finished), clears the streaks and warnings, announces it."""
        self.step = max(0, min(step, len(self.card.steps)))
        self.step_started_at = now
        self.done_streak = self.later_streak = 0
        self.later_seen = None
        self.warned.clear()
        self.evidence.clear()
        event = self.announce()
        return Event(event.kind, event.text, self.step, by)

    def next(self, now: float) -> Event:
        """The person says or taps next / done."""
        return self.go_to(self.step + 1, now, "next")

    def back(self, now: float) -> Event:
        """One step back (the first step stays the first)."""
        return self.go_to(self.step - 1, now, "back")

    def repeat(self) -> Event:
        """The current step again, as announced."""
        event = self.announce()
        return Event("repeat", event.text, self.step)

    def what_now(self) -> Event:
        """The current step and what done looks like."""
        if self.finished:
            return Event("what_now", self.announce().text, self.step)
        s = self.card.steps[self.step]
        done = f" It is done when {s.done_when}." if s.done_when else ""
        return Event("what_now", f"You are on step {self.step + 1} of {len(self.card.steps)}: "
                                 f"{s.instruction}.{done}".replace("..", "."), self.step)

    def nudge(self) -> Event:
        """A reminder after a long stall."""
        return Event("nudge", "Still on s" + self.announce().text[1:], self.step)

    def observe(self, reading: Reading, now: float) -> Event | None:
        """One fresh model answer about the current step; returns what changed, if anything."""
        if self.finished:
            return None
        weight = min(1.0, (now - self.last_answer_at) / self.independent_s)
        self.last_answer_at = now
        done, later, hazard = self._weigh_streak(reading) if self.rule == "streak" else self._weigh(reading, weight)
        if done:
            return self.go_to(self.step + 1, now, "model")
        if later and self.later_seen is not None:
            first = self.card.steps[self.step].instruction
            return self._warn(f"later:{self.later_seen}", f"That looks like step {self.later_seen + 1}. First: {first}")
        caution = self.card.steps[self.step].caution or hazard_words(reading.text)
        if hazard and caution:
            return self._warn("caution", f"Careful: {caution}")
        return None

    def _weigh(self, reading: Reading, weight: float) -> tuple[bool, bool, bool]:
        """Adds this answer's evidence (times weight: a camera's frames a moment apart are nearly the same picture,
        and so are the model's mistakes about them); says whether done, a later step and a hazard each reached the
        bound."""
        p = reading.probs
        if not p:  # no verdict at all: no evidence either way
            return False, False, False
        if reading.kind == "later":
            self.later_seen = reading.later_step
        ev, bound = self.evidence, math.log(self.advance_odds)
        ev["done"] = accumulate(ev.get("done", 0.0), weight * done_llr(p, self.error))
        ev["later"] = accumulate(ev.get("later", 0.0), weight * channel_llr(p.get("later", 0.0), self.error))
        ev["hazard"] = accumulate(ev.get("hazard", 0.0), weight * channel_llr(p.get("hazard", 0.0), self.error))
        return ev["done"] >= bound, ev["later"] >= bound, ev["hazard"] >= bound

    def _weigh_streak(self, reading: Reading) -> tuple[bool, bool, bool]:
        """The older rule: done and a later step each on `done_frames` answers in a row, a hazard at once."""
        self.done_streak = self.done_streak + 1 if reading.kind == "done" else 0
        if reading.kind == "later" and reading.later_step == self.later_seen:
            self.later_streak += 1
        else:
            self.later_seen = reading.later_step if reading.kind == "later" else None
            self.later_streak = 1 if reading.kind == "later" else 0
        return (self.done_streak >= self.done_frames, self.later_streak >= self.done_frames,
                reading.kind == "hazard")

    def _warn(self, what: str, text: str) -> Event | None:
        """A warning once per step and cause: saying it every frame would drown the person."""
        if (self.step, what) in self.warned:
            return None
        self.warned.add((self.step, what))
        return Event("warning", text, self.step)


def hazard_words(text: str) -> str:
    """What the model said after HAZARD (its explanation), when the card's step names no caution of its own."""
    words = text.strip().split(None, 1)
    if len(words) < 2 or words[0].strip(".:,!").lower() not in ("hazard", "danger"):
        return ""
    return words[1].strip(" .:,-") + "." if words[1].strip(" .:,-") else ""
