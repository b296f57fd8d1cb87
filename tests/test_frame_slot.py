"""The drop-stale slot and the worker's round-robin, with a worker slower than the frames."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from stream_assist.inference.vision_model import Generation
from stream_assist.inference.worker import InferenceWorker, Job, Outcome
from stream_assist.latency.timeline import Timeline


class Unreachable(RuntimeError):
    retryable = True  # as a remote endpoint's failure: another endpoint may answer


class GatedModel:
    """Blocks in describe() until released, and says which frame it got: a worker we can hold busy."""

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = parallel
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.seen: list[str] = []

    def lease(self, stopping):
        return contextlib.nullcontext(self.describe)

    def describe(self, rgb, prompt, on_text=None, choices=None, context="") -> Generation:
        self.seen.append(prompt)
        self.started.release()
        assert self.release.acquire(timeout=30)
        if prompt == "explode":
            raise RuntimeError("model failure")
        if prompt.startswith("unreachable") and prompt.count("unreachable") > self.seen.count(prompt) - 1:
            raise Unreachable("endpoint down")
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


def sessions(keys: str, parallel: int = 1):
    """A worker on a GatedModel with one registered slot per key; returns (model, worker, slots, outcomes, done)."""
    model = GatedModel(parallel)
    worker = InferenceWorker(model)
    slots = {key: worker.new_slot() for key in keys}
    outcomes: list[Outcome] = []
    done = threading.Semaphore(0)
    for key, slot in slots.items():
        worker.register(key, slot, collect(outcomes, done))
    return model, worker, slots, outcomes, done


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
    model, worker, slots, outcomes, done = sessions("abc")
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


def test_a_session_with_a_frame_in_flight_is_skipped_until_it_is_answered() -> None:
    worker = InferenceWorker(GatedModel(parallel=2))
    slots = {key: worker.new_slot() for key in "ab"}
    for key, slot in slots.items():
        worker.register(key, slot, lambda o: None)
    worker._running = True
    slots["a"].put(job(1, "a1"))
    first = worker._next_job()
    slots["a"].put(job(2, "a2"))  # a's answer to a1 is not in yet, so a2 must wait although a thread is free
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(worker._next_job)
        slots["b"].put(job(1, "b1"))
        assert [j.prompt for _, j in (first, second.result(timeout=30))] == ["a1", "b1"]
    assert slots["a"].full and worker.in_progress == 2


def test_parallel_model_runs_frames_of_different_sessions_at_once() -> None:
    model, worker, slots, outcomes, done = sessions("ab", parallel=2)
    worker.start()
    try:
        slots["a"].put(job(1, "a1"))
        slots["b"].put(job(1, "b1"))
        assert model.started.acquire(timeout=30) and model.started.acquire(timeout=30)  # both in flight at once
        assert worker.in_progress == 2
        model.release.release()
        model.release.release()
        assert done.acquire(timeout=30) and done.acquire(timeout=30)
    finally:
        worker.stop()
    assert sorted(o.job.prompt for o in outcomes) == ["a1", "b1"] and worker.in_progress == 0


def test_a_retryable_failure_is_reported_and_the_frame_tried_once_more() -> None:
    r = rig()
    model, worker, slot, outcomes, done = r.model, r.worker, r.slot, r.outcomes, r.done
    worker.start()
    try:
        slot.put(job(1, "unreachable unreachable"))  # fails on two tries: retried once, then given up
        for _ in range(2):
            assert model.started.acquire(timeout=30)
            model.release.release()
            assert done.acquire(timeout=30)
        slot.put(job(2, "unreachable"))  # fails once, then answers
        for _ in range(2):
            assert model.started.acquire(timeout=30)
            model.release.release()
            assert done.acquire(timeout=30)
    finally:
        worker.stop()
    assert [(o.job.frame_id, o.retrying, o.error is None) for o in outcomes] == [
        (1, True, False), (1, False, False), (2, True, False), (2, False, True)]
    assert "endpoint down" in outcomes[0].error and outcomes[1].error.startswith("inference failed")


def test_a_newer_frame_wins_over_a_failed_one_put_back() -> None:
    worker = InferenceWorker(GatedModel())
    slot = worker.new_slot()
    slot.put(job(1))
    failed = slot.take()
    assert slot.put_back(failed) is True and slot.take().frame_id == 1
    slot.put(job(2))
    assert slot.put_back(failed) is False and slot.take().frame_id == 2


def test_a_frame_that_waited_for_the_model_gives_way_to_a_newer_one() -> None:
    worker = InferenceWorker(GatedModel())
    slot = worker.new_slot()
    slot.put(job(1))
    waiting = slot.take()
    assert slot.newest(waiting) is waiting
    slot.put(job(2))
    assert slot.newest(waiting).frame_id == 2 and slot.take() is None
    assert (slot.counters.put, slot.counters.dropped, slot.counters.taken) == (2, 1, 1)


def test_a_paused_slot_drops_its_frame_and_ignores_puts_until_resumed() -> None:
    worker = InferenceWorker(GatedModel())
    for slot in (worker.new_slot(), worker.new_slot("fifo")):
        slot.put(job(1))
        slot.pause()
        assert not slot.full and slot.put(job(2)) is False and not slot.full
        slot.resume()
        slot.put(job(3))
        assert slot.take().frame_id == 3 and slot.counters.put == 2
