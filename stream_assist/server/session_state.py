"""What a person has set up in a session, as one value: kept when the connection drops, given back on resume.

A Session holds exactly one `SessionState`; keeping it for a reconnect and restoring it are single assignments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..inference.prompts import PromptSettings

RECENT_GUIDANCE = 5  # texts kept for a reconnecting page to show again


@dataclass
class SessionState:
    """The person's settings and progress; everything else in a Session belongs to one connection."""

    prompt: PromptSettings = field(default_factory=PromptSettings)
    interval_s: float = 0.0  # least time between this session's frames to the model (settings.interval_s)
    paused: bool = False
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_GUIDANCE))  # newest last
    task: Any = None  # the task assistant's own object (task card, current step); opaque to the session

    @property
    def last_text(self) -> str:
        """The newest guidance text, or "" before the first."""
        return self.recent[-1] if self.recent else ""
