"""The person's words when something quieter talks around them: an utterance cut to its one loud stretch.

The VAD keeps an utterance open while anything voice-like goes on, so a command said over a radio or another
person arrives wrapped in seconds of that background (steady noise no longer: vad.py), which whisper transcribes too
("the flower can resume"). The person near the microphone is louder: the stretch within DROP_DB of the loudest
moment is what they said. Only one such stretch counts; several are a sentence said loud throughout.
"""

from __future__ import annotations

import numpy as np

from .levels import frame_power
from .vad import RATE, Utterance

FRAME = RATE // 50  # 20 ms of samples per energy value
SMOOTH_FRAMES = 5  # 100 ms moving average: a syllable's loudness, not a sample's
DROP_DB = 8.0  # louder than this below the peak is the person; a background 10 dB down (20 dB too) falls out
GAP_S = 0.25  # quieter gaps up to this join loud stretches into one (a stop consonant, a word boundary)
MARGIN_S = 0.1  # kept either side of the stretch: the onset and the tail of the word fall below DROP_DB
MIN_CUT_S = 0.4  # a stretch this much shorter than the VAD's speech is worth hearing on its own


def loud_stretch(samples: np.ndarray) -> tuple[int, int] | None:
    """The first and last sample (exclusive) of the one stretch within DROP_DB of the loudest 100 ms, or None
    when the loud sound comes in several stretches more than GAP_S apart (or the audio is under 60 ms)."""
    frames = len(samples) // FRAME
    if frames < 3:
        return None
    power = np.convolve(frame_power(samples, FRAME), np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    level = 10 * np.log10(power)
    loud = np.flatnonzero(level >= level.max() - DROP_DB)
    if np.any(np.diff(loud) > GAP_S * RATE / FRAME):
        return None
    return int(loud[0]) * FRAME, (int(loud[-1]) + 1) * FRAME


def foreground(utterance: Utterance) -> Utterance | None:
    """The utterance cut to its loud stretch (with MARGIN_S either side), when that is at least MIN_CUT_S shorter
    than the VAD's speech; None when there is nothing to cut away."""
    if utterance.cut:
        return None
    samples = np.frombuffer(utterance.pcm, np.int16)
    stretch = loud_stretch(samples)
    if stretch is None or utterance.speech_s - (stretch[1] - stretch[0]) / RATE < MIN_CUT_S:
        return None
    first, last = max(0, stretch[0] - int(MARGIN_S * RATE)), min(len(samples), stretch[1] + int(MARGIN_S * RATE))
    origin = utterance.start_s - utterance.pre_pad_s  # the stream time of the PCM's first sample
    return Utterance(samples[first:last].tobytes(), origin + stretch[0] / RATE, origin + stretch[1] / RATE,
                     (stretch[0] - first) / RATE)
