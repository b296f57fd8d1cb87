"""Finds a whisper.cpp model for `voice.asr = "whisper:<name-or-path>"`: a local ggml file, or a named one from
the Hugging Face hub (ggerganov/whisper.cpp, downloaded once into the HF cache with its progress bar)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from ..model_file import check_magic

PREFIX = "whisper:"
HUB_REPO = "ggerganov/whisper.cpp"
GGML_MAGIC = 0x67676D6C.to_bytes(4, "little")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # base.en, small, large-v3-turbo-q5_0
# loads the model and runs it on a moment of silence (a small audio context keeps that cheap for any model)
PROBE = ("import sys, numpy as np; from pywhispercpp.model import Model; "
         "Model(sys.argv[1], redirect_whispercpp_logs_to=None, print_progress=False)"
         ".transcribe(np.zeros(16000, np.float32), audio_ctx=64)")


class WhisperModelError(ValueError):
    """The whisper model is missing, unreadable, not a ggml file, or cannot be downloaded."""


def is_path(model: str) -> bool:
    """A path (it has a slash, or a .bin suffix, or starts with ~) rather than a hub model name."""
    return "/" in model or model.endswith(".bin") or model.startswith("~")


def probe(path: Path) -> Path:
    """Returns path if whisper.cpp loads and runs it, tried in a child process: whisper.cpp ends the process
    (SIGSEGV) on a file it failed to load, and that must not be the server at the first word."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise WhisperModelError(f"whisper.cpp took over 10 minutes to load {path}") from None
    if done.returncode != 0:
        raise WhisperModelError(f"whisper.cpp cannot load {path} (its loader exited with {done.returncode})")
    return path


def local_asr(asr: str) -> str:
    """`voice.asr` with a whisper model replaced by its checked local file (downloaded and tried now, at start,
    so that a bad model is a one-line error before serving, not a failure at the first word)."""
    return f"{PREFIX}{probe(resolve_whisper(asr))}" if asr.startswith(PREFIX) else asr


def check_ggml(path: Path) -> Path:
    """Returns path if it is a readable whisper.cpp ggml file; otherwise raises a one-line WhisperModelError."""
    return check_magic(path, GGML_MAGIC, "whisper model", "a whisper.cpp ggml model", WhisperModelError)


def _download(name: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    filename = f"ggml-{name}.bin"
    try:
        return Path(hf_hub_download(HUB_REPO, filename))  # offline, the cached copy if there is one
    except LocalEntryNotFoundError:  # first: it is a kind of EntryNotFoundError
        raise WhisperModelError(f"cannot reach the hub for {HUB_REPO}/{filename} and no copy is cached; "
                                "pass --asr whisper:/path/to/ggml-model.bin") from None
    except EntryNotFoundError:
        raise WhisperModelError(f"no {filename} in hub repo {HUB_REPO} (try base.en, small.en, tiny.en)") from None


def resolve_whisper(asr: str) -> Path:
    """The local model file for a valid `whisper:` setting, downloading a named model on first use."""
    if importlib.util.find_spec("pywhispercpp") is None:
        raise WhisperModelError("the whisper recogniser needs pywhispercpp: pip install 'stream-assist[whisper]'")
    model = asr.removeprefix(PREFIX)
    if not asr.startswith(PREFIX) or not (is_path(model) or NAME.match(model)):
        raise WhisperModelError(f"{asr!r} is not whisper:<path to a ggml file> nor whisper:<model name like base.en>")
    path = Path(os.path.expanduser(model)) if is_path(model) else _download(model)
    return check_ggml(path)
