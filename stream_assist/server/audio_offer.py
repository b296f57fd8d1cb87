"""An offer whose microphone uses a codec the server cannot decode still gets its video session: that audio
section is taken out before aiortc sees the offer (aiortc refuses the whole offer otherwise) and answered as
rejected (port 0), as JSEP lets an answerer decline one media section."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc.codecs import CODECS

DECODABLE = {c.mimeType.split("/", 1)[1].lower() for c in CODECS["audio"]}


@dataclass(frozen=True)
class Declined:
    index: int  # position among the offer's m= sections
    mid: str
    media_line: str  # "m=audio 9 UDP/TLS/RTP/SAVPF 111"


def _sections(sdp: str) -> tuple[str, list[str]]:
    parts = re.split(r"(?=^m=)", sdp, flags=re.M)
    return parts[0], parts[1:]


def _undecodable(section: str) -> bool:
    names = {m.lower() for m in re.findall(r"^a=rtpmap:\d+ ([^/\s]+)", section, flags=re.M)}
    return section.startswith("m=audio") and not names & DECODABLE


def decline_undecodable_audio(sdp: str) -> tuple[str, list[Declined]]:
    """The offer without audio sections that offer no codec aiortc decodes, and what was taken out."""
    session, media = _sections(sdp)
    declined = []
    for i, section in enumerate(media):
        if _undecodable(section):
            mid = re.search(r"^a=mid:(\S+)", section, flags=re.M)
            declined.append(Declined(i, mid.group(1) if mid else "", section.splitlines()[0]))
    if not declined:
        return sdp, []
    for d in declined:
        session = re.sub(rf"^(a=group:BUNDLE.*) {re.escape(d.mid)}\b", r"\1", session, flags=re.M)
    kept = [s for i, s in enumerate(media) if i not in {d.index for d in declined}]
    return session + "".join(kept), declined


def answer_with_declined(answer: str, declined: list[Declined]) -> str:
    """Puts each declined section back into the answer, in its place, with port 0."""
    if not declined:
        return answer
    session, media = _sections(answer)
    for d in sorted(declined, key=lambda d: d.index):
        proto_and_formats = d.media_line.split(" ", 2)[2]
        media.insert(d.index, f"m=audio 0 {proto_and_formats}\r\nc=IN IP4 0.0.0.0\r\na=mid:{d.mid}\r\na=inactive\r\n")
    return session + "".join(media)
