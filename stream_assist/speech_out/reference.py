"""What the server's voice sent, in order, for the echo canceller: the far end of the microphone's echo.

The track appends 20 ms at 16 kHz for every frame it sends (silence included) and the microphone side takes as
many samples as it receives, so the two streams advance together in real time; the canceller finds the echo's
delay (network, playout, the room) itself. Both ends run on the event loop.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

MAX_AHEAD = 50  # frames (1 s) kept for a microphone that has not caught up; older ones are dropped
LOUD = 64  # a frame whose peak is above this counts as sound (the track's silence is exact zeros)


class EchoReference:
    """A FIFO of sent 16 kHz samples, and when the voice last made sound."""

    def __init__(self) -> None:
        self._frames: deque[np.ndarray] = deque(maxlen=MAX_AHEAD)
        self._head = np.zeros(0, np.int16)  # part of a frame already handed out
        self.sound_at = float("-inf")  # time.monotonic() of the last frame with sound
        self.started = False  # the track has sent at least one frame

    def sent(self, samples: np.ndarray) -> None:
        self.started = True
        self._frames.append(samples)
        if len(samples) and int(np.abs(samples).max()) > LOUD:
            self.sound_at = time.monotonic()

    def take(self, n: int) -> np.ndarray:
        """The next n samples that went out (zeros where the track had not yet sent them)."""
        out = np.zeros(n, np.int16)
        got = 0
        while got < n:
            if not len(self._head):
                if not self._frames:
                    break
                self._head = self._frames.popleft()
            step = min(n - got, len(self._head))
            out[got:got + step] = self._head[:step]
            self._head = self._head[step:]
            got += step
        return out
