"""The pool of remote inference endpoints: least-busy routing and health checks with back-off.

Each endpoint serves up to `parallel` requests at once. `reserve` waits until a healthy endpoint has room
and takes the least busy one (this instance's requests in flight there, relative to its room). A failed
request or check marks its endpoint down; one thread checks a down endpoint after 0.5 s, then twice as
long each time up to `max_backoff_s`, and a healthy one every `health_interval_s` it has not answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5


@dataclass
class Endpoint:
    """One inference server as this instance sees it."""

    url: str
    parallel: int
    healthy: bool = False  # unknown counts as down until the first check answers
    model: str = ""  # the model name to request there
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    backoff_s: float = 0.0
    next_check: float = 0.0  # time.monotonic() of the next health check
    last_error: str = ""

    def as_dict(self) -> dict:
        return {"url": self.url, "healthy": self.healthy, "model": self.model, "in_flight": self.in_flight,
                "parallel": self.parallel, "requests": self.requests, "failures": self.failures,
                "next_check_in_s": round(max(0.0, self.next_check - time.monotonic()), 2),
                "last_error": self.last_error}


def least_busy(endpoints: list[Endpoint]) -> Endpoint | None:
    """The healthy endpoint with the most room left, ties to the one that has served fewest; None if all full."""
    free = [e for e in endpoints if e.healthy and e.in_flight < e.parallel]
    return min(free, key=lambda e: (e.in_flight / e.parallel, e.requests), default=None)


def next_backoff(previous_s: float, max_s: float) -> float:
    """The wait before checking a failing endpoint again: 0.5 s, then doubling, capped at max_s."""
    return min(max_s, FIRST_BACKOFF_S if previous_s <= 0 else previous_s * 2)


class EndpointPool:
    """Endpoints shared by the worker's threads; `probe` checks one and returns its model name (or raises)."""

    def __init__(self, urls: list[str], parallel: int, probe: Callable[[Endpoint], str],
                 health_interval_s: float, max_backoff_s: float) -> None:
        self.endpoints = [Endpoint(url, parallel) for url in urls]
        self._probe = probe
        self._interval = health_interval_s
        self._max_backoff = max_backoff_s
        self._cond = threading.Condition()
        self._closed = False
        self._checker = threading.Thread(target=self._check_loop, name="endpoint-health", daemon=True)

    @property
    def capacity(self) -> int:
        return sum(e.parallel for e in self.endpoints)

    def start(self) -> None:
        self._checker.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._checker.is_alive():
            self._checker.join()

    def reserve(self, stopping: threading.Event) -> Endpoint | None:
        """Waits for room on a healthy endpoint and takes it; None once stopping is set or the pool closed."""
        with self._cond:
            while not (self._closed or stopping.is_set()):
                endpoint = least_busy(self.endpoints)
                if endpoint is not None:
                    endpoint.in_flight += 1
                    return endpoint
                self._cond.wait(0.25)  # also wakes on any release or recovery; the timeout only notices stopping
        return None

    def release(self, endpoint: Endpoint, error: str | None = None) -> None:
        """Ends a reservation; an error marks the endpoint down, success counts as a passed check."""
        with self._cond:
            endpoint.in_flight -= 1
            endpoint.requests += 1
            if error is None:
                endpoint.next_check = time.monotonic() + self._interval
            else:
                endpoint.failures += 1
                self._mark_down(endpoint, error)
            self._cond.notify_all()

    def snapshot(self) -> list[dict]:
        with self._cond:
            return [e.as_dict() for e in self.endpoints]

    def _mark_down(self, endpoint: Endpoint, error: str) -> None:
        if endpoint.healthy:
            log.warning("inference endpoint %s is down: %s", endpoint.url, error)
        endpoint.healthy = False
        endpoint.last_error = error
        endpoint.backoff_s = next_backoff(endpoint.backoff_s, self._max_backoff)
        endpoint.next_check = time.monotonic() + endpoint.backoff_s

    def _check(self, endpoint: Endpoint) -> None:
        try:
            model = self._probe(endpoint)
        except Exception as e:  # any failure to answer is a failed check
            with self._cond:
                self._mark_down(endpoint, f"health check failed: {e}")
            return
        with self._cond:
            if not endpoint.healthy:
                log.info("inference endpoint %s is up (model %r)", endpoint.url, model)
            endpoint.healthy, endpoint.model, endpoint.backoff_s = True, model, 0.0
            endpoint.next_check = time.monotonic() + self._interval
            self._cond.notify_all()

    def _check_loop(self) -> None:
        """Checks each endpoint when it is due; sleeps until the next one is."""
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                due = [e for e in self.endpoints if e.next_check <= now]
                if not due:
                    self._cond.wait(min(e.next_check for e in self.endpoints) - now)
                    continue
                for e in due:  # not due again until this check has answered
                    e.next_check = now + self._interval
            for e in due:
                self._check(e)
