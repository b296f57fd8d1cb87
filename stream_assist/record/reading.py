"""Reading a recording back: its header, and its frames paired with their timelines, up to where it ends or
was cut. A recording of another format version is refused with a one-line error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..assistant.journal import read_lines
from .recorder import FORMAT, VERSION, recording_paths

log = logging.getLogger(__name__)


@dataclass
class RecordedFrame:
    """One frame the model was shown, as recorded: the pixels, when (ms from the recording's start), and what the
    side file says of it (its timeline, prompt and answer; empty where the side file was cut first)."""

    n: int
    pts_ms: int
    rgb: np.ndarray
    frame_id: int = 0
    prompt: str = ""
    context: str = ""  # what the frames had in common (a task's step), asked before the image
    timeline: dict[str, float] = field(default_factory=dict)
    text: str = ""


@dataclass
class Recording:
    video: Path
    header: dict[str, Any]
    lines: list[dict[str, Any]]  # every line of the side file after the header, in order

    @property
    def frame_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == "frame"]

    def frames(self) -> Iterator[RecordedFrame]:
        """The frames in order, decoded; stops quietly at the end or at the cut of a cut file."""
        described = self.frame_lines
        try:
            container = av.open(str(self.video))
        except av.FFmpegError as e:
            raise ValueError(f"{self.video}: cannot open: {e.strerror}") from None
        with container:
            n = 0
            try:
                for frame in container.decode(video=0):
                    info = described[n] if n < len(described) else {}
                    pts_ms = int(frame.pts * frame.time_base * 1000) if frame.pts is not None else 0
                    yield RecordedFrame(n, pts_ms, frame.to_ndarray(format="rgb24"), info.get("frame_id", 0),
                                        info.get("prompt", ""), info.get("context", ""), info.get("timeline", {}),
                                        info.get("text", ""))
                    n += 1
            except av.FFmpegError as e:  # a cut or damaged file: what came before the damage is kept
                log.warning("%s: decoding stopped after %d frames: %s", self.video.name, n, e.strerror)


def open_recording(path: Path) -> Recording:
    """The recording named by its .mkv or .jsonl (or the name without a suffix); ValueError for the user when it is
    missing, not a stream-assist recording, or written by another format version."""
    video, side = recording_paths(path)
    if not video.is_file():
        raise ValueError(f"{video} does not exist")
    if not side.is_file():
        raise ValueError(f"{side} does not exist (a recording is an .mkv and its .jsonl side file)")
    lines = list(read_lines(side))  # the task journal's reader: a line cut by a kill is skipped
    header = lines[0] if lines else {}
    if header.get("format") != FORMAT:
        raise ValueError(f"{side} is not a stream-assist recording")
    if header.get("version") != VERSION:
        raise ValueError(f"{side} is a recording of format version {header.get('version')}; this stream-assist reads "
                         f"version {VERSION}")
    return Recording(video, header, lines[1:])
