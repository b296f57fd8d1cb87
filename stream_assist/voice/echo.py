"""The assistant's own voice is not the person's. Its speaker says when it speaks and what (the page for its
speechSynthesis, the server for its own voice), and speech heard meanwhile counts only when it is a barge-in (long
enough) and does not match what is being said. With the server's voice the microphone also passes through an
echo canceller that is given exactly what was sent."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .levels import frame_levels, level_db
from .vad import RATE, Utterance

log = logging.getLogger(__name__)

TAIL_S = 0.3  # the room still rings (and speechSynthesis.cancel is asynchronous) just after the page stops
FAR_ACTIVE_DB = 40.0  # a 20 ms frame of the voice this loud (about -50 dBFS) can echo
ERLE_FRAMES = 100  # the canceller's echo removal is judged over the voice's last 2 s of sound
CONVERGED_DB = 20.0  # removing this much of the echo, the canceller has learnt the room: its leaks are rare
SPEEX_TAIL_MS = 500  # Speex's filter: the echo's delay (network, playout, the room) plus the room's ringing
WORDS_KEPT_S = 10  # of Speex's output, for the words of an utterance (longer ones are cut by the VAD anyway)
RELEARN_PASSES = 4  # Speex taught again over the microphone and voice kept (WORDS_KEPT_S): passes over the same samples
# removing this much of the echo, Speex gives the recogniser the person rather than the voice: in its first 2 s the
# voice's own words came through it (1-2 dB removed: "Step 3 of 6" taken for "next"), while a "pause" said over the
# voice was heard right from 12 dB on (taught afresh, the median over 2 s that include the person's own frames)
SPEEX_LEARNT_DB = 10.0
# Speex's output this far above what it leaves of the echo where AEC3 removed 20 dB, for this many 20 ms frames
# running, is a person talking over the voice (measured on 270 "pause"s in 42 min of the voice at 0 dB: 5 more heard
# as speech, no more utterances from the echo; 6 frames running made 28 more of those)
PERSON_DB = 15.0
# until Speex has learnt the room, speech over the voice counts when Speex's output over it stands this far above what
# it leaves of the echo (after, when it is not below it): the voice's own words leaking through AEC3 stood -30 to -0.3
# dB above it (-19.5 dB for a "Step 3 of 6" taken for "next" once Speex had learnt), a "pause" said over it -2.4 to
# 46 dB (12 dB quieter echo: 24 dB and up)
ABOVE_ECHO_DB = 6.0
PERSON_FRAMES = 10


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


class EchoGuard:
    """What the page is saying or said lately; times are time.monotonic()."""

    def __init__(self, window_s: float = 3.0, tail_s: float = TAIL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.tail_s = tail_s
        self.clock = clock  # a benchmark runs the room's time faster than the wall's
        self._on = False
        self._off_at = float("-inf")
        self._said: deque[tuple[float, set[str]]] = deque(maxlen=8)

    def speaking(self, on: bool, text: str = "", now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if on and text:
            self._said.append((now, _words(text)))
        if self._on and not on:
            self._off_at = now
        self._on = on

    def is_speaking(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return self._on or now - self._off_at < self.tail_s

    def is_echo(self, heard: str, now: float | None = None) -> bool:
        """True when every heard word is in something the page said within window_s (or is saying)."""
        now = self.clock() if now is None else now
        words = _words(heard)
        recent = self._on or now - self._off_at < self.window_s
        return bool(words) and recent and any(words <= said for _, said in self._said)


def canceller_available() -> bool:
    return importlib.util.find_spec("pywebrtc_audio") is not None


def _speex(rate: int):  # noqa: ANN202 - speexdsp_aec.SpeexAec | None
    """Speex's echo canceller when speexdsp-aec and Debian's libspeexdsp1 are there, else None."""
    if importlib.util.find_spec("speexdsp_aec") is None:
        return None
    from speexdsp_aec import SpeexAec

    try:
        return SpeexAec(sample_rate=rate, frame_ms=20, filter_tail_ms=SPEEX_TAIL_MS)
    except RuntimeError as e:  # libspeexdsp missing
        log.info("echo: no Speex canceller for the words (%s); AEC3 alone", e)
        return None


class EchoCanceller:
    """WebRTC's AEC3 (pywebrtc-audio, the canceller Chromium runs) on one session's 16 kHz microphone, with the
    server voice's samples as its far end; it finds the echo's delay and strength itself. It also keeps how much
    echo it removes while the voice sounds: until it has learnt the room it leaks (the first second or so of the
    first utterance). Use from one thread.

    AEC3's output decides where speech is (its residual echo is nearly nil, so its own voice never makes an
    utterance); the words are recognised from Speex's output over the same samples when Speex is installed: its
    milder suppression keeps more of a person talking over the voice (measured in `bench speak`)."""

    def __init__(self, rate: int = RATE, words: bool = True) -> None:
        from pywebrtc_audio import EchoCanceller as Aec3

        self._aec = Aec3(sample_rate=rate, num_channels=1)
        self._frame = rate // 50
        self._removed_db: deque[float] = deque(maxlen=ERLE_FRAMES)  # per 20 ms of the voice sounding
        self._speex = _speex(rate) if words else None
        self._words = np.zeros(0, np.int16)  # Speex's latest output, ending at sample self._words_end
        self._words_end = 0
        self._kept: deque[tuple[np.ndarray, np.ndarray, list[int]]] = deque()  # microphone, voice, echo frames: lately
        self._kept_n = 0
        self._seen = 0  # microphone samples given
        self._taught_s = 0.0  # seconds of echo the Speex canceller has learnt from (passes counted)
        self._words_removed_db: deque[float] = deque(maxlen=ERLE_FRAMES)  # as _removed_db, for Speex's output
        self._far_db: deque[float] = deque(maxlen=SPEEX_TAIL_MS // 20)  # the voice's level, 20 ms frames, as it echoes
        self._residual_db: deque[float] = deque(maxlen=ERLE_FRAMES)  # what Speex leaves of the echo AEC3 removed
        self._person_frames = 0  # 20 ms frames running in which Speex shows a person AEC3 took out

    @property
    def converged(self) -> bool:
        """True once the echo it removes (the median over the voice's last ~2 s) reaches CONVERGED_DB."""
        return len(self._removed_db) >= ERLE_FRAMES // 4 and float(np.median(self._removed_db)) >= CONVERGED_DB

    def words_heard(self, utterance: Utterance) -> bool:
        """Whether Speex's output over speech heard over the voice is the person rather than what it leaves of the
        voice: the speech's loud part is as loud as the echo's loud part Speex leaves once it has learnt the room
        (removes SPEEX_LEARNT_DB, the median over the last ~2 s of echo AEC3 found), ABOVE_ECHO_DB louder before."""
        if self._speex is None:
            return True
        above = self._above_echo_db(utterance)
        learnt = (len(self._words_removed_db) >= ERLE_FRAMES // 4
                  and np.median(self._words_removed_db) >= SPEEX_LEARNT_DB)
        return above is not None and above >= (0.0 if learnt else ABOVE_ECHO_DB)

    def _above_echo_db(self, utterance: Utterance) -> float | None:
        """How far the loud part (90th percentile of 20 ms frames) of Speex's output over the utterance's speech stands
        above that of what it leaves of the echo lately; None before it has left any."""
        start = self._words_end - len(self._words)
        first, last = round(utterance.start_s * RATE) - start, round(utterance.end_s * RATE) - start
        levels = _levels_db(self._words, list(range(max(0, first), last - self._frame + 1, self._frame)), self._frame)
        if len(self._residual_db) < ERLE_FRAMES // 4 or not levels:
            return None
        return float(np.percentile(levels, 90) - np.percentile(self._residual_db, 90))

    def process(self, near: bytes, far: np.ndarray) -> bytes:
        """The microphone's PCM with the echo of `far` (the same number of samples, sent meanwhile) taken out."""
        mic = np.frombuffer(near, np.int16)
        ref = np.zeros(len(mic), np.int16)
        ref[:min(len(mic), len(far))] = far[:len(mic)]
        out = self._aec.process(mic, ref)
        ref_db, mic_db, out_db = (frame_levels(x, self._frame) for x in (ref, mic, out))  # per 20 ms frame
        voice = ref_db > FAR_ACTIVE_DB
        self._removed_db.extend(mic_db[voice] - out_db[voice])
        if self._speex is not None:
            # the frames where AEC3 found and removed the echo: someone talking over it is not there (AEC3 keeps them)
            echo = voice & (mic_db - out_db >= CONVERGED_DB)
            words = np.frombuffer(self._speex.process(mic, ref), np.int16)
            self._words = np.concatenate([self._words, words])[-WORDS_KEPT_S * RATE:]
            self._words_end += len(words)
            self._seen += len(mic)
            self._taught_s += int(echo.sum()) * self._frame / RATE
            self._kept.append((mic, ref, [int(i) * self._frame for i in np.flatnonzero(echo)]))
            self._kept_n += len(mic)
            while self._kept_n - len(self._kept[0][0]) >= WORDS_KEPT_S * RATE:
                self._kept_n -= len(self._kept.popleft()[0])
            at = self._seen - len(mic) - (self._words_end - len(self._words))  # where mic starts in self._words
            if at >= 0:
                words = self._words[at:at + len(mic)]
                words_db = frame_levels(words, self._frame)
                n = len(words_db)
                self._words_removed_db.extend(mic_db[:n][echo[:n]] - words_db[echo[:n]])
                out = self._person(ref_db[:n], mic_db[:n] - out_db[:n], words_db, out, words)
        return out.tobytes()

    def _person(self, far_db: np.ndarray, removed_db: np.ndarray, words_db: np.ndarray, out: np.ndarray,
                words: np.ndarray) -> np.ndarray:
        """AEC3's output with Speex's frames (`words`, from the same sample; levels per 20 ms frame given) where Speex
        has shown someone talking over the voice for PERSON_FRAMES running that AEC3's suppressor took out: with the
        echo louder than the person it can take out a whole word, which the VAD then never hears."""
        out = np.array(out)
        for i, (far, removed, level) in enumerate(zip(far_db, removed_db, words_db, strict=True)):
            self._far_db.append(float(far))
            echo = max(self._far_db) > FAR_ACTIVE_DB and removed >= CONVERGED_DB
            person = (echo and len(self._residual_db) >= ERLE_FRAMES // 4
                      and level >= float(np.median(self._residual_db)) + PERSON_DB)
            if echo and not person:
                self._residual_db.append(float(level))
            self._person_frames = self._person_frames + 1 if person else 0
            if self._person_frames >= PERSON_FRAMES:
                out[i * self._frame:(i + 1) * self._frame] = words[i * self._frame:(i + 1) * self._frame]
        return out

    def relearn(self) -> None:
        """Speex taught the room afresh, RELEARN_PASSES times over the microphone and voice kept, where that teaches
        it more of the echo than it has heard so far, and its output there redone. It learns slowly (about 20 s of the
        voice to remove 20 dB), so early in a session a person talking over the voice was heard with the voice;
        passes over the same samples teach it as more of them would, at ~5 ms of CPU per second of audio."""
        if self._speex is None or not self._kept:
            return
        taught_s = RELEARN_PASSES * sum(len(e) for _, _, e in self._kept) * self._frame / RATE
        if taught_s <= self._taught_s:
            return
        mic, ref = (np.concatenate([k[j] for k in self._kept]) for j in (0, 1))
        start = len(mic) % self._frame  # whole frames ending now: no sample left pending between passes
        mic, ref = mic[start:], ref[start:]
        echo, at = [], -start
        for chunk, _, frames in self._kept:
            echo += [at + i for i in frames if at + i >= 0]
            at += len(chunk)
        speex = _speex(RATE)
        for _ in range(RELEARN_PASSES - 1):
            speex.process(mic, ref)
        self._speex, self._taught_s = speex, taught_s
        self._words = np.frombuffer(speex.process(mic, ref), np.int16)
        self._words_end = self._seen
        self._words_removed_db.clear()
        self._words_removed_db.extend(_removed_db(mic, self._words, echo, self._frame))

    def for_words(self, utterance: Utterance, until_s: float | None = None) -> Utterance:
        """The utterance with its samples from Speex's output (the same stretch of time, or on to stream time until_s
        as far as Speex has it), when there is one."""
        if self._speex is None or not utterance.pcm:
            return utterance
        first = round((utterance.start_s - utterance.pre_pad_s) * RATE)
        n = len(utterance.pcm) // 2
        if until_s is not None:
            n = max(n, min(round(until_s * RATE), self._words_end) - first)
        at = first - (self._words_end - len(self._words))
        if at < 0:
            return utterance
        pcm = np.zeros(n, np.int16)
        got = self._words[at:at + n]
        pcm[:len(got)] = got
        return dataclasses.replace(utterance, pcm=pcm.tobytes())


def _levels_db(samples: np.ndarray, frames: list[int], frame: int) -> list[float]:
    """The level of each frame starting at one of `frames` (in order), as far as the samples reach."""
    return [level_db(samples[i:i + frame]) for i in frames if i + frame <= len(samples)]


def _removed_db(before: np.ndarray, after: np.ndarray, frames: list[int], frame: int) -> list[float]:
    """Level before minus level after, per frame starting at each of `frames`, for the frames both reach."""
    return [b - a for b, a in zip(_levels_db(before, frames, frame), _levels_db(after, frames, frame), strict=False)]

