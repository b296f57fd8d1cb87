"""`stream-assist bench assist`: the task assistant's speech against naive "say every new answer", replayed.

Scripted tasks: a card's steps take random times; a synthetic video whose content (a flat colour coding the
step) changes at each step boundary is sampled every `period` seconds and read by a scripted describer that
gives the wrong verdict at a chosen rate. Our policy (assistant/live.py, the real code, with a scripted
clock) and the naive one (a real model words a steady scene a little differently each time: the describer
picks one of three wordings) are scored side by side: step announcements matched to the true boundaries
within ±2 s (precision, recall, F1), redundant and missed speech, speech per minute. Then a writer process
appending journal events is SIGKILLed at random points, and acknowledged events missing afterwards are counted.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..assistant.cards import Card, find_card
from ..assistant.journal import Journal
from ..assistant.live import LiveTask
from ..assistant.places import card_dirs, limits
from ..assistant.policy import naive_decision
from ..config import AssistantConfig

WINDOW_S = 2.0  # an announcement this close to the true boundary counts as on time
WORDINGS = ("{} is in progress.", "The person is working on it: {}", "I can see this: {}")
VERDICTS = ("done", "not_done", "later", "unclear")


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


def verdict_answer(frame: np.ndarray, asked: int, n: int, error: float, rng: random.Random) -> str:
    """The scripted describer for our narrow question: right unless it errs (then one of the wrong verdicts)."""
    truth = "done" if step_in(frame) > asked else "not_done"
    verdict = rng.choice([v for v in VERDICTS if v != truth]) if rng.random() < error else truth
    if verdict == "later" and asked + 3 > n:
        verdict = "unclear"  # no step beyond the next one to name (naming the next one would mean done)
    later = rng.randint(asked + 3, n) if verdict == "later" else 0  # 1-based, past the next step
    return {"done": "Done. It looks finished.", "not_done": "Not yet. Still working on it.",
            "later": f"Step {later}.", "unclear": "A table with tools."}[verdict]


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


@dataclass
class Score:
    spoken: list[Spoken] = field(default_factory=list)

    def figures(self, script: Script, minutes: float) -> dict[str, float]:
        changes = [(t, k) for k, t in enumerate(script.boundaries, 1)]  # step k begins at t (k = n: finished)
        used: set[int] = set()
        matched = 0
        for t, k in changes:
            hit = next((i for i, s in enumerate(self.spoken) if i not in used and s.step == k
                        and abs(s.t - t) <= WINDOW_S), None)
            if hit is not None:
                used.add(hit)
                matched += 1
        claims = [s for s in self.spoken if s.step is not None]
        return {"boundaries": len(changes), "spoken": len(self.spoken), "announcements": len(claims),
                "matched": matched, "redundant": len(self.spoken) - matched, "minutes": minutes}


def run_ours(script: Script, config: AssistantConfig, period: float, error: float, rng: random.Random) -> Score:
    clock = [0.0]
    live = LiveTask(config, "bench-" + "x" * 16, clock=lambda: clock[0])
    live.set_card(script.card)
    score = Score()
    n = len(script.card.steps)
    t = period
    while t < script.boundaries[-1] + 5:
        clock[0] = t
        question = live.question()
        if question is None:
            break
        asked = live.state.tracker.step
        frame = script.frame(t - period)  # the answer comes one model time after its frame
        for kind, fields in live.on_answer(question, verdict_answer(frame, asked, n, error, rng)):
            if kind == "guidance" and fields["speak"]:
                score.spoken.append(Spoken(t, fields["step"] if fields["reason"] == "step_change" else None))
        t += period
    return score


def run_naive(script: Script, period: float, error: float, rng: random.Random) -> Score:
    score, last = Score(), ""
    t = period
    while t < script.boundaries[-1] + 5:
        text, step = describe_answer(script.frame(t - period), script.card, error, rng)
        if naive_decision(text, last).speak:
            last = text
            score.spoken.append(Spoken(t, step))  # any utterance is, for the naive policy, a claim of the scene
        t += period
    return score


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    total = {k: sum(r[k] for r in runs) for k in runs[0]}
    precision = total["matched"] / total["announcements"] if total["announcements"] else 0.0
    recall = total["matched"] / total["boundaries"]
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "missed_rate": 1 - recall, "redundant": total["redundant"],
            "redundant_rate": total["redundant"] / total["spoken"] if total["spoken"] else 0.0,
            "speech_per_min": total["spoken"] / total["minutes"]}


def compare(error: float, tasks: int, period: float, done_frames: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = AssistantConfig(data_dir=tmp, cards_dir=tmp, done_frames=done_frames)
        cards = [find_card(name, card_dirs(config), limits(config))
                 for name in ("bicycle-puncture", "wall-light-switch", "flatpack-bookcase")]
        ours, naive = [], []
        for i in range(tasks):
            script = make_script(cards[i % len(cards)], rng, 8.0, 40.0)
            minutes = (script.boundaries[-1] + 5) / 60
            ours.append(run_ours(script, config, period, error, rng).figures(script, minutes))
            naive.append(run_naive(script, period, error, rng).figures(script, minutes))
    return {"ours": summarise(ours), "naive": summarise(naive)}


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


def main(errors: list[float], tasks: int, period: float, done_frames: int, kills: int, seed: int,
         as_json: bool) -> int:
    result = {"period_s": period, "done_frames": done_frames, "tasks": tasks,
              "by_error": {str(e): compare(e, tasks, period, done_frames, seed) for e in errors},
              "journal": kill_writers(kills, seed)}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{tasks} scripted tasks per row, an answer every {period:g} s, done after {done_frames} in a row, "
          f"announcements matched within ±{WINDOW_S:g} s")
    print(f"{'describer error':>15} {'policy':>6} {'precision':>9} {'recall':>6} {'F1':>5} {'missed':>7} "
          f"{'redundant':>9} {'redundant %':>11} {'speech/min':>10}")
    for error, pair in result["by_error"].items():
        for name in ("ours", "naive"):
            f = pair[name]
            print(f"{float(error):>14.0%} {name:>7} {f['precision']:>9.3f} {f['recall']:>6.3f} {f['f1']:>5.3f} "
                  f"{f['missed_rate']:>7.1%} {f['redundant']:>9} {f['redundant_rate']:>11.1%} "
                  f"{f['speech_per_min']:>10.2f}")
        ratio = pair["ours"]["redundant"] / max(pair["naive"]["redundant"], 1)
        print(f"{'':>15} redundant speech, ours / naive: {ratio:.1%}")
    j = result["journal"]
    print(f"journal: {j['kills']} SIGKILLs of a writer, {j['acknowledged']} events acknowledged, {j['lost']} lost, "
          f"{j['damaged_lines_skipped']} damaged lines skipped")
    return 0
