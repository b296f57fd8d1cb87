"""The drop-stale frame slot between a session and the inference worker.

It holds at most one frame. A newer frame replaces an unprocessed one (counted as dropped), so the
worker, whenever it becomes free, takes the newest frame there is and never works on an old one.
Producers (the asyncio loop) and the consumer (the worker thread) share one `threading.Condition`
owned by the worker, so a put wakes the worker at once without polling.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class SlotCounters:
    put: int = 0
    dropped: int = 0  # replaced before the worker took them
    taken: int = 0


class FrameSlot(Generic[T]):
    """A one-item mailbox where the newest item wins."""

    def __init__(self, wakeup: threading.Condition) -> None:
        self._cond = wakeup
        self._item: T | None = None
        self._accepting = True
        self.counters = SlotCounters()

    def put(self, item: T) -> bool:
        """Stores item, replacing (and counting as dropped) any unprocessed one; True if one was replaced.
        While paused the item is ignored."""
        with self._cond:
            if not self._accepting:
                return False
            replaced = self._item is not None
            if replaced:
                self.counters.dropped += 1
            self._item = item
            self.counters.put += 1
            self._cond.notify_all()
        return replaced

    def take(self) -> T | None:
        """Removes and returns the waiting item, or None when the slot is empty."""
        with self._cond:
            item, self._item = self._item, None
            if item is not None:
                self.counters.taken += 1
            return item

    def newest(self, item: T) -> T:
        """What to send now that the model is free: item, or a newer one that arrived meanwhile (item is dropped)."""
        with self._cond:
            if self._item is None:
                return item
            newer, self._item = self._item, None
            self.counters.dropped += 1  # item was counted as taken; newer goes in its place
            return newer

    def put_back(self, item: T) -> bool:
        """Returns an item the worker could not finish, unless a newer one arrived meanwhile (it wins)."""
        with self._cond:
            if self._item is not None:
                return False
            self._item = item
            self.counters.taken -= 1  # it will be taken again
            self._cond.notify_all()
            return True

    def pause(self) -> None:
        """Drops the waiting item without counting it and ignores puts until resume() (the session paused or
        is closing); atomic with put, so no frame sampled before a pause reaches the model after it."""
        with self._cond:
            self._accepting = False
            self._item = None

    def resume(self) -> None:
        with self._cond:
            self._accepting = True

    @property
    def full(self) -> bool:
        return self._item is not None


class FrameFifo(Generic[T]):
    """A plain unbounded FIFO with the slot's interface: the baseline `bench load --queue fifo` compares
    against, to show what keeping only the newest frame is worth."""

    def __init__(self, wakeup: threading.Condition) -> None:
        self._cond = wakeup
        self._items: deque[T] = deque()
        self._accepting = True
        self.counters = SlotCounters()

    def put(self, item: T) -> bool:
        with self._cond:
            if not self._accepting:
                return False
            self._items.append(item)
            self.counters.put += 1
            self._cond.notify_all()
        return False

    def take(self) -> T | None:
        with self._cond:
            if not self._items:
                return None
            self.counters.taken += 1
            return self._items.popleft()

    def newest(self, item: T) -> T:
        return item  # a FIFO keeps every frame, in order

    def put_back(self, item: T) -> bool:
        with self._cond:
            self._items.appendleft(item)
            self.counters.taken -= 1
            self._cond.notify_all()
        return True

    def pause(self) -> None:
        with self._cond:
            self._accepting = False
            self._items.clear()

    def resume(self) -> None:
        with self._cond:
            self._accepting = True

    @property
    def full(self) -> bool:
        return bool(self._items)
