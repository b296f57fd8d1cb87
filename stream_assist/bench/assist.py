"""`stream-assist bench assist`: the task assistant's step tracking and speech, replayed on scripted stories.

Scripted tasks: a card's steps take random times; a synthetic video whose content (a flat colour coding the
step) changes at each step boundary is sampled every `period` seconds and read by a scripted describer that
gives the wrong verdict at a chosen rate. With each verdict it gives the answer words' probabilities, as the
one-step verdict does (inference/verdict.py): a right verdict with its probability drawn high, a wrong one
drawn plausible (overlapping the right ones), the true word usually second. Three trackers run on the same
seeded stories: the older rule (K answers "done" in a row, on the answers' words), the evidence rule on the
words alone (an engine without logprobs), and the evidence rule with the probabilities; each is the real
`assistant/live.py` on a scripted clock, answering one model time after its frame. The naive "say every new
answer" policy (the describer words a steady scene one of three ways) is the speech baseline. Scored: step
changes announced while the person is on the new step (after a frame showing it, before the next boundary;
the last within MIN_STEP_S), missed (not so), false advances (the deciding answer was about a frame from
before the boundary), answers about a done step before it advanced and the delay, redundant speech. Then a
writer process appending journal events is SIGKILLed at random points; acknowledged events missing are counted.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..assistant.cards import Card, find_card
from ..assistant.journal import Journal
from ..assistant.live import LiveTask
from ..assistant.places import card_dirs, limits
from ..assistant.policy import naive_decision
from ..config import AssistantConfig

MIN_STEP_S, MAX_STEP_S = 8.0, 40.0  # how long a scripted step takes
WORDINGS = ("{} is in progress.", "The person is working on it: {}", "I can see this: {}")
VERDICTS = ("done", "not_done", "later", "unclear")
WORDS = {"done": "DONE", "not_done": "NOT", "later": "STEP"}  # the answer words of questions.VERDICT_WORDS
RIGHT_P = (0.6, 0.99)  # the probability a right verdict comes with
WRONG_P = (0.4, 0.85)  # and a wrong one: plausible, overlapping the right ones
TRACKERS = {"streak, words": ("streak", False), "evidence, words": ("evidence", False),
            "evidence, probabilities": ("evidence", True)}


@dataclass
class Script:
    boundaries: list[float]  # boundaries[k]: when step k begins (k ≥ 1); the task ends at the last one
    card: Card

    def step_at(self, t: float) -> int:
        return int(np.searchsorted(self.boundaries, t, side="right"))

    def frame(self, t: float) -> np.ndarray:
        """The synthetic video: a flat colour that codes the step in view."""
        return np.full((8, 8, 3), 10 * self.step_at(t), np.uint8)


def make_script(card: Card, rng: random.Random, min_s: float, max_s: float) -> Script:
    t, bounds = 0.0, []
    for _ in card.steps:
        t += rng.uniform(min_s, max_s)
        bounds.append(t)
    return Script(bounds, card)


def step_in(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) // 10


def verdict_answer(frame: np.ndarray, asked: int, n: int, error: float,
                   rng: random.Random) -> tuple[str, dict[str, float]]:
    """The scripted describer for our narrow question: right unless it errs (then one of the wrong verdicts),
    with the answer words' probabilities (none when it gave no verdict)."""
    truth = "done" if step_in(frame) > asked else "not_done"
    wrong = rng.random() < error
    verdict = rng.choice([v for v in VERDICTS if v != truth]) if wrong else truth
    if verdict == "later" and asked + 3 > n:
        verdict = "unclear"  # no step beyond the next one to name (naming the next one would mean done)
    later = rng.randint(asked + 3, n) if verdict == "later" else 0  # 1-based, past the next step
    text = {"done": "DONE", "not_done": "NOT", "later": f"STEP {later}", "unclear": "A table with tools."}[verdict]
    if verdict == "unclear":
        return text, {}
    top = rng.uniform(*(WRONG_P if wrong else RIGHT_P))
    second = WORDS[truth] if wrong else rng.choice([w for w in WORDS.values() if w != WORDS[verdict]])
    probs = {w: 0.0 for w in (*WORDS.values(), "HAZARD")}
    probs[WORDS[verdict]] = top
    probs[second] = (1 - top) * rng.uniform(0.5, 1.0)
    rest = [w for w in probs if w not in (WORDS[verdict], second)]
    left = 1 - top - probs[second]
    for w in rest:
        probs[w] = left / len(rest)
    return text, probs


def describe_answer(frame: np.ndarray, card: Card, error: float, rng: random.Random) -> tuple[str, int]:
    """The scripted describer for the open question: the scene in one of several wordings, or a wrong scene."""
    step = step_in(frame)
    if rng.random() < error:
        step = rng.choice([s for s in range(len(card.steps) + 1) if s != step])
    scene = card.steps[step].instruction if step < len(card.steps) else "The task looks finished."
    return rng.choice(WORDINGS).format(scene), step


@dataclass
class Spoken:
    t: float
    step: int | None  # the step it announces, if it is a step announcement
    frame_t: float = 0.0  # when the frame of the answer that caused it was sampled


@dataclass
class Score:
    spoken: list[Spoken] = field(default_factory=list)
    done_answers: list[int] = field(default_factory=list)  # per advance: answers about a done step it took

    def figures(self, script: Script, minutes: float) -> dict[str, float]:
        changes = [(t, k) for k, t in enumerate(script.boundaries, 1)]  # step k begins at t (k = n: finished)
        ends = [*script.boundaries[1:], script.boundaries[-1] + MIN_STEP_S]
        used: set[int] = set()
        matched, delays = 0, []
        for (t, k), end in zip(changes, ends, strict=True):
            hit = next((i for i, s in enumerate(self.spoken) if i not in used and s.step == k
                        and s.frame_t >= t and s.t < end), None)
            if hit is not None:
                used.add(hit)
                matched += 1
                delays.append(self.spoken[hit].t - t)
        claims = [s for s in self.spoken if s.step is not None]
        false = sum(1 for s in claims if s.frame_t < script.boundaries[s.step - 1])
        return {"boundaries": len(changes), "spoken": len(self.spoken), "announcements": len(claims),
                "matched": matched, "redundant": len(self.spoken) - matched, "false": false, "minutes": minutes,
                "done_answers": list(self.done_answers), "delays": delays}


def run_ours(script: Script, config: AssistantConfig, period: float, error: float, rng: random.Random,
             with_probs: bool = True) -> Score:
    clock = [0.0]
    live = LiveTask(config, "bench-" + "x" * 16, clock=lambda: clock[0])
    live.set_card(script.card)
    score = Score()
    n = len(script.card.steps)
    t = period
    seen_done = 0
    while t < script.boundaries[-1] + 5:
        clock[0] = t
        question, context = live.question(), live.context()
        if question is None:
            break
        asked = live.state.tracker.step
        frame = script.frame(t - period)  # the answer comes one model time after its frame
        seen_done += step_in(frame) > asked
        text, probs = verdict_answer(frame, asked, n, error, rng)
        for kind, fields in live.on_answer(question, text, probs if with_probs else None, context):
            if kind == "guidance" and fields["speak"]:
                change = fields["reason"] == "step_change"
                score.spoken.append(Spoken(t, fields["step"] if change else None, t - period))
        if live.state.tracker.step != asked:
            score.done_answers.append(seen_done)
            seen_done = 0
        t += period
    return score


def run_naive(script: Script, period: float, error: float, rng: random.Random) -> Score:
    score, last = Score(), ""
    t = period
    while t < script.boundaries[-1] + 5:
        text, step = describe_answer(script.frame(t - period), script.card, error, rng)
        if naive_decision(text, last).speak:
            last = text
            score.spoken.append(Spoken(t, step, t - period))  # any utterance is, for naive, a claim of the scene
        t += period
    return score


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    total = {k: sum(r[k] for r in runs) for k in runs[0] if k not in ("done_answers", "delays")}
    precision = total["matched"] / total["announcements"] if total["announcements"] else 0.0
    recall = total["matched"] / total["boundaries"]
    answers = [a for r in runs for a in r["done_answers"]]
    delays = [d for r in runs for d in r["delays"]]
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "missed_rate": 1 - recall, "redundant": total["redundant"],
            "false_advance_rate": total["false"] / total["announcements"] if total["announcements"] else 0.0,
            "done_answers_median": statistics.median(answers) if answers else 0.0,
            "delay_s_median": statistics.median(delays) if delays else 0.0,
            "redundant_rate": total["redundant"] / total["spoken"] if total["spoken"] else 0.0,
            "speech_per_min": total["spoken"] / total["minutes"]}


def compare(error: float, tasks: int, period: float, base: AssistantConfig, seed: int) -> dict[str, dict[str, float]]:
    """Each tracker and the naive policy on the same seeded stories (each from the same seed)."""
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = replace(base, data_dir=tmp, cards_dir=tmp)
        cards = [find_card(name, card_dirs(config), limits(config))
                 for name in ("bicycle-puncture", "wall-light-switch", "flatpack-bookcase")]
        for name, (rule, with_probs) in TRACKERS.items():
            rng = random.Random(seed)
            runs = []
            for i in range(tasks):
                script = make_script(cards[i % len(cards)], rng, MIN_STEP_S, MAX_STEP_S)
                minutes = (script.boundaries[-1] + 5) / 60
                ours = run_ours(script, replace(config, advance_rule=rule), period, error, rng, with_probs)
                runs.append(ours.figures(script, minutes))
            result[name] = summarise(runs)
        rng = random.Random(seed)
        naive = []
        for i in range(tasks):
            script = make_script(cards[i % len(cards)], rng, MIN_STEP_S, MAX_STEP_S)
            minutes = (script.boundaries[-1] + 5) / 60
            naive.append(run_naive(script, period, error, rng).figures(script, minutes))
        result["naive"] = summarise(naive)
    return result


# --- journal durability under SIGKILL ---------------------------------------------------------------

def journal_writer(directory: str, token: str, start: int) -> None:
    """Child process: appends numbered events forever, printing each number once it is durable."""
    journal = Journal(Path(directory))
    seq = start
    while True:
        journal.append(token, "step", step=seq % 7, seq=seq, text="x" * (seq % 300))
        print(seq, flush=True)
        seq += 1


def kill_writers(kills: int, seed: int) -> dict[str, int]:
    """Starts a writer, SIGKILLs it after a random number of acknowledged events, restarts it; counts losses."""
    rng = random.Random(seed)
    token = "durability-" + "y" * 12
    acknowledged: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(kills):
            code = ("import sys; from stream_assist.bench.assist import journal_writer; "
                    f"journal_writer({tmp!r}, {token!r}, {len(acknowledged) and acknowledged[-1] + 1})")
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            left = rng.randint(1, 60)
            for line in proc.stdout:
                acknowledged.append(int(line))
                left -= 1
                if left == 0:
                    break
            time.sleep(rng.uniform(0, 0.004))  # a random point within the next write (a benchmark, not a test)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            acknowledged += [int(line) for line in proc.stdout.read().split()]  # printed before the kill
            proc.stdout.close()
        found = {e.get("seq") for e in Journal(Path(tmp)).read(token)}
        raw = Journal(Path(tmp)).path(token).read_bytes().split(b"\n")
    return {"kills": kills, "acknowledged": len(acknowledged), "lost": sum(s not in found for s in acknowledged),
            "damaged_lines_skipped": sum(1 for r in raw if r.strip()) - len(found)}


def main(errors: list[float], tasks: int, periods: list[float], config: AssistantConfig, kills: int, seed: int,
         as_json: bool) -> int:
    result = {"done_frames": config.done_frames, "describer_error": config.describer_error,
              "advance_odds": config.advance_odds, "tasks": tasks,
              "rows": [{"period_s": period, "error": e, "policies": compare(e, tasks, period, config, seed)}
                       for period in periods for e in errors],
              "journal": kill_writers(kills, seed)}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{tasks} scripted tasks per row; streak: {config.done_frames} in a row; evidence: describer_error "
          f"{config.describer_error:g}, advance_odds {config.advance_odds:g}; a change counts when announced "
          "while the person is on the new step")
    print(f"{'answer every':>12} {'error':>5} {'tracker':>24} {'precision':>9} {'recall':>6} {'missed':>7} "
          f"{'false adv':>9} {'answers':>7} {'delay s':>7} {'redundant %':>11} {'speech/min':>10}")
    for row in result["rows"]:
        for name, f in row["policies"].items():
            print(f"{row['period_s']:>11g}s {row['error']:>5.0%} {name:>24} {f['precision']:>9.3f} "
                  f"{f['recall']:>6.3f} {f['missed_rate']:>7.1%} {f['false_advance_rate']:>9.1%} "
                  f"{f['done_answers_median']:>7g} {f['delay_s_median']:>7.1f} {f['redundant_rate']:>11.1%} "
                  f"{f['speech_per_min']:>10.2f}")
        ours = row["policies"]["evidence, probabilities"]
        print(f"{'':>18} redundant speech, evidence with probabilities / naive: "
              f"{ours['redundant'] / max(row['policies']['naive']['redundant'], 1):.1%}")
    j = result["journal"]
    print(f"journal: {j['kills']} SIGKILLs of a writer, {j['acknowledged']} events acknowledged, {j['lost']} lost, "
          f"{j['damaged_lines_skipped']} damaged lines skipped")
    return 0
