"""The inference worker: the threads that hand every session's slot to the model in turn.

Round-robin over the sessions whose slot holds a frame, so a busy session cannot starve another. The
embedded model takes one frame at a time (one thread); remote endpoints take as many as they have room
for (one thread each), with at most one frame per session in flight so its answers stay in order. A
serving thread first waits until the model can start at once, then takes the newest frame there is.
A failed model call becomes an error for that session only; when another endpoint may succeed, the frame
goes back into its slot once, unless a newer one has arrived there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..latency.timeline import Timeline
from .frame_slot import FrameFifo, FrameSlot
from .verdict import Choices
from .vision_model import Generation

log = logging.getLogger(__name__)


DescribeFn = Callable[..., Generation]  # (rgb, prompt, on_text, choices=None, context="") -> Generation


class Describer(Protocol):
    """A model: the embedded VisionModel or the RemoteModel's endpoints."""

    parallel: int  # frames it can work on at once

    def lease(self, stopping: threading.Event) -> contextlib.AbstractContextManager[DescribeFn | None]:
        """Waits until a frame can start at once; yields the function to run it (None when stopping)."""
        ...

    def close(self) -> None: ...


@dataclass
class Job:
    """A frame ready for the model, with the prompt in force when it was sampled."""

    frame_id: int
    rgb: np.ndarray
    prompt: str
    timeline: Timeline
    capture: dict[str, float | None] = field(default_factory=dict)  # browser-clock capture times, if known
    attempts: int = 0  # model calls tried on it (a failed one on an endpoint may be retried on another)
    choices: Choices | None = None  # the prompt's answer words: a verdict is read instead of an answer written
    context: str = ""  # what the frames have in common (a task's step): before the image, evaluated once


@dataclass
class Outcome:
    """What the worker hands back for one job: a generation or an error message."""

    job: Job
    generation: Generation | None = None
    error: str | None = None
    retrying: bool = False  # the failed frame (or a newer one of its session) is waiting for another endpoint


@dataclass
class _Client:
    key: str
    slot: FrameSlot[Job]
    on_outcome: Callable[[Outcome], None]  # both called on the worker thread
    on_partial: Callable[[Job, str], None] | None
    busy: bool = False  # a frame of this session is with the model


class InferenceWorker:
    """Runs jobs from registered slots on one model, round-robin, as many at once as the model allows."""

    def __init__(self, model: Describer) -> None:
        self.model = model
        self.wakeup = threading.Condition()
        self._clients: list[_Client] = []
        self._next = 0
        self._running = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.in_progress = 0  # frames with the model now
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
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._supervise, name=f"inference-worker-{i}", daemon=True)
                         for i in range(self.model.parallel)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops after the jobs in progress; returns when the threads have ended."""
        with self.wakeup:
            self._running = False
            self._stopping.set()
            self.wakeup.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _next_job(self) -> tuple[_Client, Job] | None:
        """Waits for a full slot, then takes from the first one after the last served (round-robin)."""
        with self.wakeup:
            while self._running:
                n = len(self._clients)
                for i in range(n):
                    client = self._clients[(self._next + i) % n]
                    job = None if client.busy else client.slot.take()
                    if job is not None:
                        self._next = (self._next + i + 1) % n
                        client.busy = True
                        self.in_progress += 1
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
        """Runs a serving loop, and runs it again if it dies of an error outside any one job."""
        while self._running:
            try:
                self._run()
            except Exception:
                self.restarts += 1
                log.exception("an inference worker loop died; restarting it (%d so far)", self.restarts)

    def _run(self) -> None:
        while (picked := self._next_job()) is not None:
            client, job = picked
            try:
                with self.model.lease(self._stopping) as describe:  # waits for room on an endpoint
                    if describe is None:  # stopping
                        return
                    outcome = self._serve(describe, client, client.slot.newest(job))
                try:
                    client.on_outcome(outcome)  # before the session's next frame can be taken: answers stay in order
                except Exception:
                    log.exception("delivering to session %s failed", client.key)
            finally:
                with self.wakeup:
                    client.busy = False
                    self.in_progress -= 1
                    self.wakeup.notify_all()

    def _serve(self, describe: DescribeFn, client: _Client, job: Job) -> Outcome:
        """Runs one job; a failure the model says another try may cure puts the frame back, once."""
        job.timeline.mark("taken")
        job.attempts += 1
        try:
            outcome = Outcome(job, generation=describe(job.rgb, job.prompt, self._streamer(client, job),
                                                         choices=job.choices, context=job.context))
            self.jobs_done += 1
        except Exception as e:  # the model failed on this frame: tell this session, keep serving
            log.warning("inference failed for session %s frame %d: %s", client.key, job.frame_id, e,
                        exc_info=not getattr(e, "retryable", False))
            retryable = getattr(e, "retryable", False)
            if retryable and job.attempts < 2:
                client.slot.put_back(job)  # unless a newer frame is already waiting there
            retrying = retryable and client.slot.full  # this frame or a newer one goes out again at once
            outcome = Outcome(job, error=str(e) if retrying else f"inference failed: {e}", retrying=retrying)
            self.jobs_failed += 1
        return outcome
