"""Where the person is in the task: a pure state machine over the steps, fed by commands and model readings.

A step advances on next/done, or when the model reports it done on `done_frames` answers in a row (one
noisy answer must not skip a step). A later step seen that many times in a row, or a hazard reported
during a step with a caution, is a warning. Times are passed in, so tests and the benchmark replay them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cards import Card


@dataclass(frozen=True)
class Reading:
    """One model answer, parsed (questions.parse_reply): done, not_done, later (step index), hazard or unclear."""

    kind: str
    later_step: int | None = None
    text: str = ""


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
    done_frames: int = 2
    step: int = 0  # 0-based; == len(steps) once finished
    step_started_at: float = 0.0
    done_streak: int = 0
    later_streak: int = 0
    later_seen: int | None = None  # the later step the current streak is about
    warned: set[tuple[int, str]] = field(default_factory=set)  # (step, what) already warned during this step

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
        self.done_streak = self.done_streak + 1 if reading.kind == "done" else 0
        if reading.kind == "later" and reading.later_step == self.later_seen:
            self.later_streak += 1
        else:
            self.later_seen = reading.later_step if reading.kind == "later" else None
            self.later_streak = 1 if reading.kind == "later" else 0
        if self.done_streak >= self.done_frames:
            return self.go_to(self.step + 1, now, "model")
        if self.later_streak >= self.done_frames and self.later_seen is not None:
            first = self.card.steps[self.step].instruction
            return self._warn(f"later:{self.later_seen}", f"That looks like step {self.later_seen + 1}. First: {first}")
        caution = self.card.steps[self.step].caution
        if reading.kind == "hazard" and caution:
            return self._warn("caution", f"Careful: {caution}")
        return None

    def _warn(self, what: str, text: str) -> Event | None:
        """A warning once per step and cause: saying it every frame would drown the person."""
        if (self.step, what) in self.warned:
            return None
        self.warned.add((self.step, what))
        return Event("warning", text, self.step)
