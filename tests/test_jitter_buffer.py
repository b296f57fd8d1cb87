"""The marker-aware jitter buffer against aiortc's: frames are handed over on their last packet, not on
the next frame's first, and loss still holds a frame back."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from stream_assist.video.jitter_buffer import MarkerJitterBuffer


def packet(seq: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    p = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=timestamp)
    p._data = data
    return p


def feed(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, bytes | None]]:
    """What the buffer hands over after each packet: (packet index, frame data or None)."""
    out = []
    for i, p in enumerate(packets):
        _, frame = buffer.add(p)
        out.append((i, frame.data if frame else None))
    return out


FRAMES = [packet(10, 3000, b"a1"), packet(11, 3000, b"a2", marker=True),
          packet(12, 6000, b"b1", marker=True), packet(13, 9000, b"c1")]


def test_a_frame_is_handed_over_on_its_marker_packet_one_frame_sooner_than_aiortc() -> None:
    ours = feed(MarkerJitterBuffer(capacity=64, is_video=True), FRAMES)
    theirs = feed(JitterBuffer(capacity=64, is_video=True), FRAMES)
    assert [x for x in ours if x[1]] == [(1, b"a1a2"), (2, b"b1")]
    assert [x for x in theirs if x[1]] == [(2, b"a1a2"), (3, b"b1")]  # each waits for the next frame


def test_without_a_marker_the_next_frame_still_closes_it() -> None:
    packets = [packet(1, 100, b"x1"), packet(2, 100, b"x2"), packet(3, 200, b"y1")]
    assert [x for x in feed(MarkerJitterBuffer(capacity=64, is_video=True), packets) if x[1]] == [(2, b"x1x2")]


def test_a_missing_packet_holds_the_frame_until_it_arrives() -> None:
    packets = [packet(20, 500, b"p1"), packet(22, 500, b"p3", marker=True), packet(21, 500, b"p2")]
    assert feed(MarkerJitterBuffer(capacity=64, is_video=True), packets) == [(0, None), (1, None), (2, b"p1p2p3")]
