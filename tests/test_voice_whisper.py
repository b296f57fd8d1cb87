"""The whisper.cpp recogniser: the transcript matcher on whisper-style text, and a random-weight ggml model
(written here, never downloaded) loaded through the product path and run on espeak-ng speech."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_assist.bench.random_whisper import write_random_whisper
from stream_assist.bench.synthetic_client import connect
from stream_assist.cli import main
from stream_assist.config import Config, ConfigError, validate
from stream_assist.voice.commands import Rules, interpret
from stream_assist.voice.recognisers import shared_recogniser
from stream_assist.voice.transcript import normalise, task_text, transcript_words
from stream_assist.voice.vad import Segmenter, Utterance
from stream_assist.voice.whisper_source import WhisperModelError, local_asr, resolve_whisper

from .conftest import keeps_streaming, running_server, small_config
from .voice_clips import clip, to_48k


def judge(text: str, speech_s: float = 0.6, confirming: bool = False):  # noqa: ANN201 - a Heard
    """What the listener makes of a whisper transcript of speech_s seconds."""
    return interpret(transcript_words([(0.0, speech_s, text)]), speech_s, confirming, Rules())


@pytest.mark.parametrize(("text", "command"), [
    ("pause", "pause"), ("Pause.", "pause"), (" Stop talking!", "quiet"), ("What now?", "what_now"),
    ("Done.", "next"), ("[BLANK_AUDIO] Resume.", "resume"), ("Help...", "help")])
def test_a_command_said_as_the_whole_utterance_is_taken(text: str, command: str) -> None:
    heard = judge(text)
    assert heard.accepted and heard.command == command


@pytest.mark.parametrize("text", ["Please pause the video now.", "Pause it", "I'm done with the wheel.",
                                  "Thank you.", "[BLANK_AUDIO]", "(music)", "Yes."])
def test_anything_else_is_rejected_not_forced_into_a_command(text: str) -> None:
    heard = judge(text)
    assert not heard.accepted and heard.command is None
    assert heard.text == normalise(text)  # the page shows what was heard


def test_yes_only_while_confirming_and_the_task_keeps_whispers_text() -> None:
    assert judge("Yes.", confirming=True).command == "yes"
    heard = judge("My task is: fix the rear brake, then the gears.", speech_s=3.0)
    assert heard.accepted and heard.command == "task"
    assert task_text("My task is: fix the rear brake, then the gears.") == "fix the rear brake, then the gears."
    assert task_text(" my task is [BLANK_AUDIO]") == ""


@pytest.fixture(scope="module")
def random_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pywhispercpp", reason="the whisper extra (pip install stream-assist[whisper])")
    return write_random_whisper(tmp_path_factory.mktemp("whisper") / "ggml-random.bin")


def test_the_random_model_loads_through_the_product_path_and_hears_speech(random_whisper: Path,
                                                                         tmp_path: Path) -> None:
    config = Config()
    config.voice.asr = f"whisper:{random_whisper}"
    asr = local_asr(validate(config).voice.asr)
    recogniser = shared_recogniser(asr)
    assert shared_recogniser(asr) is recogniser  # loaded once per process
    utterances = [u for u in Segmenter().feed(clip(tmp_path, "my task is to true the wheel").tobytes())
                  if isinstance(u, Utterance)]
    assert utterances
    for u in utterances:
        words = recogniser.commands(u.pcm, False)  # a random model's text is noise, but real text
        assert all(w.text == normalise(w.text) and w.start_s <= w.end_s for w in words)
        interpret(words, u.speech_s, False, Rules())
        # the tail of the utterance just heard reuses its transcript, as the listener asks after "my task is"
        assert recogniser.dictate(u.pcm[len(u.pcm) // 2:]) == recogniser.dictate(u.pcm)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_session_on_whisper_hears_and_keeps_streaming(vision_model, random_whisper: Path,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    config = small_config()
    config.voice.asr = f"whisper:{random_whisper}"
    async with running_server(vision_model, validate(config)) as (base, _state):
        client = await connect(base, microphone=True)
        try:
            client.microphone.play(to_48k(clip(tmp_path, "pause")))
            heard = await client.next_message("heard", timeout=60)  # recognised on the voice thread, sent back
            assert heard["text"] == normalise(heard["text"])  # whisper's text, as the rules judged it
            await keeps_streaming(client)
        finally:
            await client.close()


def test_a_missing_or_wrong_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WhisperModelError, match="not found"):
        resolve_whisper(f"whisper:{tmp_path}/ggml-none.bin")
    not_ggml = tmp_path / "ggml-fake.bin"
    not_ggml.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(WhisperModelError, match="not a whisper.cpp ggml model"):
        resolve_whisper(f"whisper:{not_ggml}")
    with pytest.raises(WhisperModelError, match="model name"):
        resolve_whisper("whisper:Base EN")
    config = Config()
    config.voice.asr = "whisper:"
    with pytest.raises(ConfigError, match="voice.asr"):
        validate(config)
    assert local_asr("pocketsphinx") == "pocketsphinx"


def test_a_file_whisper_cpp_cannot_load_is_found_at_start_not_by_the_server(random_whisper: Path,
                                                                            tmp_path: Path) -> None:
    truncated = tmp_path / "ggml-truncated.bin"
    truncated.write_bytes(random_whisper.read_bytes()[:3_000_000])  # right magic, tensors cut short
    with pytest.raises(WhisperModelError, match="cannot load"):
        local_asr(f"whisper:{truncated}")


def test_serve_with_a_missing_whisper_model_exits_at_start(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--asr", f"whisper:{tmp_path}/ggml-base.en.bin", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "whisper model file not found" in err and len(err.strip().splitlines()) == 1


def test_a_named_model_that_is_not_cached_offline_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}  # never a download in the tests
    done = subprocess.run([sys.executable, "-m", "stream_assist", "serve", "--asr", "whisper:base.en", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "stream-assist: error: cannot reach the hub for ggerganov/whisper.cpp/ggml-base.en.bin and no copy is "
        "cached; pass --asr whisper:/path/to/ggml-model.bin"]
