"""Task cards: a title and ordered steps (instruction, optional done-when and caution), from TOML files or typed.

Everything that becomes a card is checked here against the configured limits, so a bad card is one clear
`CardError` and never a half-set task. Text that could steer the model's chat template is refused.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "configs" / "tasks"
CARD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Markers of SmolVLM's and common chat templates: in step text they would end the user's turn or fake an image.
TEMPLATE_TOKEN = re.compile(r"<\|[^|>]{0,40}\|>|<end_of_utterance>|</?s>|<image>|<fake_token_around_image>"
                            r"|<global-img>|<row_\d+_col_\d+>|\b(?:User|Assistant):", re.IGNORECASE)


class CardError(ValueError):
    """A card or step list that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Limits:
    """How much a task may hold (assistant.max_steps, max_step_chars)."""

    max_steps: int = 50
    max_step_chars: int = 300


@dataclass(frozen=True)
class Step:
    instruction: str
    done_when: str = ""  # what the camera shows once the step is done
    caution: str = ""  # said with the step, and whenever the model reports a hazard during it


@dataclass(frozen=True)
class Card:
    name: str  # file stem for shipped and user cards; "typed" or "drafted" for steps from the page
    title: str
    steps: tuple[Step, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title,
                "steps": [{"instruction": s.instruction, "done_when": s.done_when, "caution": s.caution}
                          for s in self.steps]}


def clean_text(value: Any, where: str, limits: Limits, required: bool = True) -> str:
    """One piece of card text: a string, within the limit, without control characters or template markers."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise CardError(f"{where} must be text")
    text = " ".join(value.split())
    if required and not text:
        raise CardError(f"{where} is empty")
    if len(text) > limits.max_step_chars:
        raise CardError(f"{where} is {len(text)} characters; the limit is {limits.max_step_chars}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text):
        raise CardError(f"{where} contains control characters")
    if TEMPLATE_TOKEN.search(text):
        raise CardError(f"{where} contains a chat-template marker ({TEMPLATE_TOKEN.search(text).group(0)!r})")
    return text


def card_from_dict(name: str, data: Any, limits: Limits) -> Card:
    """A card from parsed TOML (or JSON): `title` and `[[steps]]` tables with `instruction`, `done_when`, `caution`."""
    if not isinstance(data, dict):
        raise CardError(f"card {name!r} must be a table")
    unknown = sorted(set(data) - {"title", "steps"})
    if unknown:
        raise CardError(f"card {name!r}: unknown key {unknown[0]!r} (known: steps, title)")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise CardError(f"card {name!r} has no steps")
    if len(raw_steps) > limits.max_steps:
        raise CardError(f"card {name!r} has {len(raw_steps)} steps; the limit is {limits.max_steps}")
    steps = []
    for i, raw in enumerate(raw_steps, 1):
        if isinstance(raw, str):
            raw = {"instruction": raw}
        if not isinstance(raw, dict):
            raise CardError(f"card {name!r} step {i} must be a table or text")
        extra = sorted(set(raw) - {"instruction", "done_when", "caution"})
        if extra:
            raise CardError(f"card {name!r} step {i}: unknown key {extra[0]!r}")
        steps.append(Step(clean_text(raw.get("instruction"), f"step {i}", limits),
                          clean_text(raw.get("done_when"), f"step {i} done_when", limits, required=False),
                          clean_text(raw.get("caution"), f"step {i} caution", limits, required=False)))
    return Card(name, clean_text(data.get("title"), f"card {name!r} title", limits), tuple(steps))


def typed_card(title: str, texts: list[str], limits: Limits, name: str = "typed") -> Card:
    """Steps typed or pasted in the page (or a draft the person accepted): instructions only."""
    return card_from_dict(name, {"title": title.strip() or "Your task", "steps": list(texts)}, limits)


def load_card_file(path: Path, limits: Limits) -> Card:
    name = path.stem
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CardError(f"cannot read card {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"card {path} is not valid TOML: {e}") from None
    return card_from_dict(name, data, limits)


def card_files(dirs: list[Path]) -> dict[str, Path]:
    """Card name → file; a user card of the same name as a shipped one replaces it (later dirs win)."""
    found: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            found.update({p.stem: p for p in sorted(d.glob("*.toml")) if CARD_NAME.fullmatch(p.stem)})
    return found


def find_card(name: str, dirs: list[Path], limits: Limits) -> Card:
    """The named card, checked; CardError when there is none of that name or it is broken."""
    files = card_files(dirs)
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise CardError(f"unknown card {name[:64]!r} (known: {known})")
    return load_card_file(files[name], limits)


def list_cards(dirs: list[Path], limits: Limits) -> list[Card | CardError]:
    """Every card found, or the error that keeps it from loading (so `stream-assist tasks` shows both)."""
    out: list[Card | CardError] = []
    for path in card_files(dirs).values():
        try:
            out.append(load_card_file(path, limits))
        except CardError as e:
            out.append(e)
    return out
