"""Ties a session's microphone track to its listener, and what is heard to the session: every utterance is
shown (`heard`), and an accepted command is carried out as exactly its data-channel message would be."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from ..assistant.places import usable_cards
from ..config import AssistantConfig, Config, SpeechConfig, VoiceConfig
from ..speech_out.reference import EchoReference
from ..voice.audio_in import drain, use_packet_jitter_buffer
from ..voice.commands import PHRASES, Heard, Rules
from ..voice.echo import EchoCanceller, canceller_available
from ..voice.faster_whisper_asr import LONGEST_COMMAND_S
from ..voice.faster_whisper_source import PREFIX, chosen_asr
from ..voice.listener import Listener, ListenerSettings
from ..voice.recognisers import shared_recogniser
from ..voice.transcript import normalise
from . import protocol

HELP_TEXT = ("Say: pause, resume, next or done, back, repeat, quiet or stop talking, what now, help, "
             "or 'my task is' and the task.")


def listener_settings(voice: VoiceConfig) -> ListenerSettings:
    """The listener's settings from the config. faster-whisper scores whether only a command was said, so the VAD's
    span (which noise stretches past the word) may be longer before it rules a command out."""
    longest = voice.max_command_s
    if chosen_asr(voice.asr).startswith(PREFIX):
        longest = min(voice.max_utterance_s, max(longest, LONGEST_COMMAND_S))
    return ListenerSettings(voice.vad_aggressiveness, voice.end_silence_ms, voice.max_utterance_s, voice.barge_in_ms,
                            voice.echo_window_s, Rules(voice.min_coverage, longest, voice.max_s_per_phone))


def known_tasks(config: AssistantConfig) -> dict[str, str]:
    """The task cards a person can name by voice: normalised title → card name."""
    return {normalise(c.title): c.name for c in usable_cards(config)}


def spoken_message(heard: Heard, task: str | None, cards: Mapping[str, str] | None = None) -> str | None:
    """The data-channel message text a heard command stands for (None: nothing to carry out). A confirmed task
    that is a known card's title starts that card, as picking it on the page does."""
    if not heard.accepted or heard.command in ("task", "no"):
        return None  # a dictated task is a proposal until "yes"
    if heard.command == "yes":
        card = (cards or {}).get(normalise(task or ""))
        if card is not None:
            return json.dumps({"type": "settings", "card": card})
        return json.dumps({"type": "settings", "task": task}) if task else None
    return json.dumps({"type": heard.command})


class VoiceSession(Protocol):
    """What a voice link needs of its session (a Protocol, so the session imports this module and not the reverse)."""

    pc: RTCPeerConnection
    config: Config

    def send(self, kind: str, **fields: object) -> None: ...

    def send_all(self, messages: list[tuple[str, dict]]) -> None: ...

    def apply(self, message: protocol.ClientMessage) -> None: ...

    def person_speaking(self, on: bool) -> None: ...


class VoiceLink:
    """One session's voice: created on its audio track (at the track event, before any packet), closed with it."""

    def __init__(self, session: VoiceSession, track: MediaStreamTrack) -> None:
        self.session = session
        self.track = track
        receiver = next((t.receiver for t in session.pc.getTransceivers() if t.receiver.track is track), None)
        if receiver is not None:
            use_packet_jitter_buffer(receiver)
        voice = session.config.voice
        self.cards = known_tasks(session.config.assistant) if voice.enabled else {}
        tasks = tuple(sorted(self.cards))
        self.listener = Listener(listener_settings(voice), lambda: shared_recogniser(voice.asr, tasks), self._heard,
                                 self._voice) if voice.enabled else None

    async def listen(self) -> None:
        """Consumes the track for the session's life (also when voice is off: aiortc would queue it)."""
        await drain(self.track, self.listener.feed if self.listener else lambda _pcm: None)

    def speaking(self, message: protocol.Speaking) -> None:
        """The page's own speech (speechSynthesis), as it reports it."""
        self.assistant_speaking(message.on, message.text)

    def assistant_speaking(self, on: bool, text: str) -> None:
        if self.listener is not None:
            self.listener.echo.speaking(on, text)

    def hear_over(self, reference: EchoReference, speech: SpeechConfig) -> None:
        """The server's voice is on this session's audio track: its echo may come back for longer (the round trip
        to the page's loudspeaker), and the canceller takes it out given exactly what was sent."""
        if self.listener is None:
            return
        self.listener.echo.tail_s = speech.echo_tail_s
        if speech.echo_canceller and canceller_available():
            self.listener.canceller = EchoCanceller()
            self.listener.far_end = reference.take

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def _voice(self, state: str) -> None:
        self.session.send("voice", state=state)
        self.session.person_speaking(state == "speech_start")

    def _heard(self, heard: Heard, task: str | None) -> None:
        self.session.send_all([("heard", dict(text=heard.text, command=heard.command, accepted=heard.accepted,
                                              reason=heard.reason, **({"task": task} if heard.command == "task"
                                                                      else {})))])
        raw = spoken_message(heard, task, self.cards)
        if raw is None:
            return
        channel = self.session.config.channel
        try:
            message = protocol.parse_client_message(raw, channel.max_message_bytes, channel.max_prompt_chars)
        except protocol.ProtocolError as e:  # e.g. a command whose message this server does not have yet
            self.session.send("error", code=e.code, message=f"spoken {heard.text!r}: {e}")
            return
        self.session.apply(message)


def help_fields() -> dict[str, object]:
    """The `help` message: the spoken commands and a sentence the page can show and say."""
    return {"commands": sorted(set(PHRASES) | {"yes", "no"}), "text": HELP_TEXT}
