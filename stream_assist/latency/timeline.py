"""Per-frame timelines: when each stage touched a frame, recorded by the pipeline as it runs.

Times are wall-clock seconds (time.time()) so they can be compared with the browser's clock once
the offset is known; the guidance message carries them in milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# The stages in the order a frame passes them; "speech_out" (the first sample of its spoken guidance leaving the
# server, on the session's audio track) only for frames whose guidance the server's voice says.
STAGES = ("decoded", "sampled", "enhanced", "queued", "taken", "inference_start", "first_token", "done", "sent",
          "speech_out")


@dataclass
class Timeline:
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> None:
        """Records that the frame reached stage now (or at the given time)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.marks[stage] = time.time() if at is None else at

    def as_ms(self) -> dict[str, float]:
        """Marks as epoch milliseconds, in stage order."""
        return {s: round(self.marks[s] * 1000.0, 3) for s in STAGES if s in self.marks}

    def durations_ms(self) -> dict[str, float]:
        """Time spent getting to each stage from the one before it, up to "sent" (speech may start before the
        guidance is complete: its first sentence is said while the rest is written)."""
        present = [s for s in STAGES[:-1] if s in self.marks]
        pairs = zip(present, present[1:], strict=False)
        return {b: round((self.marks[b] - self.marks[a]) * 1000.0, 3) for a, b in pairs}
