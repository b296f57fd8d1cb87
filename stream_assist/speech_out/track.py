"""The outgoing audio track: the server's speech as 20 ms frames at 48 kHz (aiortc encodes them as Opus), and
silence between utterances. It keeps, frame for frame, what it sent at 16 kHz as the echo reference.

Everything here runs on the event loop: the speech thread hands audio over with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from .reference import EchoReference
from .synth import REFERENCE_RATE, TRACK_RATE

FRAME = TRACK_RATE // 50  # 20 ms, what a browser's Opus decoder is used to
RATIO = TRACK_RATE // REFERENCE_RATE


@dataclass(eq=False)
class Utterance:
    """One thing said: its text, what it is about (a frame id, or None when asked), and when it happened."""

    text: str
    frame_id: int | None
    handed_at: float  # time.time() when the speaker was given the text
    on_start: Callable[[Utterance], None]
    on_end: Callable[[Utterance, str], None]  # (utterance, "done" | "stopped")
    started_at: float | None = None  # time.time() when its first sample left in a frame
    complete: bool = False  # every piece has been queued (or synthesis ended)
    ended: bool = False
    pieces: list[str] = field(default_factory=list)

    def finish(self, how: str) -> None:
        if not self.ended:
            self.ended = True
            self.on_end(self, how)


@dataclass
class _Segment:
    utterance: Utterance
    track: np.ndarray  # 48 kHz, a multiple of RATIO samples
    reference: np.ndarray  # 16 kHz, len(track) // RATIO
    offset: int = 0  # samples of track already sent


class SpeechTrack(MediaStreamTrack):
    """A live audio track whose frames carry queued speech, else silence; stop() silences the very next frame."""

    kind = "audio"

    def __init__(self, reference: EchoReference) -> None:
        super().__init__()
        self.reference = reference
        self._queue: deque[_Segment] = deque()
        self._start: float | None = None
        self._pts = 0
        self.frames_with_speech = 0

    def queue(self, utterance: Utterance, track: np.ndarray, reference: np.ndarray) -> None:
        """Appends one piece of an utterance (on the loop)."""
        if utterance.ended:
            return
        n = len(track) // RATIO
        ref = np.zeros(n, np.int16)
        ref[:min(n, len(reference))] = reference[:n]
        self._queue.append(_Segment(utterance, track[:n * RATIO], ref))

    def completed(self, utterance: Utterance) -> None:
        """Every piece of utterance is queued: it ends when its last sample has been sent."""
        utterance.complete = True
        if not any(s.utterance is utterance for s in self._queue):
            utterance.finish("done")

    def stop(self) -> list[Utterance]:
        """Drops everything queued: the next frame is silence. Returns the utterances cut short."""
        cut = list(dict.fromkeys(s.utterance for s in self._queue))
        self._queue.clear()
        return cut

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def _fill(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        out, ref = np.zeros(FRAME, np.int16), np.zeros(FRAME // RATIO, np.int16)
        filled = 0
        while filled < FRAME and self._queue:
            seg = self._queue[0]
            if seg.utterance.started_at is None:
                seg.utterance.started_at = now
                seg.utterance.on_start(seg.utterance)
            take = min(FRAME - filled, len(seg.track) - seg.offset)
            out[filled:filled + take] = seg.track[seg.offset:seg.offset + take]
            at, n = seg.offset // RATIO, take // RATIO
            ref[filled // RATIO:filled // RATIO + n] = seg.reference[at:at + n]
            filled += take
            seg.offset += take
            if seg.offset >= len(seg.track):
                self._queue.popleft()
                if seg.utterance.complete and not any(s.utterance is seg.utterance for s in self._queue):
                    seg.utterance.finish("done")
        if filled:
            self.frames_with_speech += 1
        return out, ref

    async def recv(self) -> av.AudioFrame:
        self._start = await sample_due(self._start, self._pts, TRACK_RATE)
        samples, reference = self._fill(time.time())
        self.reference.sent(reference)
        frame = audio_frame(samples, TRACK_RATE, self._pts)
        self._pts += FRAME
        return frame


async def sample_due(start: float | None, pts: int, rate: int) -> float:
    """Waits until sample `pts` of a stream that began at loop time `start` (None: now) is due; returns the start.
    A sender's sample clock, so audio leaves in real time whatever asks for it."""
    loop = asyncio.get_running_loop()
    start = loop.time() if start is None else start
    wait = start + pts / rate - loop.time()
    if wait > 0:
        await asyncio.sleep(wait)  # the sample clock, not synchronisation
    return start


def audio_frame(samples: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
    """Mono s16 samples as a frame stamped in samples of `rate`."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame
