"""Opening a source with aiortc's MediaPlayer (PyAV underneath): its video track, or a one-line reason why not.

MediaPlayer runs FFmpeg's demuxer and decoder in its own thread and hands decoded frames to an aiortc
track, the same kind of track a browser's camera arrives as, so the session's sampler takes either.
Opening blocks (network, device), so callers run it in a thread.
"""

from __future__ import annotations

import errno

import av
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamTrack

from .spec import SourceSpec

OPEN_TIMEOUT_S = 5.0  # connecting, and any one read after it: a stalled source ends instead of hanging
READ_TIMEOUT_S = 5.0


class SourceError(Exception):
    """The source cannot be opened or decoded; the message is one line for the user."""


def open_player(spec: SourceSpec) -> tuple[MediaPlayer, MediaStreamTrack]:
    """Opens the source and returns the player and its video track (blocking; no thread started yet)."""
    try:
        player = MediaPlayer(spec.url, format=spec.format, options=dict(spec.options),
                             timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except av.FFmpegError as e:
        raise SourceError(f"cannot open {spec.shown}: {_reason(e)}") from None
    except OSError as e:  # a device's open() itself
        raise SourceError(f"cannot open {spec.shown}: {e.strerror or e}") from None
    if player.video is None:
        raise SourceError(f"{spec.shown} has no video stream")
    return player, player.video


def probe(spec: SourceSpec) -> tuple[int, int, str]:
    """Opens the source and decodes one frame: its width, height and codec; SourceError when it cannot. The start
    of `serve --source` runs this so a wrong URL or an undecodable codec is an error at once, not a retry loop."""
    try:
        container = av.open(spec.url, format=spec.format, options=dict(spec.options),
                            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except av.FFmpegError as e:
        raise SourceError(f"cannot open {spec.shown}: {_reason(e)}") from None
    except OSError as e:
        raise SourceError(f"cannot open {spec.shown}: {e.strerror or e}") from None
    try:
        if not container.streams.video:
            raise SourceError(f"{spec.shown} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        try:
            frame = next(container.decode(stream), None)
        except av.FFmpegError as e:
            raise SourceError(f"{spec.shown}: cannot decode its {codec} video: {_reason(e)}") from None
        if frame is None:
            raise SourceError(f"{spec.shown}: no video frame could be decoded ({codec})")
        return frame.width, frame.height, codec
    finally:
        container.close()


def _reason(e: av.FFmpegError) -> str:
    """FFmpeg's reason without the URL it appends (which may carry a password)."""
    if e.errno == errno.EBUSY:
        return "the device is busy (another program has it open)"
    return e.strerror or type(e).__name__
