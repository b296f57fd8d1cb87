"""`stream-assist bench model`: where a frame's model time goes, and what each saving is worth.

Runs the same frame through the model in several ways, from the chat-completion path the reference
used (JPEG in, every tile encoded, prompt evaluated anew) to stream-assist's default (raw RGB, the
overview alone with no tiles cut, the image first and the fixed prefix's KV cache kept), and prints
medians of each phase side by side. The "text first" ways are the layout before the image-first one:
instructions and question in the user turn before the image, all of it cached for an unchanged question.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass

import numpy as np

from ..assistant.questions import VERDICT_WORDS
from ..config import ModelConfig
from ..inference.chat_layout import QUESTION_SLOT
from ..inference.model_source import ModelFiles
from ..inference.prompts import PRESETS, SHORT
from ..inference.verdict import Choices
from ..inference.vision_model import Generation, VisionModel
from .random_model import BENCH_TASK, TASK_CONTEXT, TASK_QUESTION

QUESTION = PRESETS["next_step"].format(task=BENCH_TASK)


@dataclass(frozen=True)
class Way:
    name: str
    slicing: str
    via_jpeg: bool
    keep_prompt_cache: bool
    image_first: bool = False
    no_tiles: bool = False  # overview mode's image-token limit: mtmd cuts no tiles to throw away
    task: bool = False  # a task card's per-frame question instead of the next-step preset
    verdict: bool = False  # its verdict read from the first token's distribution, nothing written
    step_cached: bool = False  # the card's step before the image, with the instructions (else all after it)


WAYS = (
    Way("jpeg, all tiles, prompt anew", "full", True, False),
    Way("raw RGB, all tiles, prompt anew", "full", False, False),
    Way("raw RGB, overview only, prompt anew", "overview", False, False),
    Way("raw RGB, overview only, prompt cached", "overview", False, True),
    Way("overview, no tiles cut, text first, prompt cached", "overview", False, True, no_tiles=True),
    Way("overview, no tiles cut, image first, prefix cached", "overview", False, True, True, True),
    Way("task card frame, all after the image, answer written", "overview", False, True, True, True, task=True),
    Way("task card frame, all after the image, one-step verdict", "overview", False, True, True, True, task=True,
        verdict=True),
    Way("task card frame, step before the image, one-step verdict", "overview", False, True, True, True, task=True,
        verdict=True, step_cached=True),
)
# DONE and NOT are the verdicts of nearly every task frame; STEP and HAZARD write a few tokens more (questions.py)
VERDICT = Choices(tuple((word, 0) for word, _ in VERDICT_WORDS), min_mass=0.0)
COLUMNS = ("encodes", "image_in", "encode", "image_prefill", "text_prefill", "first_token_ms", "per_token", "total_ms")


def text_first(model: VisionModel) -> str:
    """The layout before image-first, as a rendering for VisionModel.chat: instructions and question in one
    user text before the image, whose KV cache is kept while the question does not change."""
    content = [{"type": "text", "text": QUESTION_SLOT}, {"type": "text", "text": model.marker}]
    return model.chat_formatter(messages=[{"role": "user", "content": content}]).prompt


def test_frame(width: int, height: int) -> np.ndarray:
    """A natural-looking frame: smooth gradients, a few shapes, mild noise (JPEG-compressible)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 200 + 30, y / height * 180 + 40, (x + y) / (width + height) * 150 + 60], axis=-1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.2) * width
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _row(gen: Generation) -> dict[str, float]:
    return {
        "encodes": gen.image_encodes,
        "image_in": gen.phases_ms.get("image_tokenize", 0.0),  # frame → mtmd bitmap → preprocessed tiles
        "encode": gen.phases_ms.get("encode", 0.0),
        "image_prefill": gen.phases_ms.get("image_prefill", 0.0),
        "text_prefill": gen.phases_ms.get("text_prefill", 0.0),
        "first_token_ms": (gen.first_token_at - gen.started_at) * 1000,
        "per_token": gen.phases_ms.get("per_token", 0.0),
        "total_ms": (gen.done_at - gen.started_at) * 1000,
        "tokens": gen.completion_tokens,
    }


def _model(files: ModelFiles, config: ModelConfig, way: Way) -> VisionModel:
    """A model set up for one way (the image-token limit is set when mtmd loads the projector)."""
    model = VisionModel(files, dataclasses.replace(config, slicing="overview" if way.no_tiles else "full"))
    model.config.slicing = way.slicing
    if not way.image_first:
        model.chat = text_first(model)
    return model


def run(files: ModelFiles, config: ModelConfig, image_size: int, repeats: int, overview_only: bool = False) -> dict:
    """Medians per way, after one warm-up answer per way; the frame changes every repeat. Each way has its own
    model (and so its own prompt cache), and the ways take turns frame by frame, so that a busy machine slows
    them alike."""
    config = dataclasses.replace(config, timeout_s=3600.0)  # a benchmark measures slow ways; it does not give up
    ways = [w for w in WAYS if not (overview_only and w.slicing == "full")]
    frames = [test_frame(image_size, image_size * 3 // 4)[:, ::-1].copy() if i % 2 else
              test_frame(image_size, image_size * 3 // 4) for i in range(repeats + 1)]
    models: list[VisionModel] = []
    rows: dict[str, list[dict[str, float]]] = {w.name: [] for w in ways}
    try:
        for way in ways:
            models.append(_model(files, config, way))
        for frame in frames:
            for way, model in zip(ways, models, strict=True):
                if not way.keep_prompt_cache:
                    model.forget_prompt_cache()
                # text first asked the whole question before the image, the answer's length included
                question = QUESTION if way.image_first else f"{QUESTION} {SHORT}"
                context = TASK_CONTEXT if way.step_cached else ""
                if way.task:
                    question = TASK_QUESTION if way.step_cached else f"{TASK_CONTEXT} {TASK_QUESTION}"
                rows[way.name].append(_row(model.describe(frame, question, via_jpeg=way.via_jpeg,
                                                          choices=VERDICT if way.verdict else None, context=context)))
        images_made = [len(model.preprocessed_images(frames[0])) for model in models]
    finally:
        for model in models:
            model.close()
    results = {}
    for way, made in zip(ways, images_made, strict=True):
        kept = rows[way.name][1:]  # the first answer warms caches (and, for the cached ways, fills the prompt cache)
        results[way.name] = {k: round(statistics.median(r[k] for r in kept), 1) for k in (*COLUMNS, "tokens")}
        results[way.name]["images_made"] = made
    return {"model": files.text.name, "mmproj": files.mmproj.name, "image": f"{image_size}x{image_size * 3 // 4}",
            "threads": models[0].threads, "repeats": repeats, "max_tokens": config.max_tokens, "ways": results}


def print_table(result: dict) -> None:
    print(f"model {result['model']} + {result['mmproj']}, frame {result['image']}, {result['threads']} threads, "
          f"{result['max_tokens']} tokens max, medians of {result['repeats']} (ms)")
    head = ("way", "images made", "encodes", "image in", "encode", "img prefill", "txt prefill", "first token",
            "per token", "total")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in result["ways"].items():
        cells = [name, f"{r['images_made']}", f"{r['encodes']:.0f}", f"{r['image_in']:.1f}"]
        cells += [f"{r[k]:.0f}" for k in COLUMNS[2:6]] + [f"{r['per_token']:.1f}", f"{r['total_ms']:.0f}"]
        print("| " + " | ".join(cells) + " |")


def main(files: ModelFiles, config: ModelConfig, image_size: int, repeats: int, as_json: bool,
         overview_only: bool = False) -> int:
    result = run(files, config, image_size, repeats, overview_only)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def compare_projectors(text: ModelFiles, other_mmproj, config: ModelConfig, image_size: int, repeats: int) -> dict:
    """Encode time and embedding difference of two projectors (e.g. F16 and Q8_0) on the same frames."""
    frame = test_frame(image_size, image_size * 3 // 4)
    out = {}
    embeddings = []
    for files in (text, ModelFiles(text.text, other_mmproj, text.source)):
        model = VisionModel(files, config)
        try:
            runs = [model.encode_overview(frame) for _ in range(repeats + 1)][1:]
        finally:
            model.close()
        out[files.mmproj.name] = {"encode_ms": round(statistics.median(ms for _, ms in runs), 1)}
        embeddings.append(runs[0][0].astype(np.float64))
    a, b = embeddings
    out["difference"] = {
        "relative_l2": float(np.linalg.norm(a - b) / np.linalg.norm(a)),
        "cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
        "max_abs": float(np.max(np.abs(a - b))),
    }
    return out
