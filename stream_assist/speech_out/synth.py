"""A loaded Piper voice: a piece of text → its samples at the track's 48 kHz and the echo reference's 16 kHz.

Synthesis runs on the process's one speech thread (apart from the event loop, enhancement, inference and the
voice thread); onnxruntime gets at most two threads and no spinning, so speaking costs ~0.1 s of CPU per second
of speech instead of busy-waiting cores the model needs.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass

import av
import numpy as np

from ..threads import one_thread
from .voices import VoiceError, VoiceFiles, read_config, scripts_of

log = logging.getLogger(__name__)

TRACK_RATE, REFERENCE_RATE = 48000, 16000  # Opus's rate; the listener's (and so its echo canceller's)


def speech_executor() -> Executor:
    """The process's one speech thread: synthesis never waits on, nor delays, the loop or the other stages."""
    return one_thread("speech")


def resample(samples: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """int16 mono samples at `rate` → at `to_rate` (PyAV's libswresample; the tail flushed)."""
    if rate == to_rate:
        return samples
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


class _Stoppable:
    """Piper's onnxruntime session, run with RunOptions that stop() can end from another thread: a piece of an
    utterance cut short (a barge-in, newer guidance) stops being synthesised at once instead of holding the speech
    thread for the next utterance."""

    def __init__(self, session, onnxruntime) -> None:  # noqa: ANN001 - onnxruntime.InferenceSession, the module
        self.session, self.ort = session, onnxruntime
        self.options = onnxruntime.RunOptions()

    def run(self, names, feeds):  # noqa: ANN001, ANN201 - as InferenceSession.run, which Piper calls
        return self.session.run(names, feeds, run_options=self.options)

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else Piper reads of the session
        return getattr(self.session, name)


@dataclass(frozen=True)
class Audio:
    """One piece's speech: 48 kHz for the track, 16 kHz (a third as long) for the echo reference."""

    track: np.ndarray
    reference: np.ndarray


class Synthesiser:
    """One Piper voice, shared by every session; call synthesise() on the speech thread only."""

    def __init__(self, files: VoiceFiles, length_scale: float = 1.0) -> None:
        config = read_config(files.config)
        try:
            import onnxruntime
            from piper import PiperVoice, SynthesisConfig
            from piper.config import PiperConfig

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = min(2, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(str(files.model), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
            self._session = _Stoppable(session, onnxruntime)
            self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=self._session)
        except ImportError as e:
            raise VoiceError(f"the server voice needs piper-tts: pip install 'stream-assist[speech]' ({e})") from None
        except Exception as e:  # onnxruntime's errors for a file that is not a model have no common base
            raise VoiceError(f"{files.model} is not a Piper voice model: {str(e).splitlines()[0][:200]}") from None
        self.name = files.name
        self.rate = self.voice.config.sample_rate
        self.scripts = scripts_of(config)
        self.options = SynthesisConfig(length_scale=length_scale)
        try:
            probe = self.synthesise("Ready.")
        except Exception as e:  # a model of another shape fails only when run
            raise VoiceError(f"{files.model} does not run as a Piper voice: {str(e).splitlines()[0][:200]}") from None
        if not len(probe.track):
            raise VoiceError(f"{files.model} made no sound for a test word")

    def run_options(self):  # noqa: ANN201 - onnxruntime.RunOptions
        """Options for one synthesise() call; setting their `terminate` (from any thread) ends it: it raises."""
        return self._session.ort.RunOptions()

    def synthesise(self, text: str, options=None) -> Audio:  # noqa: ANN001 - onnxruntime.RunOptions | None
        """Speech for one piece of text (already made sayable); empty arrays when there is nothing to say."""
        self._session.options = options if options is not None else self._session.ort.RunOptions()
        chunks = [c.audio_int16_array for c in self.voice.synthesize(text, syn_config=self.options)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return Audio(resample(samples, self.rate, TRACK_RATE), resample(samples, self.rate, REFERENCE_RATE))
