"""Past sessions from the journals: task, steps reached, time spent on each step, what was said.

Shown by `stream-assist history` and served as JSON at `GET /history` for the page's view.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .journal import Journal, read_lines


@dataclass
class StepTime:
    step: int  # 0-based
    instruction: str
    seconds: float


@dataclass
class PastSession:
    journal: str  # the journal's name (a hash of the resume token, never the token)
    title: str
    steps: int
    reached: int  # the step the person was on last (== steps when finished)
    started: float  # Unix time of the first event
    last: float
    spoken: int
    times: list[StepTime] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(name: str, events: list[dict[str, Any]]) -> PastSession | None:
    """The latest task of one journal, with the time from each step change to the next."""
    tasks = [i for i, e in enumerate(events) if e["event"] == "task" and isinstance(e.get("steps"), list)]
    if not tasks:
        return None
    task, tail = events[tasks[-1]], events[tasks[-1]:]
    instructions = [s.get("instruction", "") if isinstance(s, dict) else "" for s in task["steps"]]
    changes = [(float(e.get("t", 0)), e["step"]) for e in tail if e["event"] == "step" and isinstance(e.get("step"),
                                                                                                      int)]
    times: dict[int, float] = {}
    for (t, step), (t_next, _) in zip(changes, changes[1:], strict=False):
        if step < len(instructions):
            times[step] = times.get(step, 0.0) + t_next - t
    end = float(tail[-1].get("t", 0))
    if changes and changes[-1][1] < len(instructions):  # the step still open counts until the last event
        times[changes[-1][1]] = times.get(changes[-1][1], 0.0) + end - changes[-1][0]
    return PastSession(name, str(task.get("title", "")), len(instructions), changes[-1][1] if changes else 0,
                       float(events[0].get("t", 0)), end, sum(e["event"] == "spoken" for e in tail),
                       [StepTime(i, instructions[i], round(s, 1)) for i, s in sorted(times.items())])


def past_sessions(journal: Journal, limit: int = 50) -> list[PastSession]:
    """Newest first."""
    out = []
    for path in journal.files()[:limit]:
        if (summary := summarise(path.stem, list(read_lines(path)))) is not None:
            out.append(summary)
    return out


def format_history(sessions: list[PastSession]) -> str:
    """Plain text for the terminal."""
    if not sessions:
        return "no past sessions"
    lines = []
    for s in sessions:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started))
        lines.append(f"{when}  {s.title}  step {min(s.reached + 1, s.steps)}/{s.steps}"
                     f"{' (finished)' if s.reached >= s.steps else ''}  spoken {s.spoken}  [{s.journal}]")
        lines += [f"    {t.step + 1:>2}. {t.seconds:7.1f} s  {t.instruction[:70]}" for t in s.times]
    return "\n".join(lines)
