"""Cuts a 16 kHz mono stream into utterances with webrtcvad: pre-padding, an end after a short silence (frames
webrtcvad calls unvoiced but well above the room's level are not silence), and a length limit so a monologue or
endless noise is cut, dropped and costs nothing more until it stops."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from .levels import level_db

RATE = 16000
FRAME_MS = 30
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # s16 mono
START_FRAMES, START_VOICED = 6, 4  # speech starts when 4 of the last 6 frames (180 ms) are voiced
PRE_PAD_FRAMES = 10  # 300 ms kept before the start, so the first phoneme is not lost
KEEP_FRAMES = 2  # 60 ms kept after the last voiced frame
# an unvoiced frame this far above the room between utterances is still the person (the "xt" of "next", a
# fricative webrtcvad calls silence): it keeps the utterance open, so "next … to the red one" is one utterance
SOUND_DB = 12.0
FLOOR_RISE_DB = 0.3  # per frame: the room's level follows a drop at once and a rise within seconds (10 dB/s)


@dataclass(frozen=True)
class SpeechStarted:
    at_s: float  # stream time of the first voiced frame


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech; `pcm` starts `pre_pad_s` before the first voiced frame. A cut one has no pcm."""

    pcm: bytes
    start_s: float  # stream time of the first and last voiced frame
    end_s: float
    pre_pad_s: float
    cut: bool = False

    @property
    def speech_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class SpeechPaused:
    """60 ms of silence after speech: `utterance` is the one that ends here if the silence lasts, so it can be
    recognised while the end is awaited (the same PCM the final Utterance carries)."""

    utterance: Utterance


Event = SpeechStarted | SpeechPaused | Utterance


class Segmenter:
    """Feed PCM of any length; get the events it completes. Memory is bounded by max_utterance_s."""

    def __init__(self, aggressiveness: int = 3, end_silence_ms: int = 120, max_utterance_s: float = 6.0) -> None:
        self.vad = webrtcvad.Vad(aggressiveness)
        self.end_frames = max(1, end_silence_ms // FRAME_MS)
        self.max_frames = int(max_utterance_s * 1000 / FRAME_MS)
        self._pending = b""
        self._recent: deque[tuple[bytes, bool]] = deque(maxlen=PRE_PAD_FRAMES)
        self._speech: list[bytes] = []
        self._frame = 0  # frames seen so far: the stream clock
        self._start = 0  # frame index of the utterance's first voiced frame
        self._last_voiced = 0
        self._pre_pad = 0
        self._floor: float | None = None  # dB of the quietest recent frames between utterances
        self.state = "idle"  # idle | speech | discarding (a cut utterance, waiting for it to end)
        self.cut = 0

    @property
    def speech_s(self) -> float:
        """How long the current speech has lasted (0 when none)."""
        return (self._frame - self._start) * FRAME_MS / 1000 if self.state == "speech" else 0.0

    def feed(self, pcm: bytes) -> list[Event]:
        data = self._pending + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        events: list[Event] = []
        for i in range(0, whole, FRAME_BYTES):
            event = self._step(data[i:i + FRAME_BYTES])
            if event is not None:
                events.append(event)
        return events

    def _step(self, frame: bytes) -> Event | None:
        voiced = self.vad.is_speech(frame, RATE)
        self._frame += 1
        level = level_db(np.frombuffer(frame, np.int16))
        if self.state == "idle" and not voiced:  # the room between utterances: follows it down at once, up slowly
            self._floor = level if self._floor is None else min(level, self._floor + FLOOR_RISE_DB)
        if voiced or (self.state == "speech" and level >= (self._floor or 0.0) + SOUND_DB):
            self._last_voiced = self._frame
        silent_for = self._frame - self._last_voiced
        if self.state == "idle":
            self._recent.append((frame, voiced))
            if sum(v for _, v in list(self._recent)[-START_FRAMES:]) < START_VOICED:
                return None
            window = list(self._recent)
            first = next(i for i, (_, v) in enumerate(window[-START_FRAMES:]) if v) + len(window) - START_FRAMES
            self.state, self._start, self._pre_pad = "speech", self._frame - (len(window) - first) + 1, first
            self._speech = [f for f, _ in window]
            self._recent.clear()
            return SpeechStarted(self._seconds(self._start - 1))
        if self.state == "discarding":
            if silent_for >= self.end_frames:
                self.state = "idle"
            return None
        self._speech.append(frame)
        if silent_for == KEEP_FRAMES and self.end_frames > KEEP_FRAMES:
            return SpeechPaused(self._utterance(b"".join(self._speech)))
        if silent_for >= self.end_frames:
            self.state = "idle"
            tail = len(self._speech) - max(0, silent_for - KEEP_FRAMES)
            pcm, self._speech = b"".join(self._speech[:tail]), []
            return self._utterance(pcm)
        if len(self._speech) > self.max_frames:
            self.state, self._speech = "discarding", []
            self.cut += 1
            return Utterance(b"", self._seconds(self._start - 1), self._seconds(self._frame), 0.0, cut=True)
        return None

    def _utterance(self, pcm: bytes) -> Utterance:
        return Utterance(pcm, self._seconds(self._start - 1), self._seconds(self._last_voiced),
                         self._pre_pad * FRAME_MS / 1000)

    @staticmethod
    def _seconds(frames: int) -> float:
        return frames * FRAME_MS / 1000
