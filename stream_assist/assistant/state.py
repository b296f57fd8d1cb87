"""One person's task state as a single object (the tracker and the speech policy's memory), so it can be
carried across reconnects as-is, and rebuilt from the journal after a restart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cards import Card, Step
from .policy import SpeechPolicy
from .tracker import Tracker


@dataclass
class TaskState:
    tracker: Tracker | None = None  # None: no task, the session asks its preset question
    policy: SpeechPolicy = field(default_factory=SpeechPolicy)
    draft_for: str = ""  # a task the person named, whose steps the model is to draft from the next frame

    @property
    def card(self) -> Card | None:
        return self.tracker.card if self.tracker else None


def card_from_event(record: dict[str, Any]) -> Card | None:
    """The card a journal `task` event recorded (in full, so an edited card file cannot move a person's step)."""
    try:
        steps = tuple(Step(s["instruction"], s.get("done_when", ""), s.get("caution", "")) for s in record["steps"])
        return Card(str(record["name"]), str(record["title"]), steps) if steps else None
    except (KeyError, TypeError, AttributeError):
        return None


def replay(events: list[dict[str, Any]], state: TaskState, new_tracker: Callable[[Card, float], Tracker]) -> TaskState:
    """Rebuilds the task and step from journal events (the last `task`, then its `step` events); new_tracker makes
    the tracker for a card with the settings in force."""
    for record in events:
        if record["event"] == "task" and (card := card_from_event(record)) is not None:
            state.tracker = new_tracker(card, float(record.get("t", 0.0)))
        elif record["event"] == "step" and state.tracker is not None and isinstance(record.get("step"), int):
            state.tracker.step = max(0, min(record["step"], len(state.tracker.card.steps)))
            state.tracker.step_started_at = float(record.get("t", 0.0))
        elif record["event"] == "cleared":
            state.tracker = None
    return state
