"""Consumes a WebRTC audio track without pause (aiortc queues what nobody reads) as 16 kHz mono s16 PCM, and
hands each audio packet to the decoder as it arrives."""

from __future__ import annotations

from collections.abc import Callable

import av
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

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


class PacketJitterBuffer(JitterBuffer):
    """Each audio RTP packet is a whole frame: pass it on at once, and skip a missing one rather than wait.

    aiortc's audio buffer holds 4 frames back and closes each only when the next arrives (~100 ms at 20 ms
    packets): right for playing sound smoothly, only delay for a recogniser, which a lost packet hardly harms.
    """

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is not None:
                self.remove(count + 1)
                return JitterFrame(data=packet._data, timestamp=packet.timestamp)
        return None


def use_packet_jitter_buffer(receiver: RTCRtpReceiver) -> None:
    """Gives an audio receiver the packet-at-once buffer; call before its first packet (at the track event)."""
    receiver._RTCRtpReceiver__jitter_buffer = PacketJitterBuffer(capacity=16)  # aiortc internal, as video/ does
