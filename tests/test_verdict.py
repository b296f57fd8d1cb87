"""One-token verdicts and evidence added up: the words' first tokens and probabilities (pure functions, then real
llama.cpp), the reading of a verdict, and the tracker's evidence rule driven by scripted answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_assist.assistant.cards import Limits, typed_card
from stream_assist.assistant.evidence import accumulate, channel_llr, clean_probs, done_llr
from stream_assist.assistant.questions import VERDICT_WORDS, frame_context, frame_question, read_answer
from stream_assist.assistant.tracker import Reading, Tracker
from stream_assist.inference.verdict import Choices, first_tokens, from_logits, from_top_logprobs, word_for
from stream_assist.inference.vision_model import VisionModel

from .test_vision_model import scene

LIMITS = Limits(max_steps=50, max_step_chars=300)
CHOICES = Choices(VERDICT_WORDS, min_mass=0.0)
NAMES = tuple(w for w, _ in VERDICT_WORDS)


# --- the words' tokens and the distribution ------------------------------------------------------------

def vocabulary(pieces: dict[str, list[str]]):
    """A scripted tokenizer: text → token pieces, ids in order of first sight."""
    ids: dict[str, int] = {}
    for parts in pieces.values():
        for part in parts:
            ids.setdefault(part, len(ids))
    names = {i: p for p, i in ids.items()}
    return (lambda text: [ids[p] for p in pieces.get(text, [])]), names.__getitem__, ids


def test_each_word_counts_through_its_own_first_tokens_and_shared_or_short_ones_count_for_none() -> None:
    tokenize, piece, ids = vocabulary({"DONE": ["DONE"], " DONE": [" DONE"], "Done": ["Done"], "done": ["do", "ne"],
                                       "NOT": ["NOT"], " not": [" not"], "STEP": ["STE", "P"],
                                       "HAZARD": ["H", "AZARD"]})
    tokens = first_tokens(("DONE", "NOT", "STEP", "HAZARD"), tokenize, piece)
    assert tokens == {ids["DONE"]: "DONE", ids[" DONE"]: "DONE", ids["Done"]: "DONE", ids["NOT"]: "NOT",
                      ids[" not"]: "NOT", ids["STE"]: "STEP"}  # "do" and "H" spell too little of their word
    assert word_for(" No", ("NOT", "NONE")) is None  # two words begin so: the token is nobody's
    logits = np.full(len(ids), -30.0)
    logits[[ids["DONE"], ids["Done"], ids["NOT"]]] = [2.0, 2.0, 1.0]
    # HAZARD has no token of its own in this vocabulary: no verdict from one step, the answer is written
    assert from_logits(logits, tokens, CHOICES) is None
    three = Choices((("DONE", 0), ("NOT", 0), ("STEP", 4)), min_mass=0.5)
    verdict = from_logits(logits, tokens, three)
    e = math.exp
    assert verdict.word == "DONE" and verdict.probs["DONE"] == pytest.approx(2 * e(2) / (2 * e(2) + e(1)), abs=1e-5)
    assert verdict.mass > 0.99
    logits[ids["DONE"]] = np.nan
    assert from_logits(logits, tokens, three) is None  # NaN logits: no verdict, never a guess


def test_a_model_that_would_begin_otherwise_gives_no_verdict() -> None:
    tokenize, piece, ids = vocabulary({"DONE": ["DONE"], "NOT": ["NOT"], "The": ["The"]})
    choices = Choices((("DONE", 0), ("NOT", 0)), min_mass=0.5)
    logits = np.array([0.0, 0.0, 5.0])  # "The ..." is what the model would write: text before the answer
    assert from_logits(logits, first_tokens(("DONE", "NOT"), tokenize, piece), choices) is None
    top = [("The", math.log(0.9)), (" DONE", math.log(0.06)), ("NOT", math.log(0.04))]
    assert from_top_logprobs(top, choices) is None
    sure = from_top_logprobs([("DONE", math.log(0.7)), (" Done", math.log(0.2)), ("NOT", math.log(0.05)),
                              ("Not", float("nan"))], choices)
    assert sure.word == "DONE" and sure.probs["DONE"] == pytest.approx(0.9 / 0.95, abs=1e-5)


# --- on the real model -----------------------------------------------------------------------------------

def test_the_verdict_is_read_from_the_first_step_of_the_real_model(vision_model: VisionModel) -> None:
    card = typed_card("Tea", ["Boil water", "Add the bag", "Pour"], LIMITS)
    question, context = frame_question(0), frame_context(card, 0)
    pieces: list[str] = []
    gen = vision_model.describe(scene(), question, pieces.append, choices=CHOICES, context=context)
    assert set(gen.verdict) == set(NAMES) and sum(gen.verdict.values()) == pytest.approx(1.0, abs=1e-4)
    assert all(0.0 <= p <= 1.0 for p in gen.verdict.values()) and 0.0 < gen.verdict_mass <= 1.0
    word = max(gen.verdict, key=gen.verdict.get)
    assert gen.text.upper().startswith(word) and gen.text == "".join(pieces).strip()
    follow = dict(VERDICT_WORDS)[word]  # only STEP and HAZARD go on writing; the plain verdicts are one token
    assert 1 <= gen.completion_tokens <= 1 + follow and "first_token" in gen.phases_ms
    if not follow:
        assert gen.completion_tokens == 1 and "per_token" not in gen.phases_ms
    # the same frame and question, asked again: the same distribution (the KV cache reuse changes nothing), and the
    # step's context, before the image, came from the cache
    again = vision_model.describe(scene(), question, choices=CHOICES, context=context)
    assert again.verdict == pytest.approx(gen.verdict, abs=1e-3)
    before, after = vision_model.tokens_around_image(question, context)
    assert again.reused_tokens >= len(before) > len(vision_model.tokens_around_image(question)[0])
    assert after == vision_model.tokens_around_image(question)[1]  # the context never follows the image
    # the words too unlikely together (min_mass above what they have): the answer is written as before
    written = vision_model.describe(scene(), question, choices=Choices(VERDICT_WORDS, min_mass=1.01), context=context)
    assert written.verdict == {} and written.completion_tokens >= 1


def test_a_vocabulary_that_splits_the_words_falls_back_to_writing(vision_model: VisionModel) -> None:
    words = (("DOG", 0), ("CAT", 0))  # not one token each in the tiny byte-level vocabulary
    assert vision_model.word_tokens(("DOG", "CAT")) == {}
    gen = vision_model.describe(scene(), "Is it a DOG or a CAT?", choices=Choices(words, min_mass=0.0))
    assert gen.verdict == {} and gen.completion_tokens >= 1


# --- reading a verdict -------------------------------------------------------------------------------------

def test_a_verdict_is_read_per_kind_and_bad_probabilities_are_none() -> None:
    card = typed_card("t", ["a", "b", "c", "d", "e"], LIMITS)
    probs = {"DONE": 0.5, "NOT": 0.2, "STEP": 0.25, "HAZARD": 0.05}
    assert read_answer("DONE", probs, card, 0).probs == {"done": 0.5, "not_done": 0.2, "hazard": 0.05}
    later = read_answer("STEP 4", {**probs, "STEP": 0.6, "DONE": 0.15}, card, 0)
    assert later.kind == "later" and later.later_step == 3 and later.probs["later"] == pytest.approx(0.6)
    assert read_answer("STEP 2", probs, card, 0).probs["done"] == pytest.approx(0.75)  # the next step: done
    assert read_answer("NOT", {}, card, 0).probs == {"not_done": 0.8, "done": pytest.approx(0.2)}  # written
    assert read_answer("a kettle", {}, card, 0).probs == {}  # no verdict: no evidence
    for bad in ({"DONE": float("nan"), "NOT": 0.5}, {"DONE": -1.0}, {"DONE": 0.0}, {"DONE": "x"}):
        assert clean_probs(bad) == {}
        assert read_answer("DONE", bad, card, 0).probs == {"done": 0.8, "not_done": pytest.approx(0.2)}


# --- evidence ---------------------------------------------------------------------------------------------

def test_evidence_is_bounded_by_the_error_rate_and_never_negative() -> None:
    assert channel_llr(0.5, 0.1) == pytest.approx(0.0)
    assert channel_llr(1.0, 0.1) == pytest.approx(math.log(9)) and channel_llr(0.0, 0.1) == pytest.approx(-math.log(9))
    assert done_llr({"hazard": 1.0}, 0.1) == 0.0  # nothing about done or not done
    assert accumulate(0.5, -3.0) == 0.0 and accumulate(1.0, 0.5) == 1.5


def sure(kind: str, p: float = 0.95) -> Reading:
    other = "not_done" if kind == "done" else "done"
    return Reading(kind, None, "", {kind: p, other: 1 - p})


def test_one_noisy_answer_lowers_the_evidence_instead_of_starting_again() -> None:
    card = typed_card("t", ["a", "b", "c"], LIMITS)
    evidence, streak = Tracker(card), Tracker(card, done_frames=2, rule="streak")
    answers = [sure("done", 0.9), sure("not_done", 0.55), sure("done", 0.9)]
    for t, reading in enumerate(answers):
        moved = [evidence.observe(reading, float(t)), streak.observe(reading, float(t))]
    assert evidence.step == 1 and moved[0].kind == "step" and moved[0].by == "model"
    assert streak.step == 0 and moved[1] is None  # the streak started again at the hesitant "not yet"


def test_steady_not_done_answers_never_advance_and_confidence_shows_the_way() -> None:
    card = typed_card("t", ["a", "b", "c"], LIMITS)
    tracker = Tracker(card)
    for t in range(500):
        assert tracker.observe(sure("not_done", 0.7), float(t)) is None
    assert tracker.step == 0 and tracker.confidence == 0.0
    tracker.observe(sure("done", 0.7), 501.0)
    assert 0.0 < tracker.confidence < 1.0
    for t in range(10):
        tracker.observe(Reading("unclear"), 502.0 + t)  # no verdict: no evidence either way
    assert 0.0 < tracker.confidence < 1.0 and tracker.step == 0


def test_answers_a_moment_apart_count_as_partly_the_same_look() -> None:
    card = typed_card("t", ["a", "b", "c"], LIMITS)
    quick, slow = Tracker(card), Tracker(card)
    quick.observe(sure("done", 0.8), 0.0)
    slow.observe(sure("done", 0.8), 0.0)
    quick.observe(sure("done", 0.8), 0.1)  # a tenth of independent_s later: a tenth of the evidence
    slow.observe(sure("done", 0.8), 5.0)
    assert slow.step == 1 and quick.step == 0 and 0.0 < quick.confidence < 1.0


def test_a_hazard_and_a_later_step_warn_on_evidence_once() -> None:
    from stream_assist.assistant.cards import card_from_dict

    card = card_from_dict("saw", {"title": "Cut", "steps": [{"instruction": "Mark"}, {"instruction": "Measure"},
                                                              {"instruction": "Saw"}]}, LIMITS)
    tracker = Tracker(card)
    hazard = Reading("hazard", None, "HAZARD a hand near the blade", {"hazard": 0.9, "not_done": 0.1})
    assert tracker.observe(hazard, 0.0) is None  # one answer is not enough
    warned = tracker.observe(hazard, 2.0)
    assert warned.kind == "warning" and warned.text == "Careful: a hand near the blade."  # the model's own words
    assert tracker.observe(hazard, 4.0) is None  # once per step and cause
    later = Reading("later", 2, "STEP 3", {"later": 0.9, "not_done": 0.1})
    events = [tracker.observe(later, 6.0 + 2 * i) for i in range(3)]
    assert [e.kind if e else None for e in events] == [None, "warning", None] and "step 3" in events[1].text
    assert tracker.step == 0
