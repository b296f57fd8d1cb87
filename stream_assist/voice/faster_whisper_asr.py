"""Whisper through faster-whisper / CTranslate2 as a Recogniser: commands scored, tasks transcribed.

A lone word transcribed freely is a guess ("pause" → "Bause.", "back" → "Bye."), so a command is decided among the
grammar's phrases: the audio is encoded once on a short window (3 s, not the 30 s faster-whisper pads to), one
decoding step ranks the phrases by their first token, the likeliest few are scored in full against the audio in one
batched teacher-forced pass (CTranslate2's `Whisper.align`) — and, where that takes none and the room is steady,
again after the list of phrases as whisper's previous text — and the best counts only when it is likely on its own,
ahead of the runner-up, and ends where the speech ends (its full stop likely, and little audio aligned after it);
a primed one, also when the free transcript is no longer than a command said alone.
Free transcription runs only for what is not a command: "my task is …" and the sentences shown as heard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .commands import CONFIRM, PHRASES, TASK_PREFIX, Word
from .levels import frame_levels
from .transcript import normalise, task_text, transcript_words

RATE = 16000
HOP = 160  # samples per mel frame
LEAD_S = 0.2  # silence before the utterance: whisper drops a word cut right at the start of its input
COMMAND_FRAMES = 300  # a command's window, 3 s: encoded in ~12-25 ms instead of the 30 s window's ~450 ms
MAX_FRAMES = 3000  # whisper's own window, for long speech
TAIL_FRAMES = 300  # silence after speech to be transcribed: with 1 s, 25 % word error on tasks; 3 s, 12 %
# Commands are scored unprimed first; when that finds none and the room is steady (quiet, a machine's hum, a
# reverberant workshop), again after the grammar's phrases given as whisper's previous text (" pause. resume. next.
# …"): so primed, it expects a lone command word, where unprimed its prior on a lone " Pause." (-19 nats on silence)
# or " Resume." (-27) buried them in noise. Where the room is other people talking, priming made commands of their
# words, so there it is not used; and it costs ~40 ms more, so only for what the plain scores did not take.
# The best phrase's summed token log-probability must reach MIN_SCORE, beat every other phrase by MIN_MARGIN, and its
# full stop be MIN_ENDING likely. Primed, whisper also ends "next to the red one" after " next.", so the phrase must
# end where the speech ends unprimed too: " Next." with its full stop MIN_PLAIN_ENDING likely ("next to the red one"
# -5 to -7.6, commands said alone -1 to -5.4), and whisper's alignment leaving no more than MAX_TAIL_S of the audio
# after it ("next to the red one" in noise or a room left 0.48-1.16 s; commands said, another talker around them
# included, at most 0.40 s). Primed values picked on `bench voice`'s clips cut where the words are and checked on
# halves of its voices (at 10 dB noise 83 -> 95 %, room 78 -> 97 %; clean 100 %); unprimed, as measured before them.
MIN_SCORE = {True: -6.0, False: -9.0}  # by primed
MIN_MARGIN = 1.0
MIN_ENDING = {True: -2.0, False: -5.5}
MIN_PLAIN_ENDING = -5.5
MAX_TAIL_S = 0.45
# Primed, whisper also puts a lone command on a whole sentence ("we can resume after lunch" → " resume." at -6, clean),
# and the ending and tail rules pass it where the command word ends it. A command said alone is transcribed, however
# garbled by noise, as one to three different words ("win boom", "what oh? what oh!", "f f f e f f b f"; 70 primed
# commands on two sets of `bench voice`'s clips): a primed result whose transcript has more is a sentence.
MAX_PRIMED_WORDS = 3
# the room is steady when the first ROOM_FRAMES of the utterance (inside the VAD's 300 ms pre-roll, before the speech)
# vary by no more than STEADY_DB: steady noise ~1 dB, another talker 10 dB and more
ROOM_FRAMES, ROOM_FRAME, STEADY_DB = 6, RATE * 30 // 1000, 6.0
TIME_STEP_S = 0.02  # of one alignment time index (the encoder's output frame)
TASK_START = " My task is"  # forced at the start of a task's second transcription
PROMPT_TOKENS = 223  # whisper's longest text before the transcript (half its 448-token context, less one)
SHORTLIST = 3  # phrases scored in full, after one decoding step ranks their first tokens (~5 ms)
LONGEST_COMMAND_S = 2.2  # of speech as the VAD spans it: noise keeps it on past the word; the scores judge the rest
THREADS = 1  # one core on the voice thread: the other stays with the vision model


def spelled(phrase: str) -> str:
    """How whisper writes a phrase said on its own: ' Next.', ' What now.' (the full stop scores its ending)."""
    return f" {phrase.capitalize()}."


def listed(phrase: str) -> str:
    """A phrase as the list of phrases before it writes it: ' next.', ' what now.'."""
    return f" {phrase}."


@dataclass(frozen=True)
class Scored:
    """One phrase against the audio."""

    score: float  # its tokens' summed log-probability
    ending: float  # its last token's (the full stop's) log-probability
    tail_s: float  # seconds of the audio that whisper's alignment puts after it


@dataclass
class Encoded:
    """One utterance: its audio (after LEAD_S of silence) and what has been worked out from it so far."""

    pcm: bytes
    audio: np.ndarray  # float32 at 16 kHz
    steady: bool  # the room before the speech is steady: a second, primed scoring may follow the plain one
    features: dict[int, object] = field(default_factory=dict)  # window in frames → encoder output (StorageView)
    scored: dict[tuple[bool, bool], dict[str, Scored]] = field(default_factory=dict)  # (primed, confirming) → ...
    plain: dict[str, Scored] = field(default_factory=dict)  # every phrase scored unprimed so far
    transcript: str | None = None  # once transcribed

    @property
    def frames(self) -> int:
        return len(self.audio) // HOP


class FasterWhisper:
    """One CTranslate2 whisper model shared by every session; calls are serialised (the voice thread is one)."""

    def __init__(self, folder: Path, tasks: Sequence[str] = ()) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from threadpoolctl import ThreadpoolController

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        # the mel's matrix product on numpy's BLAS wakes its threads, which then spin for a while: on 2 cores
        # that doubled a command's CPU (85 → 40 ms) and took a core from the vision model
        self._blas = ThreadpoolController()
        self._lock = threading.Lock()
        model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=THREADS,
                             local_files_only=True)
        self._features, self._model = model.feature_extractor, model.model
        self._tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                    language="en")
        self._start = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        # a task is transcribed again after "My task is" (whisper's own ear wrote "My task has changed the …"), with
        # the known cards said the same way as the text before it: their words, and the imperative, come out right
        known = "".join(f" My task is {t}." for t in tasks)
        previous = [self._tokenizer.sot_prev, *self._tokenizer.encode(known)[-PROMPT_TOKENS:]] if tasks else []
        self._task_start = [*previous, *self._start, *self._tokenizer.encode(TASK_START)]
        # "my task is" is found in the transcript of what is not a command, so it is not scored
        scored = [p for p in [*PHRASES, *CONFIRM] if p != TASK_PREFIX]
        self._phrases = {True: {p: self._tokenizer.encode(listed(p)) for p in scored},
                         False: {p: self._tokenizer.encode(spelled(p)) for p in scored}}
        self._primed = {confirming: [self._tokenizer.sot_prev, *self._tokenizer.encode(
            "".join(listed(p) for p in scored if confirming or p not in CONFIRM)), *self._start]
            for confirming in (False, True)}  # yes and no are candidates only while a task waits for them
        self._last: Encoded | None = None  # the utterance just heard: its early and final passes share it
        self.last_confidence: float | None = None  # best phrase's margin over the runner-up, for `bench voice`

    def _utterance(self, pcm: bytes) -> Encoded:
        """The utterance being heard: the same object for the early and the final pass over the same PCM."""
        if self._last is None or self._last.pcm != pcm:
            samples = np.frombuffer(pcm, np.int16)
            self._last = Encoded(pcm, np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32),
                                                      samples.astype(np.float32) / 32768.0]), steady_room(samples))
        return self._last

    def _encoded(self, encoded: Encoded, window: int) -> object:
        """The encoder's output for the audio in a window of `window` mel frames (silence after it), once."""
        if window not in encoded.features:
            import ctranslate2

            audio = np.pad(encoded.audio, (0, max(0, window * HOP - len(encoded.audio))))[:window * HOP]
            with self._blas.limit(limits=1, user_api="blas"):
                mel = self._features(audio, padding=0)[:, :window]
            encoded.features[window] = self._model.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
        return encoded.features[window]

    def _scores(self, encoded: Encoded, confirming: bool, primed: bool) -> dict[str, Scored]:
        """The shortlisted phrases against the audio, plain or primed (each phrase ~3.5 ms plain, ~10 ms primed; the
        ranking step ~5 ms; yes and no are candidates only while a task waits for them)."""
        if (primed, confirming) not in encoded.scored:
            tokens = self._phrases[primed]
            phrases = [p for p in tokens if confirming or p not in CONFIRM]
            start = self._primed[confirming] if primed else self._start
            features = self._encoded(encoded, COMMAND_FRAMES)
            if len(phrases) > SHORTLIST:  # the phrases whose first token the audio makes likeliest
                first = self._model.generate(features, [start], beam_size=1, return_logits_vocab=True,
                                             max_length=len(start),  # CTranslate2 counts the prompt but its sot
                                             suppress_blank=False, suppress_tokens=[])
                logits = np.asarray(first[0].logits[0])[0]
                phrases = sorted(phrases, key=lambda p: logits[tokens[p][0]], reverse=True)[:SHORTLIST]
            encoded.scored[primed, confirming] = self._aligned(encoded, start, {p: tokens[p] for p in phrases})
            if not primed:
                encoded.plain.update(encoded.scored[primed, confirming])
        return encoded.scored[primed, confirming]

    def _aligned(self, encoded: Encoded, start: list[int], phrases: dict[str, list[int]]) -> dict[str, Scored]:
        """Each phrase's tokens forced after `start` in one batched teacher-forced pass (CTranslate2's align)."""
        import ctranslate2

        frames = min(encoded.frames, COMMAND_FRAMES)
        batch = np.repeat(np.asarray(self._encoded(encoded, COMMAND_FRAMES)), len(phrases), axis=0)
        results = self._model.align(ctranslate2.StorageView.from_array(batch), start, list(phrases.values()), frames)
        scored = {}
        for (phrase, tokens), result in zip(phrases.items(), results, strict=True):
            logs = np.log(np.maximum(result.text_token_probs, 1e-30))
            scored[phrase] = Scored(float(np.sum(logs)), float(logs[-1]), _tail_s(result.alignments, len(tokens),
                                                                                    frames))
        return scored

    def _accepted(self, encoded: Encoded, scored: dict[str, Scored], best: str, margin: float, primed: bool) -> bool:
        """The best phrase is likely, ahead of the runner-up, and ends where the speech ends, unprimed too; primed,
        the utterance's transcript is also no longer than a command said alone."""
        if not (scored[best].score >= MIN_SCORE[primed] and margin >= MIN_MARGIN
                and scored[best].ending >= MIN_ENDING[primed]):
            return False
        if best not in encoded.plain:  # one more plain pass, for this phrase alone
            encoded.plain.update(self._aligned(encoded, self._start, {best: self._phrases[False][best]}))
        if not (encoded.plain[best].ending >= MIN_PLAIN_ENDING and encoded.plain[best].tail_s <= MAX_TAIL_S):
            return False
        return not primed or len(set(normalise(self._transcript(encoded)).split())) <= MAX_PRIMED_WORDS

    def _transcript(self, encoded: Encoded) -> str:
        """Free transcription, greedy, on a window with TAIL_FRAMES of silence after the speech (with less, whisper
        repeats itself into the silence: "My task is true the wheel. My task has"), no 3-gram repeated; what starts
        "my task" is transcribed again after "My task is" and the known tasks."""
        if encoded.transcript is None:
            encoded.transcript = self._decoded(encoded, self._start)
            if normalise(encoded.transcript).startswith(TASK_PREFIX.rsplit(" ", 1)[0]):
                encoded.transcript = self._decoded(encoded, self._task_start)
        return encoded.transcript

    def _decoded(self, encoded: Encoded, start: list[int]) -> str:
        """Greedy decoding after the start tokens (a forced prefix comes back in the text)."""
        window = min(MAX_FRAMES, -(-(encoded.frames + TAIL_FRAMES) // 100) * 100)
        longest = int(8 + 6 * encoded.frames * HOP / RATE)  # tokens: more than anyone says in that time
        result = self._model.generate(self._encoded(encoded, window), [start], beam_size=1, no_repeat_ngram_size=3,
                                      max_length=len(start) - 1 + longest)[0]  # the prompt but its sot counts
        return self._tokenizer.decode(result.sequences_ids[0]).strip()

    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        """The phrase said, spanning the utterance; or, for anything else, its transcript (which the rules reject,
        or take as "my task is …"); none when the transcript reads as a command the scores did not back."""
        with self._lock:
            encoded = self._utterance(pcm)
            length_s = len(pcm) / 2 / RATE
            if encoded.frames > COMMAND_FRAMES:  # longer than any command: only "my task is …" or a sentence
                return transcript_words([(0.0, length_s, self._transcript(encoded))])
            scored: dict[str, Scored] = {}
            for primed in (False, True) if encoded.steady else (False,):
                scored = self._scores(encoded, confirming, primed)
                best, runner_up = sorted(scored, key=lambda p: scored[p].score, reverse=True)[:2]
                self.last_confidence = scored[best].score - scored[runner_up].score
                if self._accepted(encoded, scored, best, self.last_confidence, primed):
                    return _spanning(best, length_s)
            words = transcript_words([(0.0, length_s, self._transcript(encoded))])
            return [] if " ".join(w.text for w in words) in encoded.plain | scored else words

    def dictate(self, pcm: bytes) -> str:
        """The task after 'my task is'. The listener passes the tail of the utterance just heard: its transcript
        is reused rather than transcribing the same speech again."""
        with self._lock:
            last = self._last
            if last is None or not (pcm and last.pcm.endswith(pcm)):
                last = self._utterance(pcm)
            return task_text(self._transcript(last))


def steady_room(samples: np.ndarray) -> bool:
    """Whether the sound before the speech (the utterance's first ROOM_FRAMES) is steady: noise, hum or quiet, not
    another person talking."""
    levels = frame_levels(samples[:ROOM_FRAMES * ROOM_FRAME], ROOM_FRAME)
    return len(levels) == ROOM_FRAMES and float(levels.max() - levels.min()) <= STEADY_DB


def _tail_s(alignments: Sequence[tuple[int, int]], tokens: int, frames: int) -> float:
    """Seconds of the audio (of `frames` mel frames) that the alignment puts after the phrase's last token: the path
    enters text index `tokens` (the end of text) there."""
    after = [time for text, time in alignments if text >= tokens]
    return max(0.0, frames * HOP / RATE - min(after) * TIME_STEP_S) if after else 0.0


def _spanning(phrase: str, length_s: float) -> list[Word]:
    """The phrase's words over the whole utterance (the score already judged the audio; coverage is full)."""
    words = phrase.split()
    step = length_s / len(words)
    return [Word(w, i * step, (i + 1) * step) for i, w in enumerate(words)]

