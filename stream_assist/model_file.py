"""Checks a model file before a native loader meets it: llama.cpp and whisper.cpp end the process on a file they
cannot parse, so a wrong path must be a one-line error at start instead."""

from __future__ import annotations

from pathlib import Path


def check_magic(path: Path, magic: bytes, role: str, kind: str, error: type[Exception]) -> Path:
    """Returns path if it is a readable file that starts with magic; otherwise raises error with one line."""
    if not path.exists():
        raise error(f"{role} file not found: {path}")
    if not path.is_file():
        raise error(f"{role} path is not a file: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(magic))
    except OSError as e:
        raise error(f"{role} file cannot be read: {path} ({e.strerror})") from None
    if head != magic:
        raise error(f"{role} file is not {kind}: {path}")
    return path
