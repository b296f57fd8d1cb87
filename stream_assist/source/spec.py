"""What `--source` names: a stream URL, a local webcam, or a file; checked before anything is opened.

Each kind gets the PyAV (FFmpeg) format and options it needs: RTSP over TCP (a lost UDP packet is a
broken frame), a short analysis of a stream's start (so a reconnect is quick), v4l2 for a `/dev/video*`
device; a source that goes silent ends its read after player.READ_TIMEOUT_S. The URL as shown in logs,
/health and the page has its password removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
# FFmpeg reads 5 s of a stream by default to guess its parameters (2 s from an RTSP camera at 15 fps); the video's
# parameters come with its first keyframe, and every reconnect waits for this.
ANALYZE_US = "300000"


@dataclass(frozen=True)
class SourceSpec:
    """One camera source: where it is, what kind, and how PyAV opens it."""

    url: str  # what PyAV opens (a path for a file or device)
    kind: str  # rtsp | http | hls | device | file
    format: str | None = None  # FFmpeg input format when it cannot be guessed (v4l2)
    options: dict[str, str] = field(default_factory=dict)
    loop: bool = False  # a file starts again when it ends

    @property
    def live(self) -> bool:
        """A source that runs on its own clock (a file is paced at its timestamps instead)."""
        return self.kind != "file"

    @property
    def shown(self) -> str:
        """The URL without a password, for logs, /health and the page."""
        return redact(self.url)


def redact(url: str) -> str:
    """The URL with any user:password@ removed (an IP camera's URL often carries its login)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def parse_source(text: str, loop: bool = False) -> SourceSpec:
    """The source a `--source` value names; ValueError with a one-line message for the user when it cannot be one."""
    text = text.strip()
    if not text:
        raise ValueError("--source is empty")
    scheme = urlsplit(text).scheme.lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) else ""
    if loop and scheme:
        raise ValueError("--loop is for a file source, not a stream")
    if scheme in ("rtsp", "rtsps"):
        if not urlsplit(text).hostname:
            raise ValueError(f"source {redact(text)!r} has no host")
        return SourceSpec(text, "rtsp", options={"rtsp_transport": "tcp", "analyzeduration": ANALYZE_US})
    if scheme in ("http", "https"):
        if not urlsplit(text).hostname:
            raise ValueError(f"source {redact(text)!r} has no host")
        kind = "hls" if urlsplit(text).path.lower().endswith(".m3u8") else "http"
        return SourceSpec(text, kind, options={"analyzeduration": ANALYZE_US})
    if scheme:
        raise ValueError(f"source scheme {scheme!r} is not one of {', '.join(STREAM_SCHEMES)} (or a file, or "
                         "/dev/videoN)")
    path = Path(text)
    if text.startswith("/dev/video"):
        if loop:
            raise ValueError("--loop is for a file source, not a webcam")
        if not path.exists():
            raise ValueError(f"no webcam at {text}")
        return SourceSpec(text, "device", format="v4l2")
    if not path.is_file():
        raise ValueError(f"source file {text} does not exist")
    return SourceSpec(str(path.resolve()), "file", loop=loop)
