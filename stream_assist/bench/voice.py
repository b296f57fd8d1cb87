"""`stream-assist bench voice`: how well and how fast the server hears the person.

Offline, on a generated set (espeak-ng voices and speeds, commands and ordinary sentences, white noise at two
levels): command accuracy, false accepts on sentences, CPU per second of audio, and the CPU of listening to
silence. Live, against a server process busy with the model and a synthetic client whose microphone speaks:
end of speech → command applied (the `status` arriving), and barge-in (speech onset → the `voice` speech_start
that makes the page stop talking; the page's own cancel() is not included), and the same for the listener alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from ..config import Config, VoiceConfig
from ..inference.model_source import ModelFiles
from ..server.voice_link import known_tasks, listener_settings
from ..voice.audio_in import to_pcm16k
from ..voice.commands import PHRASES, Rules, interpret
from ..voice.faster_whisper_source import describe
from ..voice.listener import Listener, heard_in
from ..voice.recognisers import Recogniser, shared_recogniser
from ..voice.transcript import normalise
from ..voice.vad import FRAME_MS, KEEP_FRAMES, PRE_PAD_FRAMES, RATE, Segmenter, Utterance
from .server_process import start_server_process
from .speech import BACKGROUNDS, NEURAL, REVERB_TAIL_S, in_room, padded, pcm, speak_to_wav, with_noise
from .synthetic_client import MIC_FRAME, MIC_RATE, Client, connect

# three speeds each of the neural voice (Piper's joe, human-like) and of an espeak-ng voice (robotic)
VOICES = [("joe", 200), ("joe", 160), ("joe", 130), ("en-us+f2", 190), ("en-us+f2", 160), ("en-us+f2", 130)]
# clean, then each background at 20 and 10 dB speech-to-background
CONDITIONS = [(None, None)] + [(b, snr) for b in BACKGROUNDS for snr in (20.0, 10.0)]
COMMANDS = [p for p in PHRASES if p != "my task is"]
SENTENCES = ["the wheel is off the bike now", "I think this screw is too tight", "can you see the red cable",
             "where did I put the spanner", "let me check the manual first", "hold on a second",
             "this part looks a bit bent", "okay that went in fine",
             # command words inside ordinary sentences: none of these is a command
             "pass me the next screw", "put the cover back on later", "is the glue done yet",
             "this one needs a little help", "next to the red one", "we can resume after lunch"]
# a word or two in another language (espeak-ng's voices for it): never a command
OTHER_LANGUAGES = [("de", "weiter bitte"), ("de", "zurück"), ("fr", "suivant s'il vous plaît"), ("fr", "arrête"),
                   ("es", "siguiente paso"), ("es", "ayuda por favor")]
MIC_PIECE = RATE * 60 // 1000  # samples: 60 ms, three of the page's 20 ms packets
AFTER_S = 1.1  # of background after each clip: the utterance must end while the noise or the other talker goes on
BEFORE_S = 0.5  # of quiet (or background) before each clip
TASKS = ["change the inner tube on the back wheel", "tighten the rear brake cable", "put the new chain on",
         "replace the front light battery", "true the wheel"]


def _voice_config(asr: str) -> VoiceConfig:
    """The default voice settings, hearing with asr (the rules depend on the recogniser)."""
    voice = Config().voice
    voice.asr = asr
    return voice


def _pct(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "n": len(values)}


def _speak(directory: Path, text: str, voice: str, speed: int) -> np.ndarray:
    path = directory / f"{voice}-{speed}-{text}.wav".replace(" ", "_")
    return pcm(path if path.exists() else speak_to_wav(text, path, voice, speed))


def commands_heard(recogniser: Recogniser, samples: np.ndarray, settings: VoiceConfig, rules: Rules,
                   confirming: bool = False, hear: Callable = heard_in, cpu: list[float] | None = None) -> list[str]:
    """The commands accepted from a clip, segmented and settled as the listener does (its utterances end inside
    the clip's own background, as in a noisy room); `cpu` collects the CPU time of each utterance's hearing."""
    segmenter = Segmenter(settings.vad_aggressiveness, settings.end_silence_ms, settings.max_utterance_s)
    accepted = []
    for i in range(0, len(samples), MIC_PIECE):  # as the listener feeds it, so a command settles before what follows
        for u in segmenter.feed(samples[i:i + MIC_PIECE].tobytes()):
            if isinstance(u, Utterance) and not u.cut:
                start = time.process_time()
                heard = hear(u, lambda pcm: recogniser.commands(pcm, confirming), confirming, rules)[2]
                if cpu is not None:
                    cpu.append(time.process_time() - start)
                if heard.accepted:
                    accepted.append(heard.command)
                    segmenter.settle()
    return accepted


def heard_where_said(recogniser: Recogniser, samples: np.ndarray, clip: np.ndarray, background: str | None,
                     rules: Rules) -> str | None:
    """The command accepted from the mixed clip cut where the words are (from the clean clip's loud samples, with
    the VAD's pre-roll and tail, and the reverberation's): the ear alone, with segmentation out of the way."""
    loud = np.flatnonzero(np.abs(clip) > 300)
    first, last = int(BEFORE_S * RATE) + loud[0], int(BEFORE_S * RATE) + loud[-1]
    frame = RATE * FRAME_MS // 1000
    tail = KEEP_FRAMES * frame + (int(REVERB_TAIL_S * RATE) if background == "room" else 0)
    pcm16 = samples[max(0, first - PRE_PAD_FRAMES * frame):last + tail].tobytes()
    heard = interpret(recogniser.commands(pcm16, False), (last - first) / RATE, False, rules)
    return heard.command if heard.accepted else None


def offline(directory: Path, settings: VoiceConfig) -> dict:
    """Accuracy, wrong commands and false accepts over the generated set; CPU per command utterance and per second
    of audio (VAD and recognition)."""
    recogniser = shared_recogniser(settings.asr)
    rules = listener_settings(settings).rules
    rows, command_cpu, audio_s, total_cpu = [], [], 0.0, 0.0
    for (voice, speed), (background, snr) in [(v, c) for v in VOICES for c in CONDITIONS]:
        for text in COMMANDS + SENTENCES:
            clip = _speak(directory, text, voice, speed)
            samples = in_room(padded(clip, BEFORE_S, AFTER_S), background, snr, directory, seed=len(rows))
            start, cpu = time.process_time(), []
            accepted = commands_heard(recogniser, samples, settings, rules, cpu=cpu)
            total_cpu += time.process_time() - start
            audio_s += len(samples) / RATE
            if text in PHRASES and background is None:
                command_cpu += cpu
            where_said = heard_where_said(recogniser, samples, clip, background, rules) if text in PHRASES else None
            rows.append({"voice": f"{voice}@{speed}", "background": background, "snr_db": snr, "text": text,
                         "accepted": accepted, "command": text in PHRASES, "where_said": where_said})
    others = [commands_heard(recogniser, padded(_speak(directory, text, voice, 150)), settings, rules)
              for voice, text in OTHER_LANGUAGES]
    noise = [commands_heard(recogniser, padded(with_noise(np.full(RATE, 3000, np.int16), 0.0, seed)), settings, rules)
             for seed in range(6)]  # a second of loud noise, alone

    def accuracy(keep, ear: bool = False) -> float:  # noqa: ANN001 - ear: cut where the words are, not by the VAD
        chosen = [r for r in rows if r["command"] and keep(r)]
        said = [PHRASES[r["text"]] for r in chosen]
        return round(float(np.mean([r["where_said"] == c if ear else r["accepted"] == [c]
                                    for r, c in zip(chosen, said, strict=True)])), 3)

    commands = [r for r in rows if r["command"]]
    sentences = [r for r in rows if not r["command"]]
    return {
        "utterances": len(rows),
        "command_accuracy_clean": accuracy(lambda r: r["background"] is None),
        "command_accuracy_clean_neural": accuracy(lambda r: r["background"] is None and r["voice"].startswith(NEURAL)),
        "command_accuracy": {f"{b} {snr:g} dB": accuracy(lambda r, c=(b, snr): (r["background"], r["snr_db"]) == c)
                             for b, snr in CONDITIONS if b is not None},
        # the same clips cut where the words are: what the recogniser hears with segmentation out of the way
        "command_accuracy_where_said": {f"{b} {snr:g} dB": accuracy(lambda r, c=(b, snr): (r["background"],
                                                                                          r["snr_db"]) == c, ear=True)
                                        for b, snr in CONDITIONS if b is not None},
        "wrong_command_rate": round(float(np.mean([bool(r["accepted"]) and r["accepted"] != [PHRASES[r["text"]]]
                                                   for r in commands])), 3),
        "false_accepts_on_sentences": round(float(np.mean([bool(r["accepted"]) for r in sentences])), 3),
        "false_accepts_other_language": f"{sum(bool(a) for a in others)}/{len(others)}",
        "false_accepts_on_noise": f"{sum(bool(a) for a in noise)}/{len(noise)}",
        "cpu_ms_per_command": _pct([1000 * c for c in command_cpu]),
        "cpu_ms_per_audio_s": round(1000 * total_cpu / audio_s, 2),
        "misses": sorted({f"{r['text']} ({r['voice']}, {r['background'] or 'clean'} {r['snr_db'] or ''})"
                          for r in commands if r["accepted"] != [PHRASES[r["text"]]]})[:40],
        "sentences_accepted": sorted({f"{r['text']} → {r['accepted']}" for r in sentences if r["accepted"]}),
    }


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (punctuation and case ignored)."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1] / max(1, len(ref))


async def _dictate_once(speech: np.ndarray, asr: str, tasks: tuple[str, ...] = ()) -> str | None:
    """The task a listener proposes for a spoken "my task is …" (None: not heard as a task)."""
    got: list[str | None] = []
    heard = asyncio.Event()
    listener = Listener(listener_settings(_voice_config(asr)), lambda: shared_recogniser(asr, tasks),
                        lambda h, task: (got.append(task if h.command == "task" else None), heard.set()),
                        lambda _state: None)
    stream = np.concatenate([speech, np.zeros(RATE, np.int16)])
    for at in range(0, len(stream), RATE // 4):  # 250 ms pieces: the listener's buffer holds 2 s
        listener.feed(stream[at:at + RATE // 4].tobytes())
    await asyncio.wait_for(heard.wait(), 60)
    listener.close()
    return got[0]


async def dictation(directory: Path, asr: str) -> dict:
    """Word error of the task proposed for "my task is …" (clean speech), through the listener, with the shipped
    cards known: for the neural voice and for all voices; and how many of those cards' titles, said, were proposed
    exactly."""
    tasks = tuple(sorted(known_tasks(Config().assistant)))
    errors: dict[str, list[float]] = {}
    missed, titles, forced = 0, 0, 0
    for voice, speed in VOICES:
        for task in TASKS:
            proposed = await _dictate_once(padded(_speak(directory, f"my task is {task}", voice, speed)), asr, tasks)
            missed += proposed is None
            forced += normalise(proposed or "") in tasks
            errors.setdefault(voice, []).append(word_error_rate(task, proposed or ""))
        for title in tasks:
            said = await _dictate_once(padded(_speak(directory, f"my task is {title}", voice, speed)), asr, tasks)
            titles += normalise(said or "") == title  # as the card is matched when "yes" confirms it
    every = [e for v in errors.values() for e in v]
    return {"utterances": len(every), "word_error_rate": round(float(np.mean(every)), 3),
            "word_error_rate_neural": round(float(np.mean(errors[NEURAL])), 3),
            "not_heard_as_a_task": missed, "other_tasks_taken_for_a_card": forced,
            "card_titles_heard_exactly": f"{titles}/{len(tasks) * len(VOICES)}"}


def silent_listening(seconds: float = 60.0) -> dict:
    """CPU of what a silent microphone costs: resampling 48 kHz frames and running the VAD on them."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    segmenter = Segmenter()
    frame = av.AudioFrame.from_ndarray(np.zeros((1, MIC_FRAME), np.int16), format="s16", layout="mono")
    frame.sample_rate = MIC_RATE
    start = time.process_time()
    for _ in range(int(seconds * MIC_RATE / MIC_FRAME)):
        list(segmenter.feed(to_pcm16k(resampler, frame)))
    return {"percent_of_one_core": round(100 * (time.process_time() - start) / seconds, 3)}


def _trimmed(samples: np.ndarray) -> np.ndarray:
    """The clip from its first to its last loud sample: played, its end is the end of speech."""
    loud = np.flatnonzero(np.abs(samples) > 300)
    return samples[loud[0]:loud[-1] + 1]


async def _listen_once(speech: np.ndarray, speaking: bool, asr: str) -> dict[str, float]:
    """Feeds half a second of quiet, the speech, a second of quiet in 20 ms pieces at the microphone's pace;
    returns when each callback came, in seconds from the speech's onset."""
    seen: dict[str, float] = {}
    heard = asyncio.Event()
    listener = Listener(listener_settings(_voice_config(asr)), lambda: shared_recogniser(asr),
                        lambda _h, _t: (seen.setdefault("heard", time.monotonic()), heard.set()),
                        lambda state: seen.setdefault(state, time.monotonic()))
    if speaking:
        listener.echo.speaking(True, "Loosen the axle nut with the spanner.")
    stream = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])
    start = time.monotonic()
    for at in range(0, len(stream), RATE // 50):
        await asyncio.sleep(max(0.0, start + at / RATE - time.monotonic()))  # the audio clock, not a wait
        listener.feed(stream[at:at + RATE // 50].tobytes())
    await asyncio.wait_for(heard.wait(), 30)
    listener.close()
    return {k: v - start - 0.5 for k, v in seen.items()}


async def listener_alone(directory: Path, repeats: int, asr: str) -> dict:
    """The listener's own decision times, fed in real time in this process (no codec, network or model):
    speech onset → speech_start (page quiet, and page speaking: a barge-in) and end of speech → heard."""
    speech = _trimmed(_speak(directory, "pause", NEURAL, 160))
    shared_recogniser(asr)  # loaded before the clock starts
    quiet = [await _listen_once(speech, False, asr) for _ in range(repeats // 2)]
    speaking = [await _listen_once(speech, True, asr) for _ in range(repeats // 2)]
    return {
        "onset_to_speech_start_ms": _pct([1000 * s["speech_start"] for s in quiet]),
        "barge_in_onset_to_speech_start_ms": _pct([1000 * s["speech_start"] for s in speaking]),
        "end_of_speech_to_heard_ms": _pct([1000 * (s["heard"] - len(speech) / RATE) for s in quiet]),
    }


def _to_mic(samples: np.ndarray) -> np.ndarray:
    t = np.arange(len(samples) * MIC_RATE // RATE) * RATE / MIC_RATE
    return np.interp(t, np.arange(len(samples)), samples.astype(np.float64)).astype(np.int16)


async def _after(client: Client, kind: str, since: float, test=lambda m: True) -> float:  # noqa: ANN001
    while True:
        msg = await client.next_message(kind, timeout=60)
        if test(msg):
            return 1000 * (time.monotonic() - since)


async def live(files: ModelFiles, directory: Path, repeats: int, asr: str) -> dict:
    """Spoken pause / resume into a server process whose model is kept busy by the same client's video."""
    clips = {w: _to_mic(_trimmed(_speak(directory, w, NEURAL, 160))) for w in ("pause", "resume")}
    proc, url = await start_server_process(None, "--model", str(files.text), "--mmproj", str(files.mmproj),
                                           "--asr", asr)
    applied, barge, heard_wrong = [], [], 0
    try:
        client = await connect(url, microphone=True)
        try:
            await client.next_message("guidance", timeout=600)  # the model is warm and busy from here on
            for i in range(repeats):
                word = ("pause", "resume")[i % 2]
                done = client.microphone.play(clips[word])
                await done.wait()
                end = time.monotonic()  # the last frame of speech is on its way
                heard = await client.next_message("heard", timeout=60)
                if heard["command"] != word:
                    heard_wrong += 1
                    continue
                applied.append(await _after(client, "status", end))
                client.microphone.play(np.zeros(MIC_RATE // 2, np.int16))  # a breath between commands
            client.send({"type": "speaking", "on": True, "text": "Loosen the axle nut with the spanner."})
            for _ in range(repeats // 2):
                await client.microphone.play(np.zeros(MIC_RATE // 5, np.int16)).wait()
                onset_at = time.monotonic()  # the clip's first frame, which is speech, goes next
                client.microphone.play(clips["pause"])
                barge.append(await _after(client, "voice", onset_at, lambda m: m["state"] == "speech_start"))
                await client.next_message("heard", timeout=60)
        finally:
            await client.close()
    finally:
        proc.terminate()
        await proc.wait()
    return {"end_of_speech_to_applied_ms": _pct(applied), "not_heard_as_said": heard_wrong,
            "barge_in_onset_to_speech_start_ms": _pct(barge)}


def measure(files: ModelFiles, directory: Path, repeats: int, asr: str) -> dict:
    """Every figure for one recogniser, on the same generated set as the others."""
    return {"asr": asr, "offline": offline(directory, _voice_config(asr)),
            "dictation": asyncio.run(dictation(directory, asr)),
            "listener": asyncio.run(listener_alone(directory, repeats, asr)),
            "live": asyncio.run(live(files, directory, repeats, asr))}


def _rows(r: dict) -> list[tuple[str, str, str]]:
    """The issue's target rows: (figure, this recogniser's value, target)."""
    o, d, lv = r["offline"], r["dictation"], r["live"]
    at_10 = ", ".join(f"{k.split()[0]} {v:.1%}" for k, v in o["command_accuracy"].items() if k.endswith(" 10 dB"))
    at_20 = ", ".join(f"{k.split()[0]} {v:.1%}" for k, v in o["command_accuracy"].items() if k.endswith(" 20 dB"))
    ear = ", ".join(f"{k.split()[0]} {v:.1%}" for k, v in o["command_accuracy_where_said"].items()
                    if k.endswith(" 10 dB"))
    return [
        ("command accuracy, all voices, clean", f"{o['command_accuracy_clean']:.1%} "
         f"(neural {o['command_accuracy_clean_neural']:.1%})", "≥ 98 %"),
        ("command accuracy at 10 dB (each background)", at_10, "≥ 95 %"),
        ("the same 10 dB clips cut where the words are (the recogniser alone, no VAD)", ear, ""),
        ("command accuracy at 20 dB", at_20, ""),
        ("a command taken for another command", f"{o['wrong_command_rate']:.1%}", "≤ 1 %"),
        ("false accepts on ordinary sentences, incl. ones with command words",
         f"{o['false_accepts_on_sentences']:.1%} (other languages {o['false_accepts_other_language']}, "
         f"noise {o['false_accepts_on_noise']})", "≤ 1 %"),
        ("end of speech → command applied, p50 (model busy)", f"{lv['end_of_speech_to_applied_ms']['p50']} ms "
         f"(p95 {lv['end_of_speech_to_applied_ms']['p95']}, misheard {lv['not_heard_as_said']})", "≤ 250 ms"),
        ("of which the listener alone (end of speech → heard)",
         f"{r['listener']['end_of_speech_to_heard_ms']['p50']} ms", ""),
        ("recognition of one command utterance (CPU time)", f"p50 {o['cpu_ms_per_command']['p50']} ms "
         f"(p95 {o['cpu_ms_per_command']['p95']})", "≤ 60 ms"),
        ("dictated task, word error (neural voice, clean)", f"{d['word_error_rate_neural']:.1%} "
         f"(all voices {d['word_error_rate']:.1%}; card titles exact {d['card_titles_heard_exactly']})", "≤ 15 %"),
        ("CPU per second of audio while someone speaks", f"{o['cpu_ms_per_audio_s']} ms", "≤ 250 ms"),
    ]


def main(files: ModelFiles, repeats: int, as_json: bool, asrs: list[str]) -> int:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        results = [measure(files, directory, repeats, asr) for asr in asrs]
    silent = silent_listening()
    if as_json:
        print(json.dumps({"results": results, "silent": silent, "model": files.text.name,
                          "load_average": [load, os.getloadavg()]}, indent=2))
        return 0
    print(f"generated set: {results[0]['offline']['utterances']} utterances each ({len(VOICES)} voices × speeds, "
          f"clean and {len(CONDITIONS) - 1} backgrounds × levels); model {files.text.name} busy in the live part")
    print(f"load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end (a shared machine inflates "
          f"wall times more than CPU times)")
    names = [describe(r["asr"]) for r in results]
    print("| figure | " + " | ".join(names) + " | target |")
    print("|---|" + "---|" * len(results) + "---|")
    table = [_rows(r) for r in results]
    for i, (figure, _, target) in enumerate(table[0]):
        print(f"| {figure} | " + " | ".join(t[i][1] for t in table) + f" | {target} |")
    print(f"listening to silence: {silent['percent_of_one_core']} % of one core")
    for r, name in zip(results, names, strict=True):
        print(f"{name}: missed {r['offline']['misses']}")
        print(f"{name}: sentences accepted {r['offline']['sentences_accepted']}")
    return 0
