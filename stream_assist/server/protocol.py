"""The data-channel protocol: JSON text messages with a `type` field (docs/protocol.md).

Browser → server: `settings`, `pause`, `resume`; the task assistant's `next`, `back`, `repeat`, `what_now`, `draft`;
voice's `quiet`, `help`, `speaking`. Server → browser: `status`, `guidance`, `error`; the assistant's `task` and
`steps_draft`; voice's `heard`, `voice`, `help`.
Incoming messages are checked here, before anything acts on them; a bad one becomes a
`ProtocolError` that the session answers with an `error` message and otherwise ignores.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ..inference.prompts import PRESET_NAMES

PROTOCOL_VERSION = 1
RESUME_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ProtocolError(ValueError):
    """An incoming message that cannot be acted on; code is machine-readable, str(e) is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    """A `settings` message: only the fields present are changed."""

    preset: str | None = None
    task: str | None = None
    prompt: str | None = None
    interval_s: float | None = None  # least time between this session's frames to the model; 0: as often as it can
    steps: tuple[str, ...] | None = None  # a task typed in the page (its title is `task`); checked by assistant/cards
    card: str | None = None  # a task card's name (configs/tasks/ or the user's cards dir)


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class TaskCommand:
    """One of the task assistant's commands (tapped or spoken): `name` is the message type, one of TASK_COMMANDS."""

    name: str


@dataclass(frozen=True)
class Draft:
    """Asks the model to draft steps for a named task from the next frame (answered with `steps_draft`)."""

    task: str


TASK_COMMANDS = ("next", "back", "repeat", "what_now")
MAX_STEPS_FIELD = 500  # a sanity bound on the wire; the configured limits (assistant.max_steps) are checked later


@dataclass(frozen=True)
class Quiet:
    """Stop talking: the page stops speaking and stays show-only until `resume` (or a new step)."""


@dataclass(frozen=True)
class Help:
    """Which spoken commands there are (answered with a `help` message)."""


@dataclass(frozen=True)
class Speaking:
    """The page reports its own speech, so the server does not take it for the person's."""

    on: bool
    text: str = ""


@dataclass(frozen=True)
class Record:
    """Starts or stops recording the session (stream_assist/record/): the page's Record switch."""

    on: bool


ClientMessage = Settings | Pause | Resume | TaskCommand | Draft | Quiet | Help | Speaking | Record
MAX_SPEAKING_CHARS = 1000


def _text_field(data: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"{name} must be a string")
    if len(value) > max_chars:
        raise ProtocolError("bad_field", f"{name} is longer than {max_chars} characters")
    return value


MAX_INTERVAL_S = 600.0


def _interval_field(data: dict[str, Any]) -> float | None:
    value = data.get("interval_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_INTERVAL_S:
        raise ProtocolError("bad_field", f"interval_s must be a number of seconds from 0 to {MAX_INTERVAL_S:g}")
    return float(value)


def _steps_field(data: dict[str, Any]) -> tuple[str, ...] | None:
    value = data.get("steps")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("bad_field", "steps must be a list of step texts")
    if len(value) > MAX_STEPS_FIELD:
        raise ProtocolError("bad_field", f"steps has more than {MAX_STEPS_FIELD} entries")
    return tuple(value)


def parse_client_message(raw: str | bytes, max_bytes: int, max_prompt_chars: int) -> ClientMessage:
    """Parses and checks one message from the browser."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError("too_large", f"message of {size} bytes is over the {max_bytes}-byte limit")
    if isinstance(raw, bytes):
        raise ProtocolError("bad_message", "binary messages are not part of the protocol; send JSON text")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", "message must be a JSON object with a string 'type'")
    kind = data["type"]
    if kind == "pause":
        return Pause()
    if kind == "resume":
        return Resume()
    if kind in ("quiet", "help", "speaking"):
        return _voice_message(kind, data)
    if kind == "record":
        if not isinstance(data.get("on"), bool):
            raise ProtocolError("bad_field", "record needs on: true or false")
        return Record(data["on"])
    if kind == "settings":
        unknown = sorted(set(data) - {"type", "preset", "task", "prompt", "interval_s", "steps", "card"})
        if unknown:
            raise ProtocolError("bad_field", f"unknown settings field {unknown[0]!r}")
        preset = _text_field(data, "preset", 64)
        if preset is not None and preset not in PRESET_NAMES:
            raise ProtocolError("bad_field", f"unknown preset {preset!r} (known: {', '.join(PRESET_NAMES)})")
        prompt = _text_field(data, "prompt", max_prompt_chars)
        if preset == "custom" and not (prompt or "").strip():
            raise ProtocolError("bad_field", "the custom preset needs a non-empty prompt")
        return Settings(preset, _text_field(data, "task", max_prompt_chars), prompt, _interval_field(data),
                        _steps_field(data), _text_field(data, "card", 64))
    if kind in TASK_COMMANDS:
        return TaskCommand(kind)
    if kind == "draft":
        task = _text_field(data, "task", max_prompt_chars)
        if not (task or "").strip():
            raise ProtocolError("bad_field", "draft needs a non-empty task")
        return Draft(task)
    raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")


def _voice_message(kind: str, data: dict[str, Any]) -> ClientMessage:
    if kind == "quiet":
        return Quiet()
    if kind == "help":
        return Help()
    if not isinstance(data.get("on"), bool):
        raise ProtocolError("bad_field", "speaking needs on: true or false")
    return Speaking(data["on"], _text_field(data, "text", MAX_SPEAKING_CHARS) or "")


def parse_clock_ping(raw: str | bytes) -> float:
    """A clock-channel `ping`: `{"type": "ping", "t0": <client ms>}`; returns t0."""
    if isinstance(raw, bytes) or len(raw) > 256:
        raise ProtocolError("bad_message", "clock messages are short JSON text")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ProtocolError("bad_json", "clock message is not valid JSON") from None
    if not isinstance(data, dict) or data.get("type") != "ping":
        raise ProtocolError("unknown_type", "the clock channel takes only ping messages")
    t0 = data.get("t0")
    if not isinstance(t0, (int, float)) or isinstance(t0, bool) or not math.isfinite(t0):
        raise ProtocolError("bad_field", "t0 must be a finite number of milliseconds")
    return float(t0)


class RateLimit:
    """Token bucket: `rate` messages a second sustained, bursts up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate, self.capacity = rate, 2 * rate
        self.tokens, self.last = self.capacity, None

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def encode(kind: str, **fields: Any) -> str:
    """A server → browser message as JSON text."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def new_resume_token() -> str:
    """An unguessable token that names one person's session state across reconnects and server restarts."""
    return secrets.token_urlsafe(16)


def parse_resume_token(value: Any) -> str | None:
    """The offer's optional `resume` field: None when absent; ProtocolError when it is not a token we could issue."""
    if value is None:
        return None
    if not isinstance(value, str) or not RESUME_TOKEN.fullmatch(value):
        raise ProtocolError("bad_field", "resume must be a token from an earlier status (16-64 of A-Z a-z 0-9 _ -)")
    return value
