"""Speech recognisers behind one small protocol: pocketsphinx (offline, its model ships in the wheel) by default.

A grammar search for commands, and the wheel's full language model for dictating a task (poor: ~80 % word error
on synthetic speech, so a dictated task is only ever a proposal the person confirms).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .commands import Word, jsgf, one_of

RATE = 16000
PAD_SAMPLES = RATE // 5  # 0.2 s of the room either side: grammar mode loses words at the very edges without it
FRAME = RATE * 30 // 1000  # the quietest 30 ms frames make the pad
FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "++", "(NULL)")  # (NULL): grammar nodes without a word
ALTERNATE = re.compile(r"\(\d+\)$")  # "repeat(2)": the dictionary's second pronunciation of "repeat"
LOG_BASE = math.log(1.0001)  # pocketsphinx's log base: Hypothesis.score comes back as base ** log-score
MIN_CONFIDENCE = -2500.0  # grammar minus phone-loop log score per second of audio (_confidence); `bench voice`
# a known task's title, the same way: titles said scored -170..-1630 on `bench voice`'s voices, other tasks forced
# into a title -2070 and below
TASK_MIN_CONFIDENCE = -2000.0


class Recogniser(Protocol):
    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        """The grammar's best words for 16 kHz s16 mono speech (times within pcm), or none."""

    def dictate(self, pcm: bytes) -> str:
        """The task said in 16 kHz s16 mono speech: a known task's title, or free text."""


def room_tone(pcm: bytes) -> bytes:
    """PAD_SAMPLES of the utterance's own quietest quarter (30 ms frames, tiled): padding with digital silence
    put a step between the pad and a noisy room that the noise tracker and mean normalisation took for
    speech (commands right at 10 dB speech-to-noise: 67.5 → 77.5 % on `bench voice`'s set)."""
    samples = np.frombuffer(pcm, np.int16)
    frames = samples[:len(samples) // FRAME * FRAME].reshape(-1, FRAME)
    if len(frames) == 0:
        return bytes(2 * PAD_SAMPLES)
    energy = np.einsum("ij,ij->i", frames.astype(np.float32), frames.astype(np.float32))
    quiet = frames[np.sort(np.argsort(energy)[:max(1, len(frames) // 4)])].ravel()
    return np.resize(quiet, PAD_SAMPLES).tobytes()


def padded(pcm: bytes) -> bytes:
    """The utterance with its room tone either side: made once per utterance, for every search run over it."""
    pad = room_tone(pcm)
    return pad + pcm + pad


class PocketSphinx:
    """One decoder with its searches, shared by every session; calls are serialised (the voice thread is one).
    `tasks`: the titles of known task cards (normalised), heard as a grammar before falling back to dictation."""

    def __init__(self, min_confidence: float = MIN_CONFIDENCE, tasks: Sequence[str] = (),
                 **decoder_options: object) -> None:
        from pocketsphinx import Decoder

        self._lock = threading.Lock()
        # bestpath off: the lattice rescoring pass dropped short commands ("next", "back") to no result at all,
        # 29 → 37 of 40 clean commands on the bench's voices
        self._decoder = Decoder(**{"loglevel": "FATAL", "bestpath": False, **decoder_options})
        self._dictation = self._decoder.current_search()
        self._decoder.add_jsgf_string("commands", jsgf(False))
        self._decoder.add_jsgf_string("confirming", jsgf(True))
        self._decoder.add_allphone_file("phones", None)  # any phone sequence: the best the audio can score
        # a title with a word outside the dictionary cannot be a grammar path: it is left to dictation
        self.tasks = [t for t in tasks if t and all(self._decoder.lookup_word(w) for w in t.split())]
        if self.tasks:
            self._decoder.add_jsgf_string("tasks", one_of(self.tasks))
        self.min_confidence = min_confidence
        self.last_confidence: float | None = None  # of the last commands() result, for `bench voice`'s log

    def _decode(self, search: str, audio: bytes):  # noqa: ANN202 - the decoder, after the utterance
        """Runs one search over `audio` (an utterance already padded with its room tone)."""
        self._decoder.activate_search(search)
        self._decoder.start_utt()
        self._decoder.process_raw(audio, full_utt=True)
        self._decoder.end_utt()
        return self._decoder

    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        audio = padded(pcm)
        with self._lock:
            decoder = self._decode("confirming" if confirming else "commands", audio)
            hyp = decoder.hyp()
            self.last_confidence = None
            if hyp is None:
                return []
            frame_s, pad_s = 1.0 / decoder.config["frate"], PAD_SAMPLES / RATE
            segments = list(decoder.seg())
            self.last_confidence = self._confidence(hyp.score, audio)
            if self.last_confidence < self.min_confidence:
                return []
            return [Word(ALTERNATE.sub("", s.word), s.start_frame * frame_s - pad_s,
                         (s.end_frame + 1) * frame_s - pad_s, self._phones(s.word))
                    for s in segments if not s.word.startswith(FILLERS)]

    def _phones(self, word: str) -> int:
        return len((self._decoder.lookup_word(word) or "").split())

    def _confidence(self, grammar_score: float, audio: bytes) -> float:
        """How far the grammar's path scores below a free phone loop on the same (padded) audio, per second of
        the utterance: a command said scores near the loop, a sentence forced into a command far below (the
        grammar has no way out)."""
        phones = self._decode("phones", audio).hyp()
        if phones is None or grammar_score <= 0 or phones.score <= 0:
            return -math.inf
        seconds = (len(audio) / 2 - 2 * PAD_SAMPLES) / RATE
        return (math.log(grammar_score) - math.log(phones.score)) / LOG_BASE / max(seconds, 0.1)

    def dictate(self, pcm: bytes) -> str:
        """A known task's title when one was said (free dictation of this model is ~65 % word error; a grammar of
        titles hears them exactly), else the dictation."""
        audio = padded(pcm)
        with self._lock:
            if self.tasks:
                hyp = self._decode("tasks", audio).hyp()
                if hyp is not None and self._confidence(hyp.score, audio) >= TASK_MIN_CONFIDENCE:
                    return hyp.hypstr
            hyp = self._decode(self._dictation, audio).hyp()
            return hyp.hypstr if hyp is not None else ""


_shared: dict[tuple[str, tuple[str, ...]], Recogniser] = {}
_shared_lock = threading.Lock()
KINDS = ("pocketsphinx", "whisper:", "faster-whisper:", "auto")


def shared_recogniser(name: str = "pocketsphinx", tasks: tuple[str, ...] = ()) -> Recogniser:
    """The process's one recogniser of that kind and known tasks (start-up 0.2-1 s, so made once, on first use).
    pocketsphinx's grammar and faster-whisper's prompt take the titles (whisper.cpp hears any task as it is said);
    `auto` is what it picks here."""
    from .faster_whisper_source import chosen_asr

    name = chosen_asr(name)
    if not name.startswith(KINDS):
        raise ValueError(f"unknown recogniser {name!r} (known: auto, pocketsphinx, faster-whisper:<model>, "
                         "whisper:<model>)")
    key = (name, () if name.startswith("whisper:") else tasks)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = PocketSphinx(tasks=tasks) if name == "pocketsphinx" else _whisper(name, tasks)
        return _shared[key]


def checked_asr(asr: str) -> str:
    """The setting as the recogniser to serve with: `auto` picked, a named model fetched, a model folder or file
    loaded once in a child process (a bad one is a one-line error at start)."""
    from .faster_whisper_source import chosen_asr, local_faster_whisper
    from .whisper_source import local_asr

    return local_asr(local_faster_whisper(chosen_asr(asr)))


def _whisper(asr: str, tasks: tuple[str, ...]) -> Recogniser:
    """The optional extras are imported only when asked for: faster-whisper ([speech]) or pywhispercpp ([whisper])."""
    if asr.startswith("faster-whisper:"):
        from .faster_whisper_asr import FasterWhisper
        from .faster_whisper_source import resolve_faster_whisper

        return FasterWhisper(resolve_faster_whisper(asr), tasks)
    from .whisper import load_whisper

    return load_whisper(asr)
