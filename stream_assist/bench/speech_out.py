"""`stream-assist bench speak`: the server's voice against issue 18's targets.

- Synthesis cost: CPU seconds per second of speech, and the time to the first piece, for guidance-like texts.
- The room, faster than real time: the real voice, a loudspeaker heard by the microphone (delay 50–250 ms,
  0–12 dB quieter, reverberated, room noise), the real echo canceller, VAD and recogniser in the session's own
  Listener: commands taken from its own echo over `--echo-minutes` of guidance at 0 dB, and "pause" said by a
  second voice (espeak-ng) over the assistant's speech, heard or not. Opus and the network are left out here.
- Live, over WebRTC with a real server (the tiny random model, paused): guidance ready → first speech sample sent
  (the server's own stamps), and person starts → the assistant's track silent (the client's microphone onset to
  the first silent frame the client receives, and to the server's stop), through a simulated loudspeaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np

from ..config import Config
from ..inference.model_source import ModelFiles
from ..server.voice_link import listener_settings
from ..speech_out.synth import REFERENCE_RATE, Synthesiser
from ..speech_out.text import pieces
from ..voice.echo import EchoCanceller, EchoGuard
from ..voice.listener import Listener
from ..voice.recognisers import shared_recogniser
from .speech import pcm, speak_to_wav
from .synthetic_client import MIC_RATE, Room, connect

GUIDANCE = [
    "Step 1 of 6: Take the wheel off the bike.",
    "Step 2 of 6: Let the rest of the air out and push the valve up into the tyre.",
    "Step 3 of 6: Hook two tyre levers under the bead, then run one round the rim.",
    "Next, pull the inner tube out, starting opposite the valve.",
    "Careful: the edge of the rim is sharp, keep your fingers clear.",
    "Pump a little air into the tube and listen for the hiss.",
    "Done. Now check the inside of the tyre for a thorn or a piece of glass.",
    "Go back one step: the tube is still on the rim.",
    "What now? Put the patch over the hole and press it down hard for a minute.",
    "Repeat: line the valve up with the hole in the rim.",
]
SECOND_VOICES = [("en-us+m3", 140), ("en-us+f2", 160), ("en-us", 150), ("en-us+f5", 130)]


def _pct(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "n": len(values)}


def synthesis_cost(voice: Synthesiser, rounds: int = 3) -> dict:
    """CPU per second of speech over the guidance texts, and the first piece's synthesis time."""
    cpu = speech_s = 0.0
    first_ms: list[float] = []
    for _ in range(rounds):
        for text in GUIDANCE:
            for i, piece in enumerate(pieces(text)):
                wall, started = time.perf_counter(), time.process_time()
                audio = voice.synthesise(piece)
                cpu += time.process_time() - started
                speech_s += len(audio.reference) / REFERENCE_RATE
                if i == 0:
                    first_ms.append((time.perf_counter() - wall) * 1000)
    return {"cpu_s_per_speech_s": round(cpu / speech_s, 3), "speech_s": round(speech_s, 1),
            "first_piece_ms": _pct(first_ms)}


class _Inline(Executor):
    """Runs the listener's work at once, on the caller's thread: the room's time is the benchmark's."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _room_noise(n: int, rng: np.random.Generator, level: float = 30.0) -> np.ndarray:
    return rng.normal(0, level, n)


def loudspeaker(far: np.ndarray, room: Room, rate: int = REFERENCE_RATE) -> np.ndarray:
    """What the microphone hears of the voice's samples `far` played by the loudspeaker in `room` (as many samples)."""
    echo = np.convolve(far.astype(np.float64), room.impulse(rate))[:len(far)]
    return np.concatenate([np.zeros(int(room.delay_s * rate)), echo])[:len(far)]


async def room(voice: Synthesiser, minutes: float, double_talk: int, config: Config, directory: Path,
               seed: int = 1, canceller: bool = True, attenuation_db: float = 0.0,
               make_canceller: type = EchoCanceller) -> dict:
    """Guidance for `minutes` through a loudspeaker into the session's Listener (faster than real time), with
    `double_talk` "pause"s said over it by second voices; what the Listener took as commands."""
    rng = np.random.default_rng(seed)
    said = {text: voice.synthesise(text).reference for text in GUIDANCE}
    pause = {v: pcm(speak_to_wav("pause", directory / f"pause-{v[0]}.wav", *v)) for v in SECOND_VOICES}
    rate = REFERENCE_RATE
    total = int(minutes * 60 * rate)
    far = np.zeros(total, np.int16)
    spans: list[tuple[int, int, str]] = []  # the voice's utterances: first and last sample, text
    at = rate
    while at < total:
        text = GUIDANCE[rng.integers(len(GUIDANCE))]
        audio = said[text][: total - at]
        far[at:at + len(audio)] = audio
        spans.append((at, at + len(audio), text))
        at += len(audio) + int(rng.uniform(0.3, 2.5) * rate)
    # the person's "pause"s: inside an utterance, each far enough from the last to be judged apart
    talk_spans = [s for s in spans if s[1] - s[0] > rate and "pause" not in s[2].lower()]
    chosen = sorted(rng.choice(len(talk_spans), size=min(double_talk, len(talk_spans)), replace=False))
    near = np.zeros(total)
    person: list[tuple[int, int]] = []
    for k in chosen:
        a, b, _ = talk_spans[k]
        clip = pause[SECOND_VOICES[len(person) % len(SECOND_VOICES)]].astype(np.float64)
        start = int(rng.integers(a, max(a + 1, b - len(clip) // 2)))
        clip = clip[: total - start]
        near[start:start + len(clip)] += clip
        person.append((start, start + len(clip)))
    # the loudspeaker: a room per utterance's worth of time would change the echo path; one per run, as a stand
    delay, attenuation = rng.uniform(0.05, 0.25), attenuation_db
    echo = loudspeaker(far, Room(delay_s=delay, attenuation_db=attenuation, seed=seed))
    mic = np.clip(echo + near + _room_noise(total, rng), -32768, 32767).astype(np.int16)

    heard, cpu = await listen(mic, far, spans, config, make_canceller if canceller else None)
    accepted = [(t, h) for t, h in heard if h["accepted"]]
    in_person = [(t, h) for t, h in accepted if any(a / rate - 0.5 <= t <= b / rate + 1.5 for a, b in person)]
    paused = {i for i, (a, b) in enumerate(person)
              if any(h["command"] == "pause" and a / rate - 0.5 <= t <= b / rate + 1.5 for t, h in accepted)}
    return {
        "minutes": minutes, "echo_delay_ms": round(delay * 1000), "echo_attenuation_db": attenuation,
        "canceller": canceller, "voice_utterances": len(spans),
        "commands_from_echo": len(accepted) - len(in_person),
        "echo_commands": [h["command"] for t, h in accepted if (t, h) not in in_person][:10],
        "pause_over_voice": {"said": len(person), "heard": len(paused),
                             "rate": round(len(paused) / len(person), 3) if person else None},
        "cpu_s_per_audio_s": round(cpu / (total / rate), 4),
        "heard_over_voice": [h for t, h in heard if any(a / rate - 0.5 <= t <= b / rate + 1.5 for a, b in person)],
    }


async def listen(mic: np.ndarray, far: np.ndarray, spans: list[tuple[int, int, str]], config: Config,
                 make_canceller: type | None = EchoCanceller) -> tuple[list[tuple[float, dict]], float]:
    """The session's Listener on a microphone's 16 kHz samples (faster than real time), with the voice's samples
    `far` sent meanwhile and its utterances `spans` (first and last sample, text) as its speaker reports them: what it
    heard, at the room's time in s, and its CPU seconds."""
    rate, frame = REFERENCE_RATE, REFERENCE_RATE // 50
    heard: list[tuple[float, dict]] = []
    clock = {"t": 0.0}
    settings = listener_settings(config.voice)
    listener = Listener(settings, lambda: shared_recogniser(config.voice.asr),
                        lambda h, _task: heard.append((clock["t"], {"text": h.text, "command": h.command,
                                                                    "accepted": h.accepted, "reason": h.reason})),
                        lambda _state: None, executor=_Inline())
    listener.echo = EchoGuard(settings.echo_window_s, config.speech.echo_tail_s, clock=lambda: clock["t"])
    position = {"far": 0}

    def far_end(n: int) -> np.ndarray:
        out = far[position["far"]:position["far"] + n]
        position["far"] += n
        return out

    if make_canceller is not None:
        listener.canceller, listener.far_end = make_canceller(), far_end
    starts = {a: text for a, _, text in spans}
    ends = {b for _, b, _ in spans}
    started = time.process_time()
    for i in range(0, len(mic) - frame + 1, frame):
        clock["t"] = i / rate
        for j in range(i, i + frame):  # the voice's start and end, as its speaker reports them
            if j in starts:
                listener.echo.speaking(True, starts[j])
            if j in ends:
                listener.echo.speaking(False)
        if make_canceller is None:
            position["far"] += frame
        listener.feed(mic[i:i + frame].tobytes())
        await asyncio.sleep(0)  # lets the listener's posted results in, stamped with the room's time
    cpu = time.process_time() - started
    listener.close()
    return heard, cpu


async def _speech(client, state: str, timeout: float = 60.0) -> dict:  # noqa: ANN001
    while True:
        msg = await client.next_message("speech", timeout=timeout)
        if msg["state"] == state:
            return msg


def _silent_from(frames: list[tuple[float, np.ndarray]], since: float, level: float = 100.0) -> float | None:
    """The arrival time of the first received frame after `since` from which the track stays silent for 5 frames."""
    after = [(t, float(np.sqrt(np.mean(s.astype(np.float64) ** 2)))) for t, s in frames if t >= since]
    for i in range(len(after) - 5):
        if all(r < level for _, r in after[i:i + 5]):
            return after[i][0]
    return None


async def live(files: ModelFiles, voice: Synthesiser, trials: int, directory: Path) -> dict:
    """The server's voice over WebRTC: ready → first sample, and barge-in as the client hears it."""
    from ..inference.vision_model import VisionModel
    from ..inference.worker import InferenceWorker
    from ..server.app import ServerState, make_app, start_site

    config = Config()
    config.model.n_threads, config.pipeline.max_edge = 1, 256
    model = VisionModel(files, config.model)
    worker = InferenceWorker(model)
    worker.start()
    state = ServerState(config, worker, files.text.name, voice)
    runner, port = await start_site(make_app(state), "127.0.0.1", 0)
    ready, barge_client, barge_server = [], [], []
    wait = pcm(speak_to_wav("wait a moment", directory / "wait.wav", "en-us+m3", 140))
    onset_s = float(np.argmax(np.abs(wait) > 500)) / REFERENCE_RATE
    wait48 = np.repeat(wait, MIC_RATE // REFERENCE_RATE)
    try:
        client = await connect(f"http://127.0.0.1:{port}", microphone=True, hear=True,
                               room=Room(delay_s=0.15, attenuation_db=6.0))
        client.send({"type": "pause"})  # no model answers: only what is asked is said
        await client.next_message("status")
        client.send({"type": "settings", "task": "fix a puncture", "steps": GUIDANCE[:6]})
        missed = 0
        for i in range(trials):
            try:
                start = await _speech(client, "start")
            except TimeoutError:  # a stalled trial is counted, not the end of the run
                missed += 1
                client.send({"type": "repeat"})
                continue
            ready.append(start["ready_to_speech_ms"])
            spoken_at = start["at_ms"] / 1000
            await client.ear.until(len(client.ear.frames) + 40)  # 0.8 s into its speech, the person speaks
            before = len(client.microphone.played_at)
            played = client.microphone.play(wait48)
            end = await _speech(client, "end")
            await asyncio.wait_for(played.wait(), 30)
            onset = client.microphone.played_at[before] + onset_s
            if end.get("reason") == "barge_in" and end["at_ms"] / 1000 > onset - 0.1:
                barge_server.append(end["at_ms"] - onset * 1000)
                await client.ear.until(len(client.ear.frames) + 20)
                silent = _silent_from(client.ear.frames, max(onset, spoken_at))
                if silent is not None:
                    barge_client.append((silent - onset) * 1000)
            else:
                missed += 1  # the person was not heard over the voice: it finished its sentence
            with contextlib.suppress(TimeoutError):
                await client.next_message("heard", timeout=20)
            client.send({"type": "next" if i % 2 == 0 else "back"})
        await client.close()
    finally:
        await runner.cleanup()
        worker.stop()
        model.close()
    return {"ready_to_first_sample_ms": _pct(ready), "barge_in_onset_to_server_silent_ms": _pct(barge_server),
            "barge_in_onset_to_client_silent_ms": _pct(barge_client), "barge_in_missed": missed}


def main(files: ModelFiles, voice: Synthesiser, echo_minutes: float, double_talk: int, trials: int,
         as_json: bool) -> int:
    config = Config()
    result: dict = {"voice": voice.name, "load_average": [round(v, 2) for v in os.getloadavg()],
                    "cpu_count": os.cpu_count(), "synthesis": synthesis_cost(voice)}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        result["room_with_canceller"] = asyncio.run(room(voice, echo_minutes, double_talk, config, directory))
        result["double_talk_quieter_echo"] = [
            asyncio.run(room(voice, max(1.0, echo_minutes / 4), max(1, double_talk // 2), config, directory, seed=2,
                             attenuation_db=db)) for db in (6.0, 12.0)]
        result["room_without_canceller"] = asyncio.run(room(voice, min(echo_minutes, 2.0), min(double_talk, 20),
                                                            config, directory, canceller=False))
        result["live"] = asyncio.run(live(files, voice, trials, directory))
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    for x in (result["room_with_canceller"], *result["double_talk_quieter_echo"], result["room_without_canceller"]):
        x.pop("heard_over_voice")  # the details, for tests
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    s, r, n, lv = result["synthesis"], result["room_with_canceller"], result["room_without_canceller"], result["live"]
    print(f"voice {result['voice']}; load average {result['load_average']} → {result['load_average_after']} "
          f"on {result['cpu_count']} cores (shared machine)")
    print(f"synthesis: {s['cpu_s_per_speech_s']} s CPU per s of speech over {s['speech_s']} s; first piece "
          f"{s['first_piece_ms']} ms")
    rooms = [("AEC3 + Speex", r), *[("AEC3 + Speex", x) for x in result["double_talk_quieter_echo"]],
             ("no canceller", n)]
    for name, x in rooms:
        print(f"room {name}: {x['minutes']} min of guidance ({x['voice_utterances']} utterances), echo "
              f"{x['echo_delay_ms']} ms at {x['echo_attenuation_db']} dB: commands from its own echo "
              f"{x['commands_from_echo']} {x['echo_commands']}; 'pause' over its voice heard "
              f"{x['pause_over_voice']['heard']}/{x['pause_over_voice']['said']}; listener CPU "
              f"{x['cpu_s_per_audio_s']} s per s")
    print(f"live: guidance ready → first sample sent {lv['ready_to_first_sample_ms']} ms")
    print(f"live: person starts → track silent at the server {lv['barge_in_onset_to_server_silent_ms']} ms, "
          f"as the client receives it {lv['barge_in_onset_to_client_silent_ms']} ms; not heard over the voice "
          f"{lv['barge_in_missed']} of {trials}")
    return 0
