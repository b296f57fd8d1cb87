"""Session state kept by resume token after its connection closes, for `server.resume_s`, then freed.

A page that reconnects (Wi-Fi handover, a dropped peer connection) offers its token again and gets its
state back; one that never returns costs nothing after the timer fires.
"""

from __future__ import annotations

import asyncio
import logging

from .session_state import SessionState

log = logging.getLogger(__name__)

MAX_KEPT = 1024  # states held at once, whatever the churn of sessions within resume_s


class ResumeRegistry:
    """Closed sessions' state by resume token, each freed by its own timer on the event loop."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._kept: dict[str, tuple[SessionState, asyncio.TimerHandle]] = {}
        self.freed = 0  # states dropped because nobody came back for them in time

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, token: str) -> bool:
        return token in self._kept

    def keep(self, token: str, state: SessionState) -> None:
        """Holds state for keep_s seconds (a newer state for the same token replaces it and restarts the time)."""
        self._drop(token)
        while len(self._kept) >= MAX_KEPT:  # a flood of short sessions must not grow memory: the oldest goes first
            self._drop(next(iter(self._kept)))
        timer = asyncio.get_running_loop().call_later(self.keep_s, self._expire, token)
        self._kept[token] = (state, timer)

    def take(self, token: str) -> SessionState | None:
        """The state kept for token, removed from the registry; None when there is none (unknown or expired)."""
        entry = self._kept.pop(token, None)
        if entry is None:
            return None
        entry[1].cancel()
        return entry[0]

    def clear(self) -> None:
        """Forgets everything and cancels the timers (server shutdown)."""
        for token in list(self._kept):
            self._drop(token)

    def _drop(self, token: str) -> None:
        entry = self._kept.pop(token, None)
        if entry is not None:
            entry[1].cancel()

    def _expire(self, token: str) -> None:
        self._kept.pop(token, None)
        self.freed += 1
        log.info("resume state freed after %.0f s unclaimed (%d kept)", self.keep_s, len(self._kept))
