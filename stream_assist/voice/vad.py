"""Cuts a 16 kHz mono stream into utterances with webrtcvad: pre-padding, an end after a short silence, and a
length limit so endless talk or sound is cut, dropped and costs nothing more until it stops. The room's
level decides with webrtcvad: steady noise it calls voiced is not speech, and an unvoiced frame well above the room
(a fricative) is not silence."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import webrtcvad

from .levels import level_db

RATE = 16000
FRAME_MS = 30
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # s16 mono
# speech starts when 3 of the last 6 frames (180 ms) are voiced: at 4, a quick word in 10 dB noise (espeak's "what" of
# "what now", the neural voice's fast "repeat") had too few frames above the room and was lost or never started
START_FRAMES, START_VOICED = 6, 3
PRE_PAD_FRAMES = 10  # the last 300 ms kept when speech starts (120-270 ms before its first voiced frame): the onset
KEEP_FRAMES = 2  # 60 ms kept after the last voiced frame
# The room's level: the quietest tenth of the last 3 s of frames, which is the steady noise where there is some, and
# rises with someone talking on and on (a louder command then stands out of another person's talk, and a monologue
# comes in pieces). webrtcvad calls white noise 10 dB below the speech voiced, so in a noisy workshop one "utterance"
# ran on until the length limit dropped it, command and all.
FLOOR_FRAMES, FLOOR_PERCENTILE = 100, 10
VOICE_DB = 6.0  # a frame webrtcvad calls voiced is speech only this far above the room's level
HOLD_DB = 3.0  # and, once speech has started, keeps it open this far above (weak syllables in noise)
# an unvoiced frame this far above the room is still the person (the "xt" of "next", a fricative webrtcvad calls
# silence): it keeps the utterance open, so "next … to the red one" is one utterance
SOUND_DB = 12.0
# In noise the weak sounds between words fall under the room's level: an utterance whose loudest frame stands less
# than NOISY_DB above the room ends only after 360 ms of silence ("stop … talking" is one command, "next … to the red
# one" one sentence: 270 ms split it at 10 dB), and speech that starts again within the pre-roll (PRE_PAD_FRAMES) of
# an utterance's end, after one that was not a command, is heard together with it (see settle()).
NOISY_DB, NOISY_END_FRAMES = 25.0, 12
# and keeps this much after its last voiced frame, not KEEP_FRAMES: the end of a word under the noise (the "z" of
# "pause") is below the room's level, and whisper heard "paw" without it as "oh", "boy", "bog"
NOISY_KEEP_FRAMES = 7


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
    """60 ms of silence after speech (210 ms in noise): `utterance` is the one that ends here if the silence lasts,
    so it can be recognised while the end is awaited (the same PCM the final Utterance carries)."""

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
        self._peak = 0.0  # the current utterance's loudest voiced frame, in dB above the room
        self._ended: tuple[list[bytes], int, int, int] | None = None  # the last utterance: frames, start, pad, end
        self._levels: deque[float] = deque(maxlen=FLOOR_FRAMES)  # dB of each recent frame, for the room's level
        self.state = "idle"  # idle | speech | discarding (a cut utterance, waiting for it to end)
        self.cut = 0

    @property
    def speech_s(self) -> float:
        """How long the current speech has lasted (0 when none)."""
        return (self._frame - self._start) * FRAME_MS / 1000 if self.state == "speech" else 0.0

    def feed(self, pcm: bytes) -> Iterator[Event]:
        """The events the PCM completes, cut as they are taken: a caller that settle()s after an utterance does so
        before the frames after it are cut. Take them all (the frames not reached are lost)."""
        data = self._pending + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        for i in range(0, whole, FRAME_BYTES):
            event = self._step(data[i:i + FRAME_BYTES])
            if event is not None:
                yield event

    def settle(self) -> None:
        """The last utterance was taken as a command: speech right after it starts afresh, not joined to it."""
        self._ended = None

    def _step(self, frame: bytes) -> Event | None:
        self._frame += 1
        level = level_db(np.frombuffer(frame, np.int16))
        self._levels.append(level)
        floor = float(np.percentile(self._levels, FLOOR_PERCENTILE))
        voiced = self.vad.is_speech(frame, RATE) and level >= floor + (HOLD_DB if self.state == "speech" else VOICE_DB)
        if voiced or (self.state == "speech" and level >= floor + SOUND_DB):
            self._last_voiced = self._frame
            self._peak = max(self._peak, level - floor)
        silent_for = self._frame - self._last_voiced
        noisy = self._peak < NOISY_DB
        end_frames = max(self.end_frames, NOISY_END_FRAMES) if noisy else self.end_frames
        keep = NOISY_KEEP_FRAMES if noisy else KEEP_FRAMES
        if self.state == "idle":
            self._recent.append((frame, voiced))
            if sum(v for _, v in list(self._recent)[-START_FRAMES:]) < START_VOICED:
                return None
            window = list(self._recent)
            first = next(i for i, (_, v) in enumerate(window[-START_FRAMES:]) if v) + len(window) - START_FRAMES
            self.state, self._start, self._pre_pad = "speech", self._frame - (len(window) - first) + 1, first
            self._speech = [f for f, _ in window]
            self._recent.clear()
            started = SpeechStarted(self._seconds(self._start - 1))
            if self._ended is not None and self._frame - self._ended[3] <= len(window):  # the gap is all in window
                frames, self._start, self._pre_pad, _ = self._ended
                self._speech = frames + self._speech
            return started
        if self.state == "discarding":
            if silent_for >= end_frames:
                self.state, self._peak = "idle", 0.0
            return None
        self._speech.append(frame)
        if silent_for == keep and end_frames > keep:
            return SpeechPaused(self._utterance(b"".join(self._speech)))
        if silent_for >= end_frames:
            self.state, self._peak = "idle", 0.0
            tail = len(self._speech) - max(0, silent_for - keep)
            self._ended = (self._speech, self._start, self._pre_pad, self._frame)
            pcm, self._speech = b"".join(self._speech[:tail]), []
            return self._utterance(pcm)
        if len(self._speech) > self.max_frames:
            self.state, self._speech, self._ended = "discarding", [], None
            self.cut += 1
            return Utterance(b"", self._seconds(self._start - 1), self._seconds(self._frame), 0.0, cut=True)
        return None

    def _utterance(self, pcm: bytes) -> Utterance:
        return Utterance(pcm, self._seconds(self._start - 1), self._seconds(self._last_voiced),
                         self._pre_pad * FRAME_MS / 1000)

    @staticmethod
    def _seconds(frames: int) -> float:
        return frames * FRAME_MS / 1000
