"""The frame sampler: drains a WebRTC video track without pause and hands on only the newest frame.

aiortc queues decoded frames without limit, so a reader that waits on slow work makes latency and
memory grow (aiortc issues #1192, #554). Here one task does nothing but `recv()` and keep the newest
frame; the consumer takes whatever is newest when it is ready, at most `sample_fps` times a second.
It also turns the decoded frame into RGB at the model's size in one libswscale pass.

Sampling is decided when a frame arrives (not by a timer), so a sampled frame goes on at once: with a
timer the frame picked would already be up to one frame interval old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


@dataclass
class SampledFrame:
    frame_id: int  # 1-based count of frames received on this track
    frame: av.VideoFrame
    decoded_at: float  # time.time() when recv() returned it


@dataclass
class SampleClock:
    """Which arriving frames to sample: at most one per interval on average, on a grid of due times.

    A frame may come up to a quarter interval before its due time, or late, and still be taken without
    moving the grid; measuring from the last frame taken instead skips a frame that network or decode
    jitter brought a little early, and hands the model one a whole interval older. Each frame taken moves
    the due time on by an interval (by more after a late frame: never under half an interval after it).
    """

    interval: float
    _due: float | None = None

    def admit(self, t: float) -> bool:
        if self._due is not None and t < self._due - self.interval / 4:
            return False
        self._due = t + self.interval if self._due is None else max(self._due + self.interval,
                                                                    t + self.interval * 3 / 4)
        return True


@dataclass
class SamplerCounters:
    received: int = 0
    sampled: int = 0  # handed on; received - sampled were replaced before the consumer was ready
    width: int = 0  # of the last frame received: what the browser sends
    height: int = 0


class FrameSampler:
    """Keeps the newest decoded frame of a track and yields frames no faster than sample_fps."""

    def __init__(self, track: MediaStreamTrack, sample_fps: float) -> None:
        self.track = track
        self.interval = 1.0 / sample_fps
        self.counters = SamplerCounters()
        self._latest: SampledFrame | None = None
        self._ready = asyncio.Event()
        self._ended = False

    async def drain(self) -> None:
        """Receives frames until the track ends; never waits on anything but the track."""
        try:
            while True:
                frame = await self.track.recv()
                self.counters.received += 1
                self.counters.width, self.counters.height = frame.width, frame.height
                self._latest = SampledFrame(self.counters.received, frame, time.time())
                self._ready.set()
        except MediaStreamError:
            pass
        finally:
            self._ended = True
            self._ready.set()

    async def frames(self) -> AsyncIterator[SampledFrame]:
        """Yields the newest frame as soon as it arrives, if the SampleClock admits it (decided on arrival, so a
        yielded frame is never left waiting)."""
        clock = SampleClock(self.interval)
        while True:
            await self._ready.wait()
            self._ready.clear()
            item, self._latest = self._latest, None
            if item is None:
                if self._ended:
                    return
                continue
            if not clock.admit(item.decoded_at):  # too soon: wait for a later frame
                continue
            self.counters.sampled += 1
            yield item


def fit_size(width: int, height: int, max_edge: int) -> tuple[int, int]:
    """Size with the longest edge at most max_edge, aspect kept, both sides even (for YUV) and ≥ 2."""
    scale = min(1.0, max_edge / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def to_rgb(frame: av.VideoFrame, max_edge: int) -> np.ndarray:
    """The frame as an RGB uint8 array at the model's size (conversion and resize in one pass)."""
    width, height = fit_size(frame.width, frame.height, max_edge)
    return frame.to_ndarray(format="rgb24", width=width, height=height)
