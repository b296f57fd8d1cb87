"""Replaying a recording through today's pipeline and model, so a prompt, preset or model change can be compared on
the same video: each recorded frame (already enhanced: it is what the model was shown) goes to the model again.

At recorded times (the default) frames pass the change gate and the drop-stale slot as a live camera's do: a frame
the model is too busy for is dropped, a still one skipped. With `fast` every frame is answered, one after another, as
fast as the model answers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..inference.prompts import PromptSettings
from ..inference.worker import InferenceWorker, Job, Outcome
from ..latency.timeline import Timeline
from ..video.change_gate import ChangeGate, thumbnail
from .reading import RecordedFrame, Recording


@dataclass
class Replayed:
    """One recorded frame and what happened to it now."""

    n: int
    pts_ms: int
    recorded: str  # the answer in the recording
    now: str | None = None  # today's answer; None when the frame was not asked about
    skipped: str = ""  # unchanged (the gate) | dropped (a newer frame replaced it) | error: …
    model_ms: float | None = None
    recorded_timeline: dict | None = None

    def as_dict(self) -> dict:
        return {"n": self.n, "pts_ms": self.pts_ms, "recorded": self.recorded, "now": self.now,
                "skipped": self.skipped, "model_ms": self.model_ms, "recorded_timeline": self.recorded_timeline}


class _Answers:
    """Collects the worker's outcomes (on its thread) and lets the replay wait for the ones it needs."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.outcomes: dict[int, Outcome] = {}

    def deliver(self, outcome: Outcome) -> None:
        with self.cond:
            self.outcomes[outcome.job.frame_id] = outcome
            self.cond.notify_all()

    def wait_for(self, keys: set[int]) -> None:
        with self.cond:
            self.cond.wait_for(lambda: keys <= self.outcomes.keys())


def _job(frame: RecordedFrame, prompt: str | None) -> Job:
    timeline = Timeline()
    for stage in ("decoded", "sampled", "enhanced"):  # recorded frames are decoded and already enhanced
        timeline.mark(stage)
    if prompt:  # a question of today's: the recorded step context is not asked with it
        return Job(frame.n, frame.rgb, prompt, timeline)
    return Job(frame.n, frame.rgb, frame.prompt or PromptSettings().text(), timeline, context=frame.context)


def replay(recording: Recording, worker: InferenceWorker, config: Config, fast: bool = False,
           prompt: str | None = None, on_result: Callable[[Replayed], None] | None = None,
           limit: int | None = None) -> list[Replayed]:
    """Runs every frame of the recording through the gate, slot and model (see the module's note); returns what
    happened to each, in order, and hands each on to on_result as soon as it is known (fast) or at the end. `limit`
    stops after that many frames."""
    answers = _Answers()
    slot = worker.new_slot()
    key = f"replay-{id(answers)}"
    worker.register(key, slot, answers.deliver)
    gate = ChangeGate(config.pipeline.change_threshold, config.pipeline.max_reguide_s)
    results: list[Replayed] = []
    asked: set[int] = set()
    last_put: Replayed | None = None
    started = time.monotonic()
    try:
        frames = itertools.islice(recording.frames(), limit)
        upcoming = next(frames, None)
        while (frame := upcoming) is not None:
            result = Replayed(frame.n, frame.pts_ms, frame.text, recorded_timeline=frame.timeline or None)
            results.append(result)
            if not fast:
                time.sleep(max(0.0, started + frame.pts_ms / 1000 - time.monotonic()))  # the recorded pace
            if fast or gate.admit(thumbnail(frame.rgb), time.time()):
                job = _job(frame, prompt)
                job.timeline.mark("queued")
                if slot.put(job) and last_put is not None:  # the frame waiting there was never taken
                    last_put.skipped = "dropped"
                    asked.discard(last_put.n)
                asked.add(frame.n)
                last_put = result
            else:
                result.skipped = "unchanged"
            upcoming = next(frames, None)  # decoded while the model answers
            if fast:
                answers.wait_for({frame.n})
                _fill(result, answers.outcomes[frame.n])
                if on_result is not None:
                    on_result(result)
        answers.wait_for(asked)
    finally:
        worker.unregister(key)
    for result in results:
        if result.n in answers.outcomes and result.now is None and not result.skipped:
            _fill(result, answers.outcomes[result.n])
        if not fast and on_result is not None:
            on_result(result)
    return results


def _fill(result: Replayed, outcome: Outcome) -> None:
    if outcome.error is not None:
        result.skipped = f"error: {outcome.error}"
        return
    gen = outcome.generation
    result.now = gen.text
    result.model_ms = round((gen.done_at - gen.started_at) * 1000, 1)
