"""The assistant's own voice is not the person's: the page says when it speaks and what, and speech heard
meanwhile counts only when it is a barge-in (long enough) and does not match what is being said."""

from __future__ import annotations

import re
import time
from collections import deque

TAIL_S = 0.3  # the room still rings (and speechSynthesis.cancel is asynchronous) just after the page stops


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


class EchoGuard:
    """What the page is saying or said lately; times are time.monotonic()."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._on = False
        self._off_at = float("-inf")
        self._said: deque[tuple[float, set[str]]] = deque(maxlen=8)

    def speaking(self, on: bool, text: str = "", now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if on and text:
            self._said.append((now, _words(text)))
        if self._on and not on:
            self._off_at = now
        self._on = on

    def is_speaking(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self._on or now - self._off_at < TAIL_S

    def is_echo(self, heard: str, now: float | None = None) -> bool:
        """True when every heard word is in something the page said within window_s (or is saying)."""
        now = time.monotonic() if now is None else now
        words = _words(heard)
        recent = self._on or now - self._off_at < self.window_s
        return bool(words) and recent and any(words <= said for _, said in self._said)
