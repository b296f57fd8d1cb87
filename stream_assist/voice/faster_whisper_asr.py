"""Whisper through faster-whisper / CTranslate2 as a Recogniser: commands scored, tasks transcribed.

A lone word transcribed freely is a guess ("pause" → "Bause.", "back" → "Bye."), so a command is decided among the
grammar's phrases: the audio is encoded once on a short window (3 s, not the 30 s faster-whisper pads to), one
decoding step ranks the phrases by their first token, the likeliest few are scored in full against the audio in one
batched teacher-forced pass (CTranslate2's `Whisper.align`), and the best counts only when it is likely on its own,
ahead of the runner-up, and ends where the speech ends (its full stop likely). Free transcription runs
only for what is not a command: "my task is …" and the sentences shown as heard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .commands import CONFIRM, PHRASES, TASK_PREFIX, Word
from .transcript import normalise, task_text, transcript_words

RATE = 16000
HOP = 160  # samples per mel frame
LEAD_S = 0.2  # silence before the utterance: whisper drops a word cut right at the start of its input
COMMAND_FRAMES = 300  # a command's window, 3 s: encoded in ~12-25 ms instead of the 30 s window's ~450 ms
MAX_FRAMES = 3000  # whisper's own window, for long speech
TAIL_FRAMES = 300  # silence after speech to be transcribed: with 1 s, 25 % word error on tasks; 3 s, 12 %
# a phrase's summed token log-probability must reach MIN_SCORE and beat every other phrase by MIN_MARGIN (nats).
# Measured on `bench voice`'s voices (clean; noise, another voice and a room at 10 dB; noise at 20 dB): commands said
# scored -4.3 at the median (5 % below -10.8), sentences -12.7 (5 % above -6.4); this pair kept sentences taken for
# a command at 1 % and commands taken for another at 0 %, with clean commands 100 % right
MIN_SCORE = -9.0
MIN_MARGIN = 1.0
# and the phrase must end where the speech ends: its full stop (the last token) at least this likely. "Next to the
# red one" scored " Next." well but its "." at -5 to -7.6, commands said alone -1 to -5.4 (noise and rooms at 10 dB
# included); on `bench voice`'s set this took sentences taken for a command from 37 to 17 utterances, none of the
# 287 commands heard right lost (-5.0 lost 6 "what now"s in noise)
MIN_ENDING = -5.5
# and the audio after the phrase, as whisper's own alignment places it (the time after its last token), is no longer
# than this: "next to the red one" scored " Next." with a likely full stop, in noise or a room at 10 dB, and left
# 0.48-1.16 s of the speech after it; commands said (another talker around them included) left at most 0.40 s
MAX_TAIL_S = 0.45
TIME_STEP_S = 0.02  # of one alignment time index (the encoder's output frame)
TASK_START = " My task is"  # forced at the start of a task's second transcription
PROMPT_TOKENS = 223  # whisper's longest text before the transcript (half its 448-token context, less one)
SHORTLIST = 3  # phrases scored in full, after one decoding step ranks their first tokens (~5 ms)
LONGEST_COMMAND_S = 2.2  # of speech as the VAD spans it: noise keeps it on past the word; the scores judge the rest
THREADS = 1  # one core on the voice thread: the other stays with the vision model


def spelled(phrase: str) -> str:
    """How whisper writes a phrase said on its own: ' Next.', ' What now.' (the full stop scores its ending)."""
    return f" {phrase.capitalize()}."


@dataclass
class Encoded:
    """One utterance: its audio (after LEAD_S of silence) and what has been worked out from it so far."""

    pcm: bytes
    audio: np.ndarray  # float32 at 16 kHz
    features: dict[int, object] = field(default_factory=dict)  # window in frames → encoder output (StorageView)
    scores: dict[str, float] | None = None  # per phrase, once scored
    endings: dict[str, float] = field(default_factory=dict)  # per phrase scored, its last token's log-probability
    tails: dict[str, float] = field(default_factory=dict)  # per phrase scored, seconds of audio aligned after it
    confirming: bool = False  # whether yes / no were among the phrases scored
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
        self._phrases = {p: self._tokenizer.encode(spelled(p)) for p in [*PHRASES, *CONFIRM] if p != TASK_PREFIX}
        self._last: Encoded | None = None  # the utterance just heard: its early and final passes share it
        self.last_confidence: float | None = None  # best phrase's margin over the runner-up, for `bench voice`

    def _utterance(self, pcm: bytes) -> Encoded:
        """The utterance being heard: the same object for the early and the final pass over the same PCM."""
        if self._last is None or self._last.pcm != pcm:
            samples = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
            self._last = Encoded(pcm, np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), samples]))
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

    def _scores(self, encoded: Encoded, confirming: bool) -> dict[str, float]:
        """The shortlisted phrases' summed log-probabilities of their tokens given the audio (each phrase scored
        costs ~3.5 ms, the ranking step ~5 ms; yes and no are candidates only while a task waits for them)."""
        if encoded.scores is None or encoded.confirming != confirming:
            import ctranslate2

            phrases = [p for p in self._phrases if confirming or p not in CONFIRM]
            encoded.confirming = confirming
            features = self._encoded(encoded, COMMAND_FRAMES)
            if len(phrases) > SHORTLIST:  # the phrases whose first token the audio makes likeliest
                first = self._model.generate(features, [self._start], beam_size=1, max_length=2,
                                             return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])
                logits = np.asarray(first[0].logits[0])[0]
                phrases = sorted(phrases, key=lambda p: logits[self._phrases[p][0]], reverse=True)[:SHORTLIST]
            batch = np.repeat(np.asarray(features), len(phrases), axis=0)
            frames = min(encoded.frames, COMMAND_FRAMES)
            results = self._model.align(ctranslate2.StorageView.from_array(batch), self._start,
                                        [self._phrases[p] for p in phrases], frames)
            logs = {p: np.log(np.maximum(r.text_token_probs, 1e-30)) for p, r in zip(phrases, results, strict=True)}
            encoded.scores = {p: float(np.sum(v)) for p, v in logs.items()}
            encoded.endings = {p: float(v[-1]) for p, v in logs.items()}
            encoded.tails = {p: _tail_s(r.alignments, len(self._phrases[p]), frames)
                             for p, r in zip(phrases, results, strict=True)}
        return encoded.scores

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
                                      max_length=len(start) - len(self._start) + longest)[0]  # the text before counts
        return self._tokenizer.decode(result.sequences_ids[0]).strip()

    def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
        """The phrase said, spanning the utterance; or, for anything else, its transcript (which the rules reject,
        or take as "my task is …"); none when the transcript reads as a command the scores did not back."""
        with self._lock:
            encoded = self._utterance(pcm)
            length_s = len(pcm) / 2 / RATE
            if encoded.frames > COMMAND_FRAMES:  # longer than any command: only "my task is …" or a sentence
                return transcript_words([(0.0, length_s, self._transcript(encoded))])
            scores = self._scores(encoded, confirming)
            best, runner_up = sorted(scores, key=scores.get, reverse=True)[:2]
            self.last_confidence = scores[best] - scores[runner_up]
            if (scores[best] >= MIN_SCORE and self.last_confidence >= MIN_MARGIN
                    and encoded.endings[best] >= MIN_ENDING and encoded.tails[best] <= MAX_TAIL_S):
                return _spanning(best, length_s)
            words = transcript_words([(0.0, length_s, self._transcript(encoded))])
            return [] if " ".join(w.text for w in words) in scores else words

    def dictate(self, pcm: bytes) -> str:
        """The task after 'my task is'. The listener passes the tail of the utterance just heard: its transcript
        is reused rather than transcribing the same speech again."""
        with self._lock:
            last = self._last
            if last is None or not (pcm and last.pcm.endswith(pcm)):
                last = self._utterance(pcm)
            return task_text(self._transcript(last))


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

