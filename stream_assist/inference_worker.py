"""The inference worker: one thread that owns the model and serves every session's slot in turn.

Round-robin over the sessions whose slot holds a frame, so a busy session cannot starve another.
A failed model call becomes an error for that session only; the worker goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .frame_slot import FrameFifo, FrameSlot
from .timeline import Timeline
from .vision_model import Generation

log = logging.getLogger(__name__)


class Describer(Protocol):
    def describe(self, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None = None) -> Generation: ...

    def close(self) -> None: ...


@dataclass
class Job:
    """A frame ready for the model, with the prompt in force when it was sampled."""

    frame_id: int
    rgb: np.ndarray
    prompt: str
    timeline: Timeline
    capture: dict[str, float | None] = field(default_factory=dict)  # browser-clock capture times, if known


@dataclass
class Outcome:
    """What the worker hands back for one job: a generation or an error message."""

    job: Job
    generation: Generation | None = None
    error: str | None = None


@dataclass
class _Client:
    key: str
    slot: FrameSlot[Job]
    on_outcome: Callable[[Outcome], None]  # both called on the worker thread
    on_partial: Callable[[Job, str], None] | None


class InferenceWorker:
    """Runs jobs from registered slots on one model, one at a time, round-robin."""

    def __init__(self, model: Describer) -> None:
        self.model = model
        self.wakeup = threading.Condition()
        self._clients: list[_Client] = []
        self._next = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None
        self.jobs_done = 0
        self.jobs_failed = 0
        self.restarts = 0  # times the serving loop died of an unexpected error and was started again

    def new_slot(self, kind: str = "slot") -> FrameSlot[Job] | FrameFifo[Job]:
        """A drop-stale slot (or, for comparison in benchmarks, a plain FIFO) that wakes this worker."""
        return FrameFifo(self.wakeup) if kind == "fifo" else FrameSlot(self.wakeup)

    def register(self, key: str, slot: FrameSlot[Job], on_outcome: Callable[[Outcome], None],
                 on_partial: Callable[[Job, str], None] | None = None) -> None:
        """Serves slot; on_outcome gets each answer or error, on_partial the answer so far as it grows."""
        with self.wakeup:
            self._clients.append(_Client(key, slot, on_outcome, on_partial))

    def unregister(self, key: str) -> None:
        with self.wakeup:
            self._clients = [c for c in self._clients if c.key != key]

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._supervise, name="inference-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops after the job in progress; returns when the thread has ended."""
        with self.wakeup:
            self._running = False
            self.wakeup.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _next_job(self) -> tuple[_Client, Job] | None:
        """Waits for a full slot, then takes from the first one after the last served (round-robin)."""
        with self.wakeup:
            while self._running:
                n = len(self._clients)
                for i in range(n):
                    client = self._clients[(self._next + i) % n]
                    job = client.slot.take()
                    if job is not None:
                        self._next = (self._next + i + 1) % n
                        return client, job
                self.wakeup.wait()
        return None

    @staticmethod
    def _streamer(client: _Client, job: Job) -> Callable[[str], None] | None:
        """A callback that hands the client the text generated so far, piece by piece."""
        if client.on_partial is None:
            return None
        pieces: list[str] = []

        def on_text(piece: str) -> None:
            pieces.append(piece)
            client.on_partial(job, "".join(pieces))

        return on_text

    def _supervise(self) -> None:
        """Runs the serving loop, and runs it again if it dies of an error outside any one job."""
        while self._running:
            try:
                self._run()
            except Exception:
                self.restarts += 1
                self.busy_since = None
                log.exception("the inference worker's loop died; restarting it (%d so far)", self.restarts)

    def _run(self) -> None:
        while (picked := self._next_job()) is not None:
            client, job = picked
            job.timeline.mark("taken")
            self.busy_since = time.time()
            try:
                outcome = Outcome(job, generation=self.model.describe(job.rgb, job.prompt, self._streamer(client, job)))
                self.jobs_done += 1
            except Exception as e:  # the model failed on this frame: tell this session, keep serving
                log.exception("inference failed for session %s frame %d", client.key, job.frame_id)
                outcome = Outcome(job, error=f"inference failed: {e}")
                self.jobs_failed += 1
            finally:
                self.busy_since = None
            try:
                client.on_outcome(outcome)
            except Exception:
                log.exception("delivering to session %s failed", client.key)
