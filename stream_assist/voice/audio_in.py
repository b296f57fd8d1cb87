"""Consumes a WebRTC audio track without pause (aiortc queues what nobody reads) as 16 kHz mono s16 PCM."""

from __future__ import annotations

from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 16000


def to_pcm16k(resampler: av.AudioResampler, frame: av.AudioFrame) -> bytes:
    """One decoded frame (any rate and layout) as 16 kHz mono s16 bytes."""
    return b"".join(bytes(out.planes[0])[:out.samples * 2] for out in resampler.resample(frame))


async def drain(track: MediaStreamTrack, sink: Callable[[bytes], None]) -> int:
    """Hands every frame's PCM to sink until the track ends; returns the frames received."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    frames = 0
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return frames
        frames += 1
        sink(to_pcm16k(resampler, frame))
