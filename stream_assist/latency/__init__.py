"""Honest latency: each frame's per-stage timeline, its capture time from RTP and RTCP sender reports, and the
pixel-written clock that proves it. Imported by every stage; imports none of them."""
