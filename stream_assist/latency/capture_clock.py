"""When was a received frame captured, in the sender's wall clock? From its RTP time and RTCP sender reports.

A browser stamps each video frame's RTP timestamp (90 kHz) from its capture time, and its RTCP sender
reports pair an RTP timestamp with the sender's wall clock (NTP). aiortc keeps neither where we can see
it: it rebases `frame.pts` to the first frame's RTP timestamp and exposes sender reports only as stats.
So this module watches the receiver's RTCP for sender reports and reads the rebasing origin, and maps a
frame's pts back: capture = sr_wallclock + (frame_rtp − sr_rtp) / 90 kHz. The result is in the browser's
wall clock (Date.now()-like milliseconds), so the page can subtract it from its own times directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket

log = logging.getLogger(__name__)

NTP_UNIX_OFFSET_S = 2208988800  # 1900-01-01 to 1970-01-01
VIDEO_CLOCK_HZ = 90000


def ntp_to_unix_ms(ntp: int) -> float:
    """64-bit NTP timestamp (seconds since 1900 << 32 | fraction) to Unix milliseconds."""
    return ((ntp >> 32) - NTP_UNIX_OFFSET_S) * 1000.0 + (ntp & 0xFFFFFFFF) * 1000.0 / 2**32


def rtp_diff(a: int, b: int) -> int:
    """a − b for 32-bit RTP timestamps, taking wrap-around into account."""
    d = (a - b) & 0xFFFFFFFF
    return d - 2**32 if d >= 2**31 else d


@dataclass
class SenderReport:
    rtp: int
    wallclock_ms: float


class CaptureClock:
    """Estimates capture times of one receiver's frames; None until a sender report has arrived."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self.report: SenderReport | None = None
        handle = receiver._handle_rtcp_packet  # aiortc internal: where RTCP for this receiver arrives

        async def watch(packet) -> None:  # noqa: ANN001 - aiortc RTCP packet
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self.report = SenderReport(info.rtp_timestamp, ntp_to_unix_ms(info.ntp_timestamp))
            await handle(packet)

        receiver._handle_rtcp_packet = watch

    def _origin(self) -> int | None:
        mapper = getattr(self.receiver, "_RTCRtpReceiver__timestamp_mapper", None)  # aiortc's pts rebasing
        return getattr(mapper, "_origin", None)

    def capture_ms(self, pts: int | None) -> float | None:
        """Sender wall-clock ms at which the frame with this pts was captured."""
        origin = self._origin()
        if self.report is None or origin is None or pts is None:
            return None
        rtp = (origin + pts) & 0xFFFFFFFF
        return self.report.wallclock_ms + rtp_diff(rtp, self.report.rtp) * 1000.0 / VIDEO_CLOCK_HZ
