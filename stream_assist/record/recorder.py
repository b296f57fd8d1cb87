"""Recording one session: the frames the model answered, with their timelines, and every message it sent.

Two files per session, named alike: `NAME.mkv` holds the frames the model was shown (H.264 at their decode
times, so players show them at the pace they came) with a subtitle track of its answers, and `NAME.jsonl`
holds a header, one line per frame (timeline, prompt, answer) and one per message (guidance, task events,
what the microphone heard). Matroska is written a cluster (one second) at a time and every JSON line is
flushed when written, so a killed server leaves files that play up to their last second. Encoding runs in
the recorder's own thread: the event loop and the model never wait for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import av
import numpy as np

from ..assistant.places import data_dir
from ..config import Config, RecordConfig
from ..inference.worker import Job

log = logging.getLogger(__name__)

FORMAT = "stream-assist-recording"
VERSION = 1
MS = Fraction(1, 1000)
SUBTITLE_MS = 3000  # how long a player shows each answer
SKIPPED = {"partial", "pong"}  # per-token text and clock samples: noise in a recording
# What a kill can lose: the open cluster, at most a second (each packet is handed to the file as it is written).
MATROSKA = {"cluster_time_limit": "1000", "flush_packets": "1"}


def recording_paths(path: Path) -> tuple[Path, Path]:
    """The video and side file of a recording named by either of them (or by its name without a suffix)."""
    base = path.with_suffix("") if path.suffix in (".mkv", ".jsonl") else path
    return base.with_suffix(".mkv"), base.with_suffix(".jsonl")


def recordings_dir(config: Config) -> Path:
    """`record.dir`, or `recordings/` in the data directory (beside the task journals) for a page's Record switch."""
    return Path(config.record.dir).expanduser() if config.record.dir else data_dir(config.assistant) / "recordings"


def start_recording(config: Config, name: str, source: str | None = None) -> Recorder:
    """A new recording named by the time and `name` (a session id)."""
    return Recorder(recordings_dir(config), f"{time.strftime('%Y%m%d-%H%M%S')}-{name}", config.record, source)


class Recorder:
    """One session's recording; `frame` and `message` are called on the loop and return at once."""

    def __init__(self, directory: Path, name: str, settings: RecordConfig, source: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.video_path, self.side_path = recording_paths(directory / name)
        self.max_bytes = int(settings.max_mb * 1e6)
        self.crf = settings.crf
        self.frames = 0
        self.full = False  # the size limit was reached: nothing more is written
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record")  # one writer: order kept
        self._container: av.container.OutputContainer | None = None
        self._video: Any = None
        self._subtitles: Any = None
        self._t0: float | None = None
        self._last_pts = -1
        self._side: TextIO | None = None  # opened with the first line: a session that never started leaves nothing
        self._header = {"event": "header", "format": FORMAT, "version": VERSION, "started": round(time.time(), 3),
                        "video": self.video_path.name, "source": source}
        self._done = False

    def frame(self, job: Job, text: str) -> None:
        """Records a frame the model answered, its timeline and the answer."""
        self._submit(self._write_frame, job.rgb, job.timeline.marks.get("decoded", time.time()), job.frame_id,
                     job.prompt, job.context, job.timeline.as_ms(), text)

    def message(self, kind: str, fields: dict[str, Any]) -> None:
        """Records a message the session sent (guidance, task events, what was heard)."""
        if kind not in SKIPPED:
            self._submit(self._line, {"event": "message", "t": round(time.time(), 3), "kind": kind, "fields": fields})

    def close(self) -> None:
        """Finishes both files (blocking until the writer is done)."""
        self._submit(self._finish, "closed")
        self._thread.shutdown(wait=True)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._thread.submit(self._guarded, fn, *args)
        except RuntimeError:  # closed: a late message after the session ended
            pass

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a full disk must cost the recording, never the session
            log.exception("recording %s failed; it stops here", self.video_path.name)
            self.full = True

    def _line(self, record: dict[str, Any]) -> None:
        if self._done:
            return
        if self._side is None:
            self._side = open(self.side_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by _finish
            self._side.write(json.dumps(self._header, ensure_ascii=False) + "\n")
        self._side.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")
        self._side.flush()

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(str(self.video_path), "w", format="matroska", options=MATROSKA)
        self._container.metadata["stream_assist_recording"] = str(VERSION)
        video = self._container.add_stream("libx264")
        video.width, video.height, video.pix_fmt, video.time_base = width, height, "yuv420p", MS
        video.codec_context.time_base = MS  # frames come when the model answers, not at a frame rate
        # zerolatency: no frame held back in the encoder, so what is written is what a kill leaves
        video.codec_context.options = {"preset": "superfast", "tune": "zerolatency", "crf": str(self.crf), "g": "30"}
        self._video = video
        self._subtitles = self._container.add_mux_stream("subrip")  # the answers, as text a player shows
        self._subtitles.time_base = MS

    def _write_frame(self, rgb: np.ndarray, decoded: float, frame_id: int, prompt: str, context: str,
                     timeline: dict, text: str) -> None:
        if self.full:
            return
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
            self._t0 = decoded
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if (frame.width, frame.height) != (self._video.width, self._video.height):  # the source changed size
            frame = frame.reformat(self._video.width, self._video.height)
        pts = max(round((decoded - self._t0) * 1000), self._last_pts + 1)
        frame.pts, frame.time_base, self._last_pts = pts, MS, pts
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        if text:
            packet = av.Packet(text.encode("utf-8"))
            packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base = (self._subtitles, pts, pts,
                                                                                         SUBTITLE_MS, MS)
            self._container.mux(packet)
        self._line({"event": "frame", "n": self.frames, "pts_ms": pts, "frame_id": frame_id, "prompt": prompt,
                    "context": context, "timeline": timeline, "text": text})
        self.frames += 1
        if self.video_path.stat().st_size >= self.max_bytes:
            log.warning("recording %s reached %.0f MB; it stops here", self.video_path.name, self.max_bytes / 1e6)
            self._finish("size limit")

    def _finish(self, reason: str) -> None:
        if self._container is not None:
            for packet in self._video.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        if self._side is not None and not self._done:
            self._line({"event": "end", "reason": reason, "frames": self.frames})
            self._side.close()
        self._done = True
        self.full = True
