"""A video jitter buffer that hands a frame to the decoder as soon as its last packet is in.

aiortc's JitterBuffer knows a frame is complete only when the first packet of the *next* frame arrives,
so every frame waits one frame interval (33 ms at 30 fps) before it is decoded. Senders mark the last
packet of each video frame with the RTP marker bit (RFC 3550 §5.1, and each payload format: RFC 7741
for VP8, RFC 6184 for H.264), so a frame whose packets are all in, marker included, is complete at once.
Without a marker (or with a gap) the next frame's first packet still closes it, as before.
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's buffer (same capacity, loss handling and PLI requests) with frames closed by the marker bit."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:  # a packet is missing: the frame is not complete yet
                return None
            if packets and packet.timestamp != packets[0].timestamp:  # the next frame began: close this one
                return self._take(packets, count)
            packets.append(packet)
            if packet.marker:  # the frame's last packet: complete now
                return self._take(packets, count + 1)
        return None

    def _take(self, packets: list, count: int) -> JitterFrame:
        self.remove(count)
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)


def use_marker_jitter_buffer(receiver: RTCRtpReceiver) -> None:
    """Gives a video receiver the marker-aware buffer; call before its first packet (at the track event)."""
    receiver._RTCRtpReceiver__jitter_buffer = MarkerJitterBuffer(capacity=512, is_video=True)  # aiortc internal
