"""The assistant inside one live session: turns client messages and model answers into the messages to send,
and writes every task event to the journal. Session calls it; it never touches the peer connection.

Each method returns `(type, fields)` messages; a `guidance` one is merged with the frame's own fields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import AssistantConfig
from .cards import Card, find_card, typed_card
from .places import card_dirs, journal_for, limits
from .policy import Decision, naive_decision, norm
from .questions import VERDICT_WORDS, draft_question, frame_context, frame_question, parse_draft, read_answer
from .state import TaskState, replay
from .tracker import Event, Tracker

log = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]


class NoTaskError(ValueError):
    """A task command (next, back, repeat, what_now) while no task is set."""


class LiveTask:
    """One session's assistant: its TaskState (restored from the journal by resume token) and journal."""

    def __init__(self, config: AssistantConfig, resume_token: str, state: TaskState | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock  # wall-clock seconds; the benchmark replays scripted time
        self.token = resume_token
        self.journal = journal_for(config)
        self.last_answer = ""  # for the no-task rule: say each new answer
        if state is None:
            state = TaskState()
            state.policy.min_gap_s, state.policy.stall_s = config.min_gap_s, config.stall_nudge_s
            replay(self.journal.read(resume_token), state, self.new_tracker)
        self.state = state

    def new_tracker(self, card: Card, started_at: float) -> Tracker:
        """A tracker for a card with the configured rule and its parameters."""
        c = self.config
        return Tracker(card, c.done_frames, c.advance_rule, c.describer_error, c.advance_odds, c.independent_s,
                       step_started_at=started_at)

    # --- what the model is asked -------------------------------------------------------------------

    def question(self) -> str | None:
        """This frame's prompt while a task (or a draft) is on; None: the session's own preset question."""
        if self.state.draft_for:
            return draft_question(self.state.draft_for)
        tracker = self.state.tracker
        if tracker is None or tracker.finished:
            return None
        return frame_question(tracker.step)

    def context(self) -> str:
        """What every frame of the current step shares (the task, the step, what done looks like): it goes before
        the image, with the instructions, so the model evaluates it once per step; empty without a task."""
        tracker = self.state.tracker
        if self.state.draft_for or tracker is None or tracker.finished:
            return ""
        return frame_context(tracker.card, tracker.step)

    def verdict_words(self) -> tuple[tuple[str, int], ...] | None:
        """The answer words of this frame's question, when its verdict is read from one step (not for drafts)."""
        if self.state.draft_for or self.question() is None or not self.config.one_step_verdict:
            return None
        return VERDICT_WORDS

    # --- client messages ---------------------------------------------------------------------------

    def resolve(self, card: str | None, steps: list[str] | None, title: str) -> Card | None:
        """The card a `settings` message names or types; CardError (and nothing changed) when it is bad."""
        if card is not None:
            return find_card(card, card_dirs(self.config), limits(self.config))
        if steps is not None:
            return typed_card(title, steps, limits(self.config))
        return None

    def set_card(self, card: Card) -> list[Message]:
        now = self.clock()
        self.state.draft_for = ""
        self.state.tracker = self.new_tracker(card, now)
        self._record("task", **card.as_dict())
        self._record("step", step=0, by="task")
        return [self.task_message(), self._guidance(self._decide(self.state.tracker.go_to(0, now, "next"), now))]

    def request_draft(self, task: str) -> list[Message]:
        self.state.draft_for = task
        return []

    def command(self, name: str) -> list[Message]:
        """next, back, repeat, what_now: the same effect whether tapped or spoken."""
        tracker = self.state.tracker
        if tracker is None:
            raise NoTaskError(f"{name} needs a task: pick a card or enter steps")
        now = self.clock()
        before = tracker.step
        event = {"next": lambda: tracker.next(now), "back": lambda: tracker.back(now),
                 "repeat": tracker.repeat, "what_now": tracker.what_now}[name]()
        if tracker.step != before:
            self._record("step", step=tracker.step, by=name)
        return [self._guidance(self._decide(event, now))]

    def set_person_speaking(self, on: bool) -> list[Message]:
        """The person starts or stops speaking (the voice listener's speech_start / speech_end): nothing is said
        over them, and what was held back meanwhile is said once they stop, if it is still about the current step."""
        policy = self.state.policy
        policy.person_speaking = on
        held, policy.deferred = (None, policy.deferred) if on else (policy.deferred, None)
        tracker = self.state.tracker
        if held is None or tracker is None or held.step != tracker.step:
            return []
        return [self._guidance(self._decide(held, self.clock()))]

    def speaks_early(self, sentence: str) -> bool:
        """Whether an answer that begins with this sentence will be said, so the server's voice can say it while the
        rest is written: with no task the rule says each new answer (never after `quiet` or over the person)."""
        policy = self.state.policy
        return (self.state.tracker is None and not self.state.draft_for and not policy.hushed
                and not policy.person_speaking and not norm(self.last_answer).startswith(norm(sentence)))

    # --- model answers -----------------------------------------------------------------------------

    def on_answer(self, prompt: str, answer: str, verdict: dict[str, float] | None = None,
                  context: str = "") -> list[Message]:
        """One model answer (with its verdict's word probabilities, if read in one step): a guidance with its
        decision, or (for a draft) the drafted steps."""
        now = self.clock()
        if self.state.draft_for and prompt == draft_question(self.state.draft_for):
            task, self.state.draft_for = self.state.draft_for, ""
            steps = parse_draft(answer, limits(self.config))
            return [("steps_draft", {"task": task, "steps": steps, "answer": answer})]
        tracker = self.state.tracker
        if tracker is None or tracker.finished or (prompt, context) != (self.question(), self.context()):
            # no task (or an answer to a question no longer asked): the plain rule
            if tracker is None:
                decision = naive_decision(answer, self.last_answer)
                policy = self.state.policy
                if decision.speak and (policy.hushed or policy.person_speaking):  # `quiet`, or never over the person
                    decision = Decision("show", "hushed" if policy.hushed else "person_speaking", answer)
            else:
                decision = Decision("show", "task_finished" if tracker.finished else "stale", answer)
            if decision.speak:
                self.last_answer = answer
            return [self._guidance(decision, answer)]
        before = tracker.step
        event = tracker.observe(read_answer(answer, verdict or {}, tracker.card, tracker.step), now)
        if tracker.step != before:
            self._record("step", step=tracker.step, by="model")
        elif event is None and self.state.policy.stalled(tracker.step_started_at, now):
            event = tracker.nudge()
        return [self._guidance(self._decide(event, now, answer), answer)]

    # --- messages ----------------------------------------------------------------------------------

    def _decide(self, event: Event | None, now: float, answer: str = "") -> Decision:
        decision = self.state.policy.decide(event, answer, now)
        if decision.speak:
            self._record("spoken", text=decision.text, reason=decision.reason)
        return decision

    def _guidance(self, decision: Decision, answer: str | None = None) -> Message:
        fields: dict[str, Any] = {"text": decision.text, "speak": decision.speak, "action": decision.action,
                                  "reason": decision.reason, "about": decision.kind, **self.progress()}
        if answer is not None:
            fields["answer"] = answer
        return ("guidance", fields)

    def progress(self) -> dict[str, Any]:
        """`step` (0-based), `steps` (count), `task_title` and `confidence` (how far the evidence that the step is
        done has come towards advancing it, 0..1): in every status and guidance."""
        tracker = self.state.tracker
        if tracker is None:
            return {"step": 0, "steps": 0, "task_title": "", "confidence": 0.0}
        return {"step": tracker.step, "steps": len(tracker.card.steps), "task_title": tracker.card.title,
                "confidence": round(tracker.confidence, 3)}

    def task_message(self) -> Message:
        card = self.state.card
        fields = card.as_dict() if card else {"name": "", "title": "", "steps": []}
        return ("task", {**fields, "step": self.progress()["step"]})

    def _record(self, event: str, **fields: Any) -> None:
        """Journals an event; a full or read-only disk is logged, never the session's end."""
        try:
            self.journal.append(self.token, event, **fields)
        except OSError as e:
            log.warning("journal: could not record %s: %s", event, e)

