"""When to speak, decided apart from what to say: speak, show only, or stay quiet, with the reason.

Speak on a step change, a warning, the person's own request, and a nudge after a long stall; never the
same words twice in a row unless asked, never over the person, never sooner than `min_gap_s` after the
last utterance unless the person asked. Everything else is shown at most: quiet is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tracker import Event

SPEAK_REASONS = {"step": "step_change", "finished": "step_change", "warning": "warning", "repeat": "asked",
                 "what_now": "asked", "nudge": "nudge"}
ASKED = {"repeat", "what_now"}


@dataclass(frozen=True)
class Decision:
    action: str  # speak | show | quiet
    reason: str
    text: str
    kind: str = "answer"  # what it is about: the tracker event's kind (step, warning, ...) or a plain answer

    @property
    def speak(self) -> bool:
        return self.action == "speak"


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class SpeechPolicy:
    min_gap_s: float = 4.0
    stall_s: float = 90.0
    last_spoken: str = ""
    last_spoken_at: float = float("-inf")
    person_speaking: bool = False  # the voice listener's speech_start / speech_end, via LiveTask.set_person_speaking
    deferred: Event | None = None  # what would have been said while the person spoke: said once they stop
    hushed: bool = False  # the person said `quiet`: show only until a new step or `resume`

    def hush(self, on: bool = True) -> None:
        self.hushed = on

    def decide(self, event: Event | None, answer: str, now: float) -> Decision:
        """One decision for one event (or a plain answer with no event)."""
        if event is None:
            return Decision("show" if answer.strip() else "quiet", "observation", answer)
        reason = SPEAK_REASONS[event.kind]
        person_step = event.kind in ("step", "finished") and event.by in ("next", "back")
        if event.kind in ("step", "finished"):
            self.hushed = False  # a new step ends `quiet`
        if self.person_speaking:
            self.deferred = event
            return Decision("show", "person_speaking", event.text, event.kind)
        if self.hushed:
            return Decision("show", "hushed", event.text, event.kind)
        asked = event.kind in ASKED or person_step
        if not asked and norm(event.text) == norm(self.last_spoken):
            return Decision("show", "already_said", event.text, event.kind)
        if not asked and now - self.last_spoken_at < self.min_gap_s and event.kind not in ("step", "finished"):
            return Decision("show", "min_gap", event.text, event.kind)
        self.last_spoken, self.last_spoken_at = event.text, now
        return Decision("speak", "asked" if asked and event.kind in ASKED else reason, event.text, event.kind)

    def stalled(self, step_started_at: float, now: float) -> bool:
        """True when the step and the speech have both been still for stall_s: time for one nudge."""
        return now - max(step_started_at, self.last_spoken_at) >= self.stall_s


def naive_decision(answer: str, last: str) -> Decision:
    """The baseline (and the page's rule with no task): say every answer that differs from the last one."""
    if not answer.strip():
        return Decision("quiet", "empty", answer)
    if norm(answer) == norm(last):
        return Decision("show", "already_said", answer)
    return Decision("speak", "new_answer", answer)
