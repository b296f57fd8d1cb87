"""The spoken-command grammar and the rule that tells a command from ordinary speech forced into one.

A grammar recogniser turns every utterance into some command, so a result is accepted only when its words
cover enough of the speech the VAD found and the speech is as short as a command is.
"""

from __future__ import annotations

from dataclasses import dataclass

# phrase → the data-channel message it stands for (task, yes and no are handled here, not sent as they are)
PHRASES: dict[str, str] = {
    "pause": "pause", "resume": "resume", "next": "next", "done": "next", "back": "back", "repeat": "repeat",
    "quiet": "quiet", "stop talking": "quiet", "what now": "what_now", "help": "help", "my task is": "task",
}
CONFIRM = {"yes": "yes", "no": "no"}
TASK_PREFIX = "my task is"
PHONE_SLACK_S = 0.4  # the VAD's span runs past the words: the onset it waited for and the trailing frames
TASK_ONSET_S = 0.45  # "my task is" starts the utterance: within the VAD's 0.3 s pre-roll and a little more
TASK_GAP_S = 0.15  # and is said as one phrase (a sentence forced into it has 0.23 s+ gaps between its words)


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float  # within the recognised audio
    end_s: float
    phones: int = 0  # in the recogniser's pronunciation (0: it has none, as whisper)


@dataclass(frozen=True)
class Rules:
    min_coverage: float = 0.5  # recognised words must span at least this share of the VAD's speech
    max_command_s: float = 1.6  # speech longer than this is not a command (except "my task is …")
    max_s_per_phone: float = 0.12  # nor speech longer than PHONE_SLACK_S + this per phone of the words heard


@dataclass(frozen=True)
class Heard:
    """What an utterance was taken to be: shown to the person whether accepted or not."""

    text: str
    command: str | None
    accepted: bool
    reason: str = ""


def jsgf(confirming: bool) -> str:
    """The JSGF grammar; yes / no only while a spoken task waits for confirmation (fewer words, fewer confusions)."""
    return one_of([*PHRASES, *(CONFIRM if confirming else ())])


def one_of(phrases: list[str]) -> str:
    """A JSGF grammar that matches exactly one of the phrases (lower-case words in the recogniser's dictionary)."""
    return ("#JSGF V1.0;\ngrammar commands;\npublic <command> = ( "
            + " | ".join(f"( {p} )" for p in phrases) + " );\n")


def interpret(words: list[Word], speech_s: float, confirming: bool, rules: Rules) -> Heard:
    """Decides on a grammar result: which command, or why none."""
    text = " ".join(w.text for w in words)
    if not words:
        return Heard("", None, False, "not understood")
    if text.startswith(TASK_PREFIX):
        prefix = words[:len(TASK_PREFIX.split())]
        gaps = [b.start_s - a.end_s for a, b in zip(prefix, prefix[1:], strict=False)]
        if prefix[0].start_s > TASK_ONSET_S or max(gaps) > TASK_GAP_S:
            return Heard(text, None, False, "not 'my task is' said as one phrase")
        return Heard(text, "task", True)
    known = {**PHRASES, **(CONFIRM if confirming else {})}
    if text not in known:
        return Heard(text, None, False, "not a command")
    if speech_s > rules.max_command_s:
        return Heard(text, None, False, "too long for a command")
    phones = sum(w.phones for w in words)
    if phones and speech_s > PHONE_SLACK_S + rules.max_s_per_phone * phones:
        return Heard(text, None, False, f"too long for '{text}' (a sentence forced into it)")
    covered = sum(w.end_s - w.start_s for w in words)
    if speech_s > 0 and covered / speech_s < rules.min_coverage:
        return Heard(text, None, False, "not a command (the words cover too little of the speech)")
    return Heard(text, known[text], True)
