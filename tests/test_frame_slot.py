"""The drop-stale slot and the worker's round-robin, with a worker slower than the frames."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from stream_assist.inference_worker import InferenceWorker, Job, Outcome
from stream_assist.timeline import Timeline
from stream_assist.vision_model import Generation


class GatedModel:
    """Blocks in describe() until released, and says which frame it got: a worker we can hold busy."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.seen: list[str] = []

    def describe(self, rgb, prompt, on_text=None) -> Generation:
        self.seen.append(prompt)
        self.started.release()
        assert self.release.acquire(timeout=30)
        if prompt == "explode":
            raise RuntimeError("model failure")
        return Generation(prompt, 0.0, 0.0, 0.0, 1, 1)

    def close(self) -> None:
        pass


def job(frame_id: int, prompt: str = "") -> Job:
    return Job(frame_id, np.zeros((2, 2, 3), np.uint8), prompt or f"frame {frame_id}", Timeline())


def collect(outcomes: list[Outcome], done: threading.Semaphore):
    def on_outcome(o: Outcome) -> None:
        outcomes.append(o)
        done.release()
    return on_outcome


@dataclass
class Rig:
    """A worker on a GatedModel with one registered slot, and what it hands back."""

    model: GatedModel
    worker: InferenceWorker
    slot: object
    outcomes: list[Outcome]
    done: threading.Semaphore


def rig() -> Rig:
    model = GatedModel()
    worker = InferenceWorker(model)
    slot = worker.new_slot()
    outcomes: list[Outcome] = []
    done = threading.Semaphore(0)
    worker.register("a", slot, collect(outcomes, done))
    return Rig(model, worker, slot, outcomes, done)


def test_slot_keeps_only_the_newest_and_counts_drops() -> None:
    worker = InferenceWorker(GatedModel())
    slot = worker.new_slot()
    assert slot.put(job(1)) is False
    assert slot.put(job(2)) is True
    assert slot.put(job(3)) is True
    assert slot.take().frame_id == 3
    assert slot.take() is None
    assert (slot.counters.put, slot.counters.dropped, slot.counters.taken) == (3, 2, 1)


def test_busy_worker_gets_the_newest_frame_when_it_becomes_free() -> None:
    r = rig()
    model, worker, slot, outcomes, done = r.model, r.worker, r.slot, r.outcomes, r.done
    worker.start()
    try:
        newest_when_free = []
        frame_id = 0
        for burst in (1, 4, 2, 7):  # frames arriving while the worker is busy with the previous one
            for _ in range(burst):
                frame_id += 1
                slot.put(job(frame_id))
            newest_when_free.append(frame_id)
            if len(newest_when_free) > 1:
                model.release.release()  # the worker finishes its frame and becomes free
                assert done.acquire(timeout=30)
            assert model.started.acquire(timeout=30)  # ...and takes what the slot holds now
        model.release.release()
        assert done.acquire(timeout=30)
    finally:
        worker.stop()
    assert [o.job.frame_id for o in outcomes] == newest_when_free == [1, 5, 7, 14]
    assert slot.counters.dropped == 14 - 4
    assert slot.counters.taken == 4


def test_round_robin_serves_every_session_and_survives_model_errors() -> None:
    model = GatedModel()
    worker = InferenceWorker(model)
    slots = {key: worker.new_slot() for key in "abc"}
    outcomes: list[Outcome] = []
    done = threading.Semaphore(0)
    for key, slot in slots.items():
        worker.register(key, slot, collect(outcomes, done))
    worker.start()
    try:
        slots["a"].put(job(1, "a1"))
        assert model.started.acquire(timeout=30)  # busy on a1
        slots["a"].put(job(2, "explode"))
        slots["b"].put(job(1, "b1"))
        slots["c"].put(job(1, "c1"))
        for _ in range(4):
            model.release.release()
            assert done.acquire(timeout=30)
            if len(outcomes) < 4:
                assert model.started.acquire(timeout=30)
    finally:
        worker.stop()
    # a was served last, so b and c go before a's next frame; the failure is a's alone
    assert model.seen == ["a1", "b1", "c1", "explode"]
    assert [o.error is None for o in outcomes] == [True, True, True, False]
    assert "model failure" in outcomes[3].error
    assert worker.jobs_done == 3 and worker.jobs_failed == 1


def test_fifo_baseline_keeps_every_frame_in_order() -> None:
    worker = InferenceWorker(GatedModel())
    fifo = worker.new_slot("fifo")
    for i in (1, 2, 3):
        assert fifo.put(job(i)) is False
    assert [fifo.take().frame_id for _ in range(3)] == [1, 2, 3]
    assert fifo.take() is None and fifo.counters.dropped == 0 and fifo.counters.taken == 3


def test_worker_loop_that_dies_is_restarted_and_serves_on() -> None:
    r = rig()
    model, worker, slot, outcomes, done = r.model, r.worker, r.slot, r.outcomes, r.done
    original = worker._next_job
    calls = []

    def broken_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug outside any job")
        return original()

    worker._next_job = broken_once
    worker.start()
    try:
        slot.put(job(1))
        assert model.started.acquire(timeout=30)
        model.release.release()
        assert done.acquire(timeout=30)
    finally:
        worker.stop()
    assert worker.restarts == 1 and [o.job.frame_id for o in outcomes] == [1]
