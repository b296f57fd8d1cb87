"""A synthetic client: an aiortc peer that streams generated camera video (and, if asked, a microphone that
plays given speech) and collects the server's messages.

Used by the tests and by `stream-assist bench load` / `bench voice`; it speaks the protocol in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack

MIC_RATE, MIC_FRAME = 48000, 960  # what a browser's Opus microphone delivers: 48 kHz, 20 ms frames


MAX_VIDEO_FRAMES = 300  # a video camera plays this many frames of its file, over and over


def video_pictures(path: Path, width: int, height: int) -> list[np.ndarray]:
    """The first frames of a video file (a recording's .mkv, or any video) as RGB at the camera's size."""
    try:
        with av.open(str(path)) as container:
            pictures = [f.to_ndarray(format="rgb24", width=width, height=height)
                        for _, f in zip(range(MAX_VIDEO_FRAMES), container.decode(video=0), strict=False)]
    except av.FFmpegError as e:
        raise ValueError(f"{path}: cannot read its video: {e.strerror}") from None
    if not pictures:
        raise ValueError(f"{path} has no video frames")
    return pictures


class SyntheticCamera(VideoStreamTrack):
    """A colour pattern at a given frame rate that moves unless `still` is set; or, given a video file (a
    recording, say), its frames over and over, so a benchmark runs on real scenes."""

    def __init__(self, width: int = 320, height: int = 240, fps: float = 30.0, video: Path | None = None) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.pictures = video_pictures(video, width, height) if video is not None else None
        self.count = 0
        self.still = False
        self.interval = 1.0 / fps
        self._start: float | None = None
        self._pts = 0

    async def _next_timestamp(self) -> tuple[int, Fraction]:
        """Paces frames at this camera's rate (aiortc's own pacing is fixed at 30 fps)."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += int(self.interval * 90000)
            wait = self._start + self._pts / 90000 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # a camera's frame clock, not synchronisation
        return self._pts, Fraction(1, 90000)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self._next_timestamp()
        if not self.still:
            self.count += 1
        if self.pictures is not None:
            frame = av.VideoFrame.from_ndarray(self.pictures[self.count % len(self.pictures)], format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            return frame
        x = np.arange(self.width, dtype=np.uint16)[None, :]
        y = np.arange(self.height, dtype=np.uint16)[:, None]
        img = np.zeros((self.height, self.width, 3), np.uint8)
        img[..., 0] = (x + self.count * 4) % 256
        img[..., 1] = (y + self.count * 2) % 256
        img[..., 2] = ((x + y) // 2) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class SyntheticMicrophone(MediaStreamTrack):
    """A microphone that sends silence, or the speech handed to play(), in real time (48 kHz mono, 20 ms)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[tuple[np.ndarray, asyncio.Event]] = []
        self._offset = 0
        self._start: float | None = None
        self._pts = 0

    def play(self, samples: np.ndarray) -> asyncio.Event:
        """Queues int16 mono samples at 48 kHz; the event is set when their last frame has been sent."""
        done = asyncio.Event()
        self._queue.append((samples.astype(np.int16), done))
        return done

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._pts / MIC_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # a microphone's sample clock, not synchronisation
        chunk = np.zeros(MIC_FRAME, np.int16)
        if self._queue:
            samples, done = self._queue[0]
            piece = samples[self._offset:self._offset + MIC_FRAME]
            chunk[:len(piece)] = piece
            self._offset += MIC_FRAME
            if self._offset >= len(samples):
                self._queue.pop(0)
                self._offset = 0
                done.set()
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = MIC_RATE, self._pts, Fraction(1, MIC_RATE)
        self._pts += MIC_FRAME
        return frame


def read_speech(path: str) -> np.ndarray:
    """A sound file as int16 mono samples at the microphone's 48 kHz."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=MIC_RATE)
    with av.open(path) as container:
        pieces = [out.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                  for out in resampler.resample(frame)]
    pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(pieces).astype(np.int16)


@dataclass
class Client:
    pc: RTCPeerConnection
    channel: RTCDataChannel
    camera: SyntheticCamera | None  # None: a page watching the server's camera source
    microphone: SyntheticMicrophone | None = None
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    ready: dict = field(default_factory=dict)  # the server's unasked `status: ready` (session id, presets)

    async def next_message(self, kind: str | tuple[str, ...], timeout: float = 120.0) -> dict:
        """The next message of the given type(s) (messages of other types are skipped); fails on timeout."""
        kinds = (kind,) if isinstance(kind, str) else kind

        async def find() -> dict:
            while True:
                msg = await self.messages.get()
                if msg.get("type") in kinds:
                    return msg
        return await asyncio.wait_for(find(), timeout)

    async def collect(self, kind: str, seconds: float) -> list[dict]:
        """The messages of this type that arrive within `seconds` (a benchmark's measured window)."""
        got: list[dict] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                got.append(await self.next_message(kind, timeout=left))
            except TimeoutError:
                break
        return got

    def send(self, obj: object) -> None:
        self.channel.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def close(self) -> None:
        if self.camera is not None:
            self.camera.stop()
        if self.microphone is not None:
            self.microphone.stop()
        await self.pc.close()


async def connect(base_url: str, width: int = 320, height: int = 240, fps: float = 30.0,
                  resume: str | None = None, microphone: bool = False, camera: bool = True,
                  video_file: Path | None = None) -> Client:
    """Makes an offer with one video track (none with camera=False, as a page watching the server's camera source;
    the frames of video_file, if given; and a microphone track, if asked) and a `guidance` channel (and the resume
    token, if given); waits for the session's `status: ready`, kept as `client.ready`, so every message left in the
    queue is one sent after it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = SyntheticCamera(width, height, fps, video_file) if camera else None
    if video is not None:
        pc.addTransceiver(video, direction="sendonly")
    mic = SyntheticMicrophone() if microphone else None
    if mic is not None:
        pc.addTransceiver(mic, direction="sendonly")
    channel = pc.createDataChannel("guidance")
    client = Client(pc, channel, video, mic)
    opened = asyncio.get_running_loop().create_future()
    channel.on("open", lambda: opened.done() or opened.set_result(True))
    channel.on("message", lambda m: client.messages.put_nowait(json.loads(m)))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        offer = {"sdp": pc.localDescription.sdp, "type": "offer", **({"resume": resume} if resume else {})}
        async with http.post(f"{base_url}/offer", json=offer) as res:
            body = await res.json()
            if res.status != 200:
                await pc.close()
                raise RuntimeError(f"offer refused: {res.status} {body}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
    await asyncio.wait_for(opened, 60)
    client.ready = await client.next_message("status", timeout=60)
    if client.ready.get("state") != "ready":
        raise RuntimeError(f"the session's first status is not ready: {client.ready}")
    return client
