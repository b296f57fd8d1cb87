"""Each person's task events as JSON lines on disk, flushed and fsync'd per event, so nothing is lost.

One file per resume token (named by the token's hash, so a listing never reveals a token), in the data
directory. A line cut short by a crash, or garbage, is skipped with a warning. Old files go by age and count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


def journal_key(resume_token: str) -> str:
    return hashlib.sha256(resume_token.encode()).hexdigest()[:24]


class Journal:
    """The directory of journals, with its retention limits."""

    def __init__(self, directory: Path, max_age_days: float = 30.0, max_sessions: int = 200) -> None:
        self.directory = directory
        self.max_age_s = max_age_days * 86400.0
        self.max_sessions = max_sessions

    def path(self, resume_token: str) -> Path:
        """The journal file of one person (named by a hash of the token)."""
        return self.directory / (journal_key(resume_token) + SUFFIX)

    def append(self, resume_token: str, event: str, **fields: Any) -> dict[str, Any]:
        """Writes one event durably (flush + fsync) before returning it."""
        record = {"t": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(resume_token)
        with open(path, "ab") as f:
            if f.tell() > 0 and not _ends_with_newline(path):  # a crash cut the last line: start a fresh one
                f.write(b"\n")
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        return record

    def read(self, resume_token: str) -> list[dict[str, Any]]:
        """One person's events in order; damaged lines skipped."""
        return list(read_lines(self.path(resume_token)))

    def files(self) -> list[Path]:
        """Journals, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*" + SUFFIX), key=lambda p: p.stat().st_mtime, reverse=True)

    def prune(self, now: float | None = None) -> int:
        """Removes journals older than max_age_days and all but the newest max_sessions; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for i, path in enumerate(self.files()):
            if i >= self.max_sessions or now - path.stat().st_mtime > self.max_age_s:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The events of one journal in order; a truncated or garbage line is skipped with a warning."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            log.warning("journal %s line %d is damaged (%d bytes); skipped", path.name, number, len(raw))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            log.warning("journal %s line %d is not an event; skipped", path.name, number)
            continue
        yield record
