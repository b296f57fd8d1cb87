"""Ties a session to the server's voice: its audio transceiver carries a SpeechTrack, what the session says is
spoken there, and every start and end goes to the page (`speech`), to the timeline ("speech out") and to the
listener (so the assistant's own voice is neither a barge-in nor a command).

Attached only when the offer lets the page receive audio (its microphone's transceiver sendrecv, or a recvonly
one); otherwise the page speaks with speechSynthesis as before.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from ..config import SpeechConfig
from ..latency.timeline import Timeline
from ..speech_out.reference import EchoReference
from ..speech_out.speaker import Speaker
from ..speech_out.synth import Synthesiser
from ..speech_out.text import first_sentence
from ..speech_out.track import SpeechTrack, Utterance
from .metrics import Metrics

KEEP_TIMELINES = 8  # frames whose speech may still start (the newest few)


def receiving_transceiver(pc: RTCPeerConnection) -> RTCRtpTransceiver | None:
    """The offer's first audio section in which the page will receive (aiortc internal: the offer's direction seen
    from this side, so a page's recvonly is sendonly here)."""
    for t in pc.getTransceivers():
        if t.kind == "audio" and getattr(t, "_offerDirection", None) in ("sendrecv", "sendonly") \
                and t.sender.track is None:
            return t
    return None


class SpeechLink:
    """One session's voice; every method runs on the event loop."""

    def __init__(self, synth: Synthesiser, transceiver: RTCRtpTransceiver, config: SpeechConfig, metrics: Metrics,
                 send: Callable[..., None], hearing: Callable[[bool, str], None]) -> None:
        self.reference = EchoReference()
        self.track = SpeechTrack(self.reference)
        transceiver.sender.replaceTrack(self.track)
        transceiver.direction = "sendrecv" if transceiver._offerDirection == "sendrecv" else "sendonly"
        self.speaker = Speaker(synth, self.track, self._report, config.max_chars)
        self.metrics = metrics
        self.send = send
        self.hearing = hearing  # the listener's echo guard: (speaking, text)
        self.timelines: OrderedDict[int, Timeline] = OrderedDict()
        self.early: tuple[int, str, Utterance] | None = None  # an answer's first sentence said while it was written
        self.spoken = 0
        self.stopped = 0

    # --- what is said -------------------------------------------------------------------------------

    def partial(self, frame_id: int, timeline: Timeline, text: str, speaks: Callable[[str], bool]) -> None:
        """An answer being written: its first sentence is said at once when the rule will say the answer."""
        if self.early is not None and self.early[0] == frame_id:
            return
        sentence = first_sentence(text)
        if sentence is None or not speaks(sentence):
            return
        self._keep(frame_id, timeline)
        utterance = self.speaker.say(sentence, frame_id, more=True)
        if utterance is not None:
            self.early = (frame_id, sentence, utterance)

    def sent(self, kind: str, fields: dict, timeline: Timeline | None = None) -> None:
        """A message the session sent: guidance with `speak`, help, and a dictated task's read-back are said."""
        if kind == "guidance":
            self._guidance(fields, timeline)
        elif kind == "help":
            self.speaker.say(str(fields.get("text", "")))
        elif kind == "heard" and fields.get("command") == "task" and fields.get("accepted"):
            self.speaker.say(f"Your task: {fields.get('task', '')}. Say yes or no.")

    def _guidance(self, fields: dict, timeline: Timeline | None) -> None:
        frame_id, text = fields.get("frame_id"), str(fields.get("text", ""))
        early, self.early = self.early, None
        if early is not None and early[0] == frame_id and not early[2].ended:
            _, sentence, utterance = early
            rest = text.strip()[len(sentence):] if fields.get("speak") and text.strip().startswith(sentence) else ""
            self.speaker.extend(utterance, rest)  # the first sentence is already being said
            return
        if not fields.get("speak"):
            return
        if isinstance(frame_id, int) and timeline is not None:
            self._keep(frame_id, timeline)
        self.speaker.say(text, frame_id if isinstance(frame_id, int) else None)

    def repeat(self) -> bool:
        """Says the last thing said again (no task: `repeat` has nothing else to repeat); False if nothing was."""
        if not self.speaker.last_text:
            return False
        self.speaker.say(self.speaker.last_text)
        return True

    def stop(self, reason: str) -> None:
        """Silence from the next frame on: the person spoke (barge_in), paused, or asked for quiet."""
        self.early = None
        self.speaker.stop(reason)

    def close(self) -> None:
        self.speaker.close()
        self.track.stop()

    # --- reports ------------------------------------------------------------------------------------

    def _keep(self, frame_id: int, timeline: Timeline) -> None:
        self.timelines[frame_id] = timeline
        while len(self.timelines) > KEEP_TIMELINES:
            self.timelines.popitem(last=False)

    def _report(self, state: str, utterance: Utterance | None, fields: dict) -> None:
        if utterance is None:  # skipped: nothing sayable
            self.send("speech", state=state, **fields)
            return
        about = {"frame_id": utterance.frame_id}
        if state == "start":
            self.spoken += 1
            self.hearing(True, utterance.text)
            started = utterance.started_at or time.time()
            out: dict = {"text": utterance.text, "at_ms": round(started * 1000, 3),
                         "ready_to_speech_ms": round((started - utterance.handed_at) * 1000, 3)}
            timeline = self.timelines.get(utterance.frame_id) if utterance.frame_id is not None else None
            if timeline is not None:
                timeline.mark("speech_out", started)
                out["timeline"] = timeline.as_ms()
            self.metrics.observe_speech(started - utterance.handed_at, timeline)
            self.send("speech", state="start", **about, **out)
        elif state == "end":
            self.hearing(False, "")
            if fields.get("how") == "stopped":
                self.stopped += 1  # the next frame is silence
            self.send("speech", state="end", **about, **fields, at_ms=round(time.time() * 1000, 3))
        else:  # error
            self.send("speech", state=state, **about, **fields)
