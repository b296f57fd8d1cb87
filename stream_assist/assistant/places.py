"""Where the assistant keeps things: user cards under the XDG config dir, journals under the XDG data dir."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import AssistantConfig
from .cards import SHIPPED_DIR, Card, Limits, list_cards
from .journal import Journal


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if value else Path.home() / fallback


def card_dirs(config: AssistantConfig) -> list[Path]:
    """Shipped cards first, then the user's (which win on a name clash)."""
    user = Path(config.cards_dir).expanduser() if config.cards_dir else _xdg("XDG_CONFIG_HOME", ".config")
    return [SHIPPED_DIR, user if config.cards_dir else user / "stream-assist" / "tasks"]


def data_dir(config: AssistantConfig) -> Path:
    if config.data_dir:
        return Path(config.data_dir).expanduser()
    return _xdg("XDG_DATA_HOME", ".local/share") / "stream-assist"


def limits(config: AssistantConfig) -> Limits:
    return Limits(config.max_steps, config.max_step_chars)


def usable_cards(config: AssistantConfig) -> list[Card]:
    """The cards a person can pick (on the page or by voice): broken ones are left out."""
    return [c for c in list_cards(card_dirs(config), limits(config)) if isinstance(c, Card)]


def journal_for(config: AssistantConfig) -> Journal:
    return Journal(data_dir(config), config.journal_max_age_days, config.journal_max_sessions)
