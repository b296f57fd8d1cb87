"""The voice stages on real espeak-ng speech: VAD segmentation, the pocketsphinx grammar and the rule that
rejects ordinary sentences, the echo guard, and the listener's barge-in and bounds."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stream_assist.bench.speech import with_noise
from stream_assist.server.voice_link import spoken_message
from stream_assist.voice.commands import PHRASES, Heard, Rules, Word, interpret
from stream_assist.voice.echo import EchoGuard
from stream_assist.voice.listener import Listener, ListenerSettings, voice_executor
from stream_assist.voice.recognisers import PAD_SAMPLES, PocketSphinx, room_tone, shared_recogniser
from stream_assist.voice.vad import RATE, Segmenter, SpeechPaused, SpeechStarted, Utterance

from .voice_clips import SENTENCES, VOICES, clip

COMMANDS = [p for p in PHRASES if p != "my task is"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


def hear(samples: np.ndarray, confirming: bool = False) -> list:
    """Segments a clip and interprets each utterance as the listener does."""
    recogniser = shared_recogniser()
    events = list(Segmenter().feed(samples.tobytes()))
    return [interpret(recogniser.commands(u.pcm, confirming), u.speech_s, confirming, Rules())
            for u in events if isinstance(u, Utterance)]


def test_commands_are_mostly_heard_and_rarely_taken_for_another(clips: Path) -> None:
    right, wrong = 0, []
    for voice, speed in VOICES:
        for phrase in COMMANDS:
            accepted = [h.command for h in hear(clip(clips, phrase, voice, speed)) if h.accepted]
            right += accepted == [PHRASES[phrase]]
            if accepted and accepted != [PHRASES[phrase]]:
                wrong.append((voice, speed, phrase, accepted))
    total = len(VOICES) * len(COMMANDS)
    # espeak's robotic voices are hard for pocketsphinx's acoustic model; `bench voice` reports the rates.
    # Measured: 28 of 30 right, both misses taken for another command (en-us "next" as "what now", "back" as
    # "next"); the decoder's results move by a command between runs, hence one of margin each way
    assert right >= 0.85 * total and len(wrong) <= 3, (right, wrong)


def test_ordinary_sentences_are_rejected(clips: Path) -> None:
    for voice, speed in VOICES:
        for sentence in SENTENCES:
            heard = hear(clip(clips, sentence, voice, speed))
            assert heard and not any(h.accepted for h in heard), (voice, sentence, heard)


def test_rejection_rule() -> None:
    rules = Rules(min_coverage=0.5, max_command_s=2.5)
    pause = [Word("pause", 0.1, 0.6)]
    assert interpret(pause, 0.6, False, rules).command == "pause"
    assert "cover too little" in interpret(pause, 2.0, False, rules).reason
    assert "too long" in interpret(pause, 3.0, False, rules).reason
    assert interpret([Word("yes", 0, 0.4)], 0.4, False, rules).reason == "not a command"  # only while confirming
    assert interpret([Word("yes", 0, 0.4)], 0.4, True, rules).command == "yes"
    assert interpret([], 0.4, False, rules).reason == "not understood"


def test_speech_too_long_for_the_phones_heard_is_no_command() -> None:
    rules = Rules(max_s_per_phone=0.12)
    back = [Word("back", 0.1, 0.6, phones=3)]  # 0.4 s + 3 × 0.12 s: up to 0.76 s of speech
    assert interpret(back, 0.7, False, rules).command == "back"
    assert "too long for 'back'" in interpret(back, 0.9, False, rules).reason
    assert interpret([Word("back", 0.1, 1.2)], 1.2, False, rules).command == "back"  # no phones known: not judged


def test_my_task_is_counts_only_said_as_one_phrase_at_the_start() -> None:
    def words(my: float, task: float, is_: float) -> list[Word]:
        return [Word("my", my, my + 0.12), Word("task", task, task + 0.35), Word("is", is_, is_ + 0.15)]

    assert interpret(words(0.2, 0.32, 0.67), 2.0, False, Rules()).command == "task"
    assert interpret(words(0.2, 0.6, 0.95), 2.0, False, Rules()).reason == "not 'my task is' said as one phrase"
    assert interpret(words(0.6, 0.72, 1.07), 2.0, False, Rules()).reason == "not 'my task is' said as one phrase"


def test_padding_is_the_utterances_own_quietest_sound() -> None:
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 50, RATE).astype(np.int16)
    speech = hiss.copy()
    speech[RATE // 4:3 * RATE // 4] += rng.normal(0, 5000, RATE // 2).astype(np.int16)  # loud middle half
    pad = np.frombuffer(room_tone(speech.tobytes()), np.int16)
    assert len(pad) == PAD_SAMPLES
    assert np.std(pad) == pytest.approx(50, rel=0.2)  # the hiss, not the speech and not digital silence
    assert room_tone(b"") == bytes(2 * PAD_SAMPLES)


TITLES = ["fix a bicycle inner tube puncture", "assemble a flat pack bookcase", "replace a wall light switch"]


@pytest.mark.parametrize(("voice", "speed"), [("en-us+f2", 160), ("en-us+f5", 130)])
def test_a_known_tasks_title_is_heard_exactly_and_another_task_is_dictated(clips: Path, voice: str,
                                                                         speed: int) -> None:
    # (espeak's male voices reach the end of only one of these titles: then it is dictation, as before)
    recogniser = PocketSphinx(tasks=[*TITLES, "mend a zzyzzx"])  # a word outside the dictionary: left out
    assert recogniser.tasks == TITLES
    for title in TITLES:
        assert recogniser.dictate(clip(clips, title, voice, speed).tobytes()) == title
    for task in ("tighten the rear brake cable", "true the wheel"):
        other = recogniser.dictate(clip(clips, task, voice, speed).tobytes())
        assert other and other not in TITLES  # not forced into a card: free dictation


def test_yes_to_a_cards_title_starts_the_card_and_to_anything_else_sets_the_task() -> None:
    yes, cards = Heard("yes", "yes", True), {"replace a wall light switch": "wall-light-switch"}
    assert json.loads(spoken_message(yes, "Replace a wall light switch.", cards)) == {
        "type": "settings", "card": "wall-light-switch"}
    assert json.loads(spoken_message(yes, "true the wheel", cards)) == {"type": "settings", "task": "true the wheel"}


def test_segmenter_finds_one_utterance_with_its_speech_span(clips: Path) -> None:
    samples = clip(clips, "stop talking")
    events = list(Segmenter(end_silence_ms=240).feed(samples.tobytes()))
    paused = [e.utterance for e in events if isinstance(e, SpeechPaused)]
    events = [e for e in events if not isinstance(e, SpeechPaused)]
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    start, utterance = events
    assert paused[-1] == utterance  # the pause before the end already carried the very utterance it ends with
    loud = np.flatnonzero(np.abs(samples) > 300) / RATE
    # webrtcvad: onset within ~40 ms, offset within ~105 ms (its own hangover), plus one 30 ms frame
    assert abs(start.at_s - loud[0]) < 0.1 and abs(utterance.end_s - loud[-1]) < 0.15
    assert not utterance.cut and len(utterance.pcm) >= utterance.speech_s * RATE * 2


def test_a_monologue_is_cut_dropped_and_bounded(clips: Path) -> None:
    talk = np.concatenate([clip(clips, s)[RATE // 4:-RATE // 4] for s in SENTENCES * 2])  # no pause long enough
    segmenter = Segmenter(max_utterance_s=2.0)
    events = []
    for i in range(0, len(talk), 960):  # as the listener feeds it: 60 ms at a time
        events += segmenter.feed(talk[i:i + 960].tobytes())
        assert len(segmenter._speech) <= segmenter.max_frames + 1  # memory stays bounded
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert utterances and utterances[0].cut and utterances[0].pcm == b""
    assert segmenter.cut >= 1 and len(talk) / RATE > 2 * 2.0


def test_loud_noise_and_silence_cost_no_recognition() -> None:
    noise = np.random.default_rng(1).normal(0, 8000, RATE * 8).clip(-32768, 32767).astype(np.int16)
    segmenter = Segmenter(max_utterance_s=2.0)
    events = [*segmenter.feed(noise.tobytes()), *segmenter.feed(bytes(RATE * 4))]
    assert all(e.cut for e in events if isinstance(e, Utterance))  # noise is never handed to the recogniser whole


def test_a_command_in_steady_noise_ends_while_the_noise_goes_on(clips: Path) -> None:
    # webrtcvad calls white noise 10 dB below the speech voiced: without the room's level to tell them apart, the
    # noise ran on as one utterance, cut and dropped at the length limit with the command inside
    said = (clip(clips, "next") * 1.5).astype(np.int16)  # peaks near -5 dBFS, as a close microphone with auto gain
    quiet = np.zeros(3 * RATE, np.int16)
    samples = with_noise(np.concatenate([quiet, said, quiet]), 10.0)
    utterances = [e for e in Segmenter().feed(samples.tobytes()) if isinstance(e, Utterance)]
    word = np.flatnonzero(np.abs(said) > 300) / RATE + len(quiet) / RATE
    assert len(utterances) == 1 and not utterances[0].cut
    assert utterances[0].start_s < word[-1] and utterances[0].end_s > word[0] and utterances[0].speech_s < 1.0


def test_a_quick_first_word_in_noise_is_kept(clips: Path) -> None:
    """espeak's quick "what" of "what now" stands out of 10 dB noise in only three frames of six: speech started at
    "now", and the recogniser heard "no"."""
    said = clip(clips, "what now", "en-us+f2", 160)
    first = np.flatnonzero(np.abs(said) > 300)[0] / RATE
    starts = []
    for seed in range(6):
        utterances = [e for e in Segmenter().feed(with_noise(said, 10.0, seed).tobytes()) if isinstance(e, Utterance)]
        starts += [u.start_s - u.pre_pad_s for u in utterances[:1]]  # where its PCM begins
    # measured with 4 voiced frames of 6 to start: all 6 began at "now", 0.15 s after "what" started
    assert len(starts) == 6 and max(starts) <= first, (starts, first)


@pytest.mark.parametrize("settled", [False, True])
def test_speech_going_on_right_after_an_utterance_is_heard_with_it_unless_that_was_a_command(
        clips: Path, settled: bool) -> None:
    def word(text: str) -> np.ndarray:  # the clip without its silence
        samples = clip(clips, text)
        loud = np.flatnonzero(np.abs(samples) > 300)
        return samples[loud[0]:loud[-1] + 1]

    gap = np.zeros(RATE // 5, np.int16)  # 200 ms: past end_silence_ms, so the first word ends an utterance
    samples = np.concatenate([gap, word("stop"), gap, word("talking"), gap, gap, gap])
    segmenter, utterances = Segmenter(), []
    for i in range(0, len(samples), 960):  # 60 ms at a time, as the listener feeds it
        for event in segmenter.feed(samples[i:i + 960].tobytes()):
            if isinstance(event, Utterance):
                utterances.append(event)
                if settled:
                    segmenter.settle()
    first, second = utterances
    if settled:  # a command was taken: what follows is heard on its own
        assert second.start_s > first.end_s and not second.pcm.startswith(first.pcm)
    else:  # "stop" alone was no command: heard again as "stop talking"
        assert second.start_s == first.start_s and second.pcm.startswith(first.pcm)
        assert second.end_s > first.end_s + 0.2


@pytest.mark.parametrize(("hz", "seconds"), [(440, 0.1), (1000, 0.2), (2000, 0.4)])
def test_beeps_are_never_a_command(hz: int, seconds: float) -> None:
    # a steady tone (Chromium's fake microphone beeps like this) once stepped a task back in a CI run
    t = np.arange(int(RATE * seconds)) / RATE
    beep = np.zeros(RATE, np.int16)
    beep[:len(t)] = 8000 * np.sin(2 * np.pi * hz * t)
    heard = hear(np.tile(beep, 4))
    assert heard and not any(h.accepted for h in heard)


def test_echo_guard_drops_what_the_page_said_and_only_that() -> None:
    guard = EchoGuard(window_s=3.0)
    guard.speaking(True, "Next, loosen the axle nut.", now=10.0)
    assert guard.is_speaking(now=10.5) and guard.is_echo("next", now=10.5)
    assert not guard.is_echo("pause", now=10.5)
    guard.speaking(False, now=11.0)
    assert guard.is_speaking(now=11.1) and not guard.is_speaking(now=11.5)
    assert guard.is_echo("next", now=13.0) and not guard.is_echo("next", now=14.5)


async def run_listener(samples: np.ndarray, settings: ListenerSettings, speaking_text: str | None = None,
                       recogniser=shared_recogniser) -> list:  # noqa: ANN001
    """Feeds a clip through a listener in 20 ms pieces; returns what it posted, in order."""
    posted: list = []
    done = asyncio.Event()

    def on_heard(heard, task) -> None:  # noqa: ANN001
        posted.append(("heard", heard, task))
        done.set()

    listener = Listener(settings, recogniser, on_heard, lambda state: posted.append(("voice", state)))
    if speaking_text is not None:
        listener.echo.speaking(True, speaking_text)
    for i in range(0, len(samples), 320):
        listener.feed(samples[i:i + 320].tobytes())
    await asyncio.wait_for(done.wait(), 30)
    listener.close()
    return posted


async def test_listener_hears_a_command_and_announces_speech(clips: Path) -> None:
    posted = await run_listener(clip(clips, "pause"), ListenerSettings())
    assert [p[:2] if p[0] == "voice" else (p[0], p[1].command) for p in posted] == [
        ("voice", "speech_start"), ("voice", "speech_end"), ("heard", "pause")]


async def test_a_command_is_recognised_once_while_the_end_of_speech_is_awaited(clips: Path) -> None:
    calls: list[int] = []

    class Counting:
        def commands(self, pcm: bytes, confirming: bool) -> list[Word]:
            calls.append(len(pcm))
            return shared_recogniser().commands(pcm, confirming)

    posted = await run_listener(clip(clips, "pause"), ListenerSettings(), recogniser=Counting)
    assert posted[-1][1].command == "pause"
    assert len(calls) == len(set(calls))  # each PCM recognised once: the end reused what the last pause found


async def test_while_the_page_speaks_its_own_words_are_dropped_but_the_person_barges_in(clips: Path) -> None:
    posted = await run_listener(clip(clips, "pause"), ListenerSettings(barge_in_ms=300), "Pause the saw first.")
    assert ("voice", "speech_start") in posted  # long enough to be a barge-in: the page stops speaking
    heard = posted[-1][1]
    assert not heard.accepted and heard.reason == "the assistant's own voice"
    posted = await run_listener(clip(clips, "pause"), ListenerSettings(barge_in_ms=300), "Loosen the bolt.")
    assert posted[-1][1].command == "pause"  # not what the page said: the person's command
    posted = await run_listener(clip(clips, "pause"), ListenerSettings(barge_in_ms=2000), "Loosen the bolt.")
    assert ("voice", "speech_start") not in posted and not posted[-1][1].accepted  # too short to count over speech


async def test_a_failing_recogniser_costs_only_its_own_session(clips: Path) -> None:
    def unreadable_model():  # noqa: ANN202 - a recogniser that cannot load
        raise RuntimeError("model file unreadable")

    posted: list = []
    broken = Listener(ListenerSettings(), unreadable_model, lambda h, t: posted.append(h), lambda s: None)
    samples = clip(clips, "pause")
    for i in range(0, len(samples), 320):
        broken.feed(samples[i:i + 320].tobytes())
    await asyncio.get_running_loop().run_in_executor(voice_executor(), lambda: None)  # the voice thread is FIFO
    assert posted == [] and not broken._scheduled  # it failed, logged, and is ready to listen again
    heard = await run_listener(samples, ListenerSettings())  # the shared voice thread still serves others
    assert heard[-1][1].command == "pause"


async def test_my_task_is_becomes_a_proposal_that_yes_confirms(clips: Path) -> None:
    posted: list = []
    got = asyncio.Event()

    def on_heard(heard, task) -> None:  # noqa: ANN001
        posted.append((heard, task))
        got.set()

    listener = Listener(ListenerSettings(), shared_recogniser, on_heard, lambda s: None)
    for text in ("my task is to change the tyre", "yes"):
        got.clear()
        samples = clip(clips, text, "en-us+f5", 130)
        for i in range(0, len(samples), 4000):  # in 250 ms pieces: all at once, 20 ms ones overflow the buffer
            listener.feed(samples[i:i + 4000].tobytes())
        await asyncio.wait_for(got.wait(), 30)
    listener.close()
    (proposal, task), (confirmed, kept) = posted
    assert proposal.command == "task" and task and proposal.text == f"my task is {task}"  # dictated: a proposal
    assert confirmed.command == "yes" and kept == task and listener.proposal is None
    assert spoken_message(confirmed, kept) == json.dumps({"type": "settings", "task": task})
    assert spoken_message(proposal, task) is None  # nothing changes until the person says yes


@pytest.mark.parametrize(("voice", "sentence"), [("de", "ich habe das rad schon abgenommen"),
                                                 ("fr", "je cherche la clé pour le vélo"),
                                                 ("es", "esto no funciona bien")])
def test_speech_in_another_language_is_rejected(clips: Path, voice: str, sentence: str) -> None:
    heard = hear(clip(clips, sentence, voice, 150))
    assert heard and not any(h.accepted for h in heard)


def test_a_grammar_path_far_below_the_phone_loop_is_no_command(clips: Path) -> None:
    # the grammar forces "can you see the red cable" into "repeat"; a free phone loop scores that audio far better
    # (-3200 per second against -1150 for "what now" said), so it is rejected; "what now" passes. Sentences nearer
    # the loop (-1200..-2400 here) are left to the length rules (test_speech_too_long_for_the_phones_heard...)
    def utterance(text: str) -> Utterance:
        samples = clip(clips, text, "en-us", 150)
        return next(e for e in Segmenter().feed(samples.tobytes()) if isinstance(e, Utterance))

    sentence, command = utterance("can you see the red cable"), utterance("what now")
    assert [w.text for w in PocketSphinx(min_confidence=-math.inf).commands(sentence.pcm, False)] == ["repeat"]
    checked = PocketSphinx()
    assert checked.commands(sentence.pcm, False) == [] and checked.last_confidence < checked.min_confidence
    assert [w.text for w in checked.commands(command.pcm, False)] == ["what", "now"]


def test_the_voice_sets_clips_are_repeatable_and_mixed_at_the_ratio_asked(clips: Path) -> None:
    from stream_assist.bench.speech import BACKGROUNDS, in_room, neural_available, speak_to_wav

    speech = clip(clips, "next step please")
    for background in BACKGROUNDS:
        once, again = (in_room(speech, background, 10.0, clips, seed=3) for _ in range(2))
        assert np.array_equal(once, again), background  # seeded noise and talker offset, sox -R
    noisy = in_room(speech, "noise", 10.0, clips, seed=3).astype(np.float64) - speech
    loud = speech[np.abs(speech) > 100].astype(np.float64)
    assert 10 * np.log10(np.mean(loud ** 2) / np.mean(noisy ** 2)) == pytest.approx(10.0, abs=0.5)
    if neural_available():  # the neural voice's sampling noise is seeded per clip
        first, second = (speak_to_wav("next step", clips / f"joe-{i}.wav", "joe", 180).read_bytes() for i in (1, 2))
        assert first == second
