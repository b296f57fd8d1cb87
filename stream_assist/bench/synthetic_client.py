"""A synthetic client: an aiortc peer that streams generated camera video (and, if asked, a microphone that
plays given speech) and collects the server's messages.

Used by the tests and by `stream-assist bench load` / `bench voice`; it speaks the protocol in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from ..speech_out.track import audio_frame, sample_due

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
        self._room = np.zeros(0, np.int16)  # what a loudspeaker in the room adds to what the microphone picks up
        self.played_at: list[float] = []  # time.time() when each play()'s first frame was sent

    def hear_room(self, samples: np.ndarray) -> None:
        """Adds sound in the room (48 kHz int16) to the frames still to be sent, in order."""
        self._room = np.concatenate([self._room, samples.astype(np.int16)])[-MIC_RATE * 5:]

    def play(self, samples: np.ndarray) -> asyncio.Event:
        """Queues int16 mono samples at 48 kHz; the event is set when their last frame has been sent."""
        done = asyncio.Event()
        self._queue.append((samples.astype(np.int16), done))
        return done

    async def recv(self) -> av.AudioFrame:
        self._start = await sample_due(self._start, self._pts, MIC_RATE)  # a microphone's sample clock
        chunk = np.zeros(MIC_FRAME, np.int16)
        if self._queue:
            samples, done = self._queue[0]
            if self._offset == 0:
                self.played_at.append(time.time())
            piece = samples[self._offset:self._offset + MIC_FRAME]
            chunk[:len(piece)] = piece
            self._offset += MIC_FRAME
            if self._offset >= len(samples):
                self._queue.pop(0)
                self._offset = 0
                done.set()
        room, self._room = self._room[:MIC_FRAME], self._room[MIC_FRAME:]
        if len(room):
            chunk[:len(room)] = np.clip(chunk[:len(room)].astype(np.int32) + room, -32768, 32767)
        frame = audio_frame(chunk, MIC_RATE, self._pts)
        self._pts += MIC_FRAME
        return frame


@dataclass(frozen=True)
class Room:
    """A phone on a stand: its loudspeaker heard by its own microphone, late, quieter and reverberated."""

    delay_s: float = 0.15
    attenuation_db: float = 0.0
    reverb_s: float = 0.3  # decay to -60 dB (RT60) of the room's impulse response
    seed: int = 0

    def impulse(self, rate: int = MIC_RATE) -> np.ndarray:
        """The direct sound, then exponentially decaying noise (a small room's reverberation)."""
        n = max(1, int(self.reverb_s * rate))
        rng = np.random.default_rng(self.seed)
        tail = rng.normal(0, 1, n) * np.exp(-6.9 * np.arange(n) / n) * 0.25 / np.sqrt(n * 20 / rate)
        ir = np.concatenate([[1.0], tail])
        return ir * 10 ** (-self.attenuation_db / 20)


class Ear:
    """Consumes the server's audio track (as a browser plays it): every frame kept as 48 kHz mono with its arrival
    time; with a Room, also played back into the microphone, as a loudspeaker at arm's length would be."""

    def __init__(self, microphone: SyntheticMicrophone | None = None, room: Room | None = None) -> None:
        self.frames: list[tuple[float, np.ndarray]] = []
        self.microphone, self.room = microphone, room
        self._ir = room.impulse() if room else None
        self._tail = np.zeros(0)
        self._arrived = asyncio.Condition()
        if microphone is not None and room is not None:
            microphone.hear_room(np.zeros(int(room.delay_s * MIC_RATE), np.int16))
        self.task: asyncio.Task | None = None

    def listen(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.ensure_future(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=MIC_RATE)
        with contextlib.suppress(Exception):  # the track ends with the connection
            while True:
                frame = await track.recv()
                samples = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame)])
                self.frames.append((time.time(), samples.astype(np.int16)))
                async with self._arrived:
                    self._arrived.notify_all()
                if self._ir is not None and self.microphone is not None:
                    self.microphone.hear_room(self._reverberate(samples))

    def _reverberate(self, samples: np.ndarray) -> np.ndarray:
        """Overlap-add convolution with the room's impulse response (FFT: cheap at 20 ms a frame)."""
        assert self._ir is not None
        n = len(samples) + len(self._ir) - 1
        size = 1 << (n - 1).bit_length()
        wet = np.fft.irfft(np.fft.rfft(samples.astype(np.float64), size) * np.fft.rfft(self._ir, size), size)[:n]
        wet[:len(self._tail)] += self._tail
        out, self._tail = wet[:len(samples)], wet[len(samples):]
        return np.clip(out, -32768, 32767).astype(np.int16)

    async def until(self, count: int) -> None:
        """Returns once `count` frames have arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.frames) >= count)

    def audio(self, since: float = 0.0) -> np.ndarray:
        """What arrived since a time.time(), as one 48 kHz array."""
        kept = [s for t, s in self.frames if t >= since]
        return np.concatenate(kept) if kept else np.zeros(0, np.int16)


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
    ear: Ear | None = None  # the server's voice, when the offer asked to receive it
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    ready: dict = field(default_factory=dict)  # the server's unasked `status: ready` (session id, presets)
    received: list = field(default_factory=list)  # every message, in order (next_message skips other types)

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
                  video_file: Path | None = None, hear: bool = False, room: Room | None = None,
                  token: str | None = None) -> Client:
    """Makes an offer with one video track (none with camera=False, as a page watching the server's camera source;
    the frames of video_file, if given; and a microphone track, if asked) and a `guidance` channel (and the resume
    token, if given), presenting the server's access token if given; waits for the session's `status: ready`, kept
    as `client.ready`, so every message left in the queue is one sent after it. With hear, the audio section also
    receives (the server's voice, kept by `client.ear`); with a room, what it receives is played back into the
    microphone."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = SyntheticCamera(width, height, fps, video_file) if camera else None
    if video is not None:
        pc.addTransceiver(video, direction="sendonly")
    mic = SyntheticMicrophone() if microphone else None
    if mic is not None:
        pc.addTransceiver(mic, direction="sendrecv" if hear else "sendonly")
    elif hear:
        pc.addTransceiver("audio", direction="recvonly")
    ear = Ear(mic, room) if hear else None
    if ear is not None:
        pc.on("track", lambda track: ear.listen(track) if track.kind == "audio" else None)
    channel = pc.createDataChannel("guidance")
    client = Client(pc, channel, video, mic, ear)
    opened = asyncio.get_running_loop().create_future()
    channel.on("open", lambda: opened.done() or opened.set_result(True))
    def on_message(raw: str) -> None:
        msg = json.loads(raw)
        client.received.append(msg)
        client.messages.put_nowait(msg)

    channel.on("message", on_message)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        offer = {"sdp": pc.localDescription.sdp, "type": "offer", **({"resume": resume} if resume else {})}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with http.post(f"{base_url}/offer", json=offer, headers=headers) as res:
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
