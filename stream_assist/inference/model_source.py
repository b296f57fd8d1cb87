"""Finds the model files: local paths as given, or a SmolVLM variant from the Hugging Face hub.

The hub files are downloaded once into the user's Hugging Face cache (with huggingface_hub's own
progress bar) and found there on later starts, also without a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from ..model_file import check_magic


class ModelFileError(ValueError):
    """A model file is missing, unreadable or not a GGUF file."""


@dataclass(frozen=True)
class Variant:
    repo: str
    text_prefs: tuple[str, ...]  # file names in order of preference
    mmproj_prefs: tuple[str, ...]


def _variant(size: str) -> Variant:
    stem = f"SmolVLM-{size}-Instruct"
    return Variant(
        repo=f"ggml-org/{stem}-GGUF",
        text_prefs=(f"{stem}-Q4_K_M.gguf", f"{stem}-Q8_0.gguf", f"{stem}-f16.gguf"),
        mmproj_prefs=(f"mmproj-{stem}-f16.gguf", f"mmproj-{stem}-Q8_0.gguf"),
    )


VARIANTS: dict[str, Variant] = {"500m": _variant("500M"), "256m": _variant("256M")}


@dataclass(frozen=True)
class ModelFiles:
    text: Path
    mmproj: Path
    source: str  # where they came from, for the start-up log and /health


def check_gguf(path: Path, role: str) -> Path:
    """Returns path if it is a readable GGUF file; otherwise raises a one-line ModelFileError."""
    return check_magic(path, b"GGUF", role, "a GGUF model", ModelFileError)


def _pick(available: list[str], prefs: tuple[str, ...], repo: str) -> str:
    for name in prefs:
        if name in available:
            return name
    raise ModelFileError(f"none of {', '.join(prefs)} found in hub repo {repo}")


def _download(variant: Variant) -> tuple[Path, Path]:
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        available = list_repo_files(variant.repo)
    except Exception:  # offline or hub unreachable: fall back to whatever the cache holds
        available = None

    def fetch(prefs: tuple[str, ...]) -> Path:
        if available is not None:
            return Path(hf_hub_download(variant.repo, _pick(available, prefs, variant.repo)))
        for name in prefs:
            try:
                return Path(hf_hub_download(variant.repo, name, local_files_only=True))
            except LocalEntryNotFoundError:
                continue
        raise ModelFileError(f"cannot reach the hub for {variant.repo} and no copy is cached; "
                             "pass --model and --mmproj with local files")

    return fetch(variant.text_prefs), fetch(variant.mmproj_prefs)


def resolve(config: ModelConfig) -> ModelFiles:
    """Local paths when configured, else the configured hub variant (downloaded on first use)."""
    if config.model_path:
        text = check_gguf(Path(os.path.expanduser(config.model_path)), "model")
        mmproj = check_gguf(Path(os.path.expanduser(config.mmproj_path)), "mmproj")
        return ModelFiles(text, mmproj, "local files")
    if config.variant not in VARIANTS:
        raise ModelFileError(f"unknown model variant {config.variant!r} (known: {', '.join(VARIANTS)})")
    variant = VARIANTS[config.variant]
    text, mmproj = _download(variant)
    return ModelFiles(check_gguf(text, "model"), check_gguf(mmproj, "mmproj"), f"hub {variant.repo}")
