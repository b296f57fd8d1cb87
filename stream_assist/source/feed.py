"""Keeps a camera source playing into the pipeline: opens it, hands its video track on, and when the stream
drops or a file ends, opens it again (with back-off for a stream; at once for a looping file).

The state (connecting, live, retrying, ended) with the last error and the reconnect count is what /health
and the pages show; each change is also handed to `on_state`, which tells every page watching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamTrack

from .player import SourceError, open_player
from .spec import SourceSpec

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25


@dataclass
class SourceState:
    """What the source is doing now, for /health, /metrics and the page."""

    url: str
    camera: str  # the source's kind: rtsp | http | hls | device | file
    state: str = "connecting"  # connecting | live | retrying | ended
    since: float = 0.0  # time.time() of the last change
    opened: int = 0  # times it was opened (1 + reconnects + loops)
    reconnects: int = 0  # times it dropped and was opened again
    error: str = ""  # why it last dropped or could not be opened
    retry_in_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "camera": self.camera, "state": self.state, "since": round(self.since, 3),
                "opened": self.opened, "reconnects": self.reconnects, "error": self.error,
                "retry_in_s": self.retry_in_s}


def backoff(attempt: int, cap: float) -> float:
    """Seconds before reopening after `attempt` failures in a row: 0.25, 0.5, 1 … up to cap."""
    return min(cap, FIRST_BACKOFF_S * 2 ** max(0, attempt - 1))


class SourceFeed:
    """Runs one source for the life of the server; `watch(track)` samples a track into the pipeline and returns
    the task that ends with the track."""

    def __init__(self, spec: SourceSpec, watch: Callable[[MediaStreamTrack], asyncio.Task],
                 on_state: Callable[[dict[str, Any]], None], max_backoff_s: float) -> None:
        self.spec = spec
        self.watch = watch
        self.on_state = on_state
        self.max_backoff_s = max_backoff_s
        self.state = SourceState(spec.shown, spec.kind, since=time.time())
        self._player: MediaPlayer | None = None

    def _set(self, state: str, error: str = "", retry_in_s: float | None = None) -> None:
        self.state.state, self.state.error, self.state.retry_in_s = state, error, retry_in_s
        self.state.since = time.time()
        self.on_state(self.state.as_dict())

    async def run(self) -> None:
        """Opens, plays and reopens the source until cancelled (or until a file without --loop ends)."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                self._player, track = await loop.run_in_executor(None, open_player, self.spec)
            except SourceError as e:
                failures += 1
                await self._wait(str(e), failures)
                continue
            self.state.opened += 1
            if self.state.opened > 1 and self.spec.live:
                self.state.reconnects += 1
            failures = 0
            self._set("live")
            log.info("source %s is live", self.spec.shown)
            try:
                await self.watch(track)
            finally:
                await loop.run_in_executor(None, self._stop_player)
            if not self.spec.live:
                if not self.spec.loop:
                    self._set("ended", "the file ended")
                    log.info("source %s ended", self.spec.shown)
                    return
                continue  # a looping file starts again at once
            failures += 1
            await self._wait("the stream stopped", failures)

    async def _wait(self, error: str, failures: int) -> None:
        delay = backoff(failures, self.max_backoff_s)
        if failures == 1 or failures % 20 == 0:  # a camera that is away for hours must not fill the log
            log.warning("source %s: %s; trying again in %.2g s", self.spec.shown, error, delay)
        self._set("retrying", error, delay)
        await asyncio.sleep(delay)
        self._set("connecting", error)

    def _stop_player(self) -> None:
        """Stops the player's thread and closes its container (may block up to a read timeout)."""
        player, self._player = self._player, None
        if player is not None and player.video is not None:
            player.video.stop()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop_player)
