"""`stream-assist bench live`: the same model isolated and inside the live server, per phase, side by side.

Isolated: VisionModel.describe on changing frames in this process, called from the main thread (and, if
asked, from a second thread, or through a ModelProcess, one after the other), as `bench model` does.
Live: `stream-assist serve` as its own process with an aiortc client streaming changing video, the phases
read from its guidance messages. Prints medians per phase, the ratios to the first isolated row, and how
often a guidance came. With a task card, every frame asks the card's question: isolated with its verdict read
in one step, live twice (the answer written, then the verdict read in one step), the cadence a person sees.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import ModelConfig
from ..inference.llama_log import route_llama_logs
from ..inference.model_process import ModelProcess
from ..inference.model_source import ModelFiles
from ..inference.prompts import PromptSettings
from ..inference.vision_model import Generation, VisionModel
from .model import VERDICT, test_frame
from .random_model import TASK_CONTEXT, TASK_QUESTION
from .server_process import start_server_process
from .synthetic_client import Client, connect

PHASES = ("image_in", "encode", "image_prefill", "text_prefill", "first_token", "per_token", "total", "tokens")
ISOLATED = {"main": "isolated, main thread", "thread": "isolated, second thread", "child": "isolated, model process"}


def _phases(gen: Generation, called_at: float) -> dict[str, float]:
    """One answer's phases (ms); first token and total count from the call, as the live ones count from `taken`."""
    return {"image_in": gen.phases_ms.get("image_tokenize", 0.0), "encode": gen.phases_ms.get("encode", 0.0),
            "image_prefill": gen.phases_ms.get("image_prefill", 0.0),
            "text_prefill": gen.phases_ms.get("text_prefill", 0.0),
            "first_token": (gen.first_token_at - called_at) * 1000, "per_token": gen.phases_ms.get("per_token", 0.0),
            "total": (gen.done_at - called_at) * 1000, "tokens": gen.completion_tokens}


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 1) for k in PHASES} | {"n": len(rows)}


def isolated(files: ModelFiles, config: ModelConfig, size: tuple[int, int], repeats: int, where: str,
             task: bool = False) -> dict:
    """Medians of repeats answers about alternating frames, after one warm-up answer. Each mode runs alone, its
    model closed before the next loads: taking turns, an OpenMP team left spinning by one mode slowed another.
    `task`: a task card's question, its verdict read in one step."""
    frame = test_frame(*size)
    frames = [frame[:, ::-1].copy() if i % 2 else frame for i in range(repeats + 1)]
    prompt, context, choices = (TASK_QUESTION, TASK_CONTEXT, VERDICT) if task else (PromptSettings().text(), "", None)
    model = ModelProcess(files, config) if where == "child" else VisionModel(files, config)
    second = ThreadPoolExecutor(max_workers=1)  # one long-lived thread, as the server's inference worker
    rows: list[dict[str, float]] = []
    try:
        for rgb in frames:
            called = time.time()
            gen = second.submit(model.describe, rgb, prompt, choices=choices, context=context).result() \
                if where == "thread" else model.describe(rgb, prompt, choices=choices, context=context)
            rows.append(_phases(gen, called))
    finally:
        second.shutdown()
        model.close()
    return _medians(rows[1:])


def _live_phases(msg: dict) -> dict[str, float]:
    tl, model_ms = msg["timeline"], msg["model_ms"]
    return {"image_in": model_ms.get("image_tokenize", 0.0), "encode": model_ms.get("encode", 0.0),
            "image_prefill": model_ms.get("image_prefill", 0.0), "text_prefill": model_ms.get("text_prefill", 0.0),
            "first_token": tl["first_token"] - tl["taken"], "per_token": model_ms.get("per_token", 0.0),
            "total": tl["done"] - tl["taken"], "tokens": msg["tokens"]["completion"]}


async def live(files: ModelFiles, config: ModelConfig, size: tuple[int, int], fps: float, seconds: float,
               process: str, card: str = "", one_step: bool = True, video: Path | None = None) -> dict:
    """A serve process (model.process as given) and one streaming client; guidance phases over `seconds`.
    `card`: the client follows that task card, each frame's verdict read in one step or its answer written.
    `video`: the client streams that file's frames."""
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "live.toml"
        config_path.write_text(
            f"[model]\nn_ctx = {config.n_ctx}\nn_threads = {config.n_threads}\nmax_tokens = {config.max_tokens}\n"
            f"timeout_s = {config.timeout_s}\nprocess = \"{process}\"\n"
            f"[pipeline]\nsample_fps = {float(fps)}\nchange_threshold = 0.0\n"
            f"max_edge = {max(size)}\n"
            f"[assistant]\ndata_dir = \"{tmp}\"\none_step_verdict = {str(one_step).lower()}\n"
            # random weights spread the first token over the whole vocabulary; a trained model puts most of it on
            # the answer words, so the bench takes any mass to run the one-step path as a real model would
            "verdict_min_mass = 0.0\n")
        proc, url = await start_server_process(files, "--config", str(config_path))
        try:
            client = await connect(url, size[0], size[1], fps, video_file=video)
            try:
                if card:
                    client.send({"type": "settings", "card": card})
                    await client.next_message("task", timeout=60)
                await _frame_guidance(client, 600)  # warm-up
                got = [m for m in await client.collect("guidance", seconds) if "timeline" in m]  # frames' answers
            finally:
                await client.close()
        finally:
            proc.terminate()
            await proc.wait()
    sent = [m["timeline"]["sent"] for m in got]
    intervals = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    result = _medians([_live_phases(m) for m in got]) if got else {"n": 0}
    result["guidance_interval_ms"] = round(statistics.median(intervals), 1) if intervals else float("nan")
    result["verdicts"] = sum(1 for m in got if m.get("verdict"))  # answers whose verdict was read in one step
    return result


async def _frame_guidance(client: Client, timeout: float) -> dict:
    """The next guidance that answers a frame (a card's step announcements answer commands, not frames)."""
    while "timeline" not in (msg := await client.next_message("guidance", timeout=timeout)):
        pass
    return msg


def run(files: ModelFiles, config: ModelConfig, size: tuple[int, int], fps: float, seconds: float, repeats: int,
        modes: list[str], live_process: str, card: str = "", video: Path | None = None) -> dict:
    route_llama_logs()  # as quiet as the server
    task = ", task card, one-step verdict" if card else ""
    rows = {ISOLATED[m] + task: isolated(files, config, size, repeats, m, bool(card)) for m in modes}
    runs = [(", answer written", False), (", one-step verdict", True)] if card else [("", True)]
    for name, one_step in runs:
        rows[f"live, model.process = {live_process}{name}"] = asyncio.run(
            live(files, config, size, fps, seconds, live_process, card, one_step, video))
    return {"model": files.text.name, "mmproj": files.mmproj.name, "size": f"{size[0]}x{size[1]}", "fps": fps,
            "seconds": seconds, "max_tokens": config.max_tokens, "threads": config.n_threads, "card": card,
            "rows": rows}


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def print_table(r: dict) -> None:
    print(f"model {r['model']} + {r['mmproj']}, {r['size']} frames, {r['max_tokens']} tokens max, live client at "
          f"{r['fps']:g} fps for {r['seconds']:g} s{', card ' + r['card'] if r['card'] else ''}; medians (ms)")
    rows = r["rows"]
    base = next(iter(rows.values()))
    head = ("", *PHASES, "n", "guidance every")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, row in rows.items():
        interval = row.get("guidance_interval_ms")
        cells = [_fmt(row[k]) if k in row else "–" for k in PHASES]
        print("| " + " | ".join([name, *cells, str(row["n"]), _fmt(interval) if interval else "–"]) + " |")
    for name, row in rows.items():
        if r["card"] and "verdicts" in row:
            print(f"{name}: {row['verdicts']} of {row['n']} answers read in one step")
    for name, row in list(rows.items())[1:]:
        ratios = [f"{k} {row[k] / base[k]:.2f}x" for k in ("encode", "text_prefill", "first_token", "per_token")
                  if k in row and base.get(k)]
        print(f"{name} / {next(iter(rows))}: " + ", ".join(ratios))


def main(files: ModelFiles, config: ModelConfig, size: tuple[int, int], fps: float, seconds: float, repeats: int,
         modes: list[str], live_process: str, as_json: bool, card: str = "", video: Path | None = None) -> int:
    result = run(files, config, size, fps, seconds, repeats, modes, live_process, card, video)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
