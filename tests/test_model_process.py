"""The embedded model in its own process: it answers like the inline model, and a crash or hang costs an error
and a restart, never the server."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import aiohttp
import numpy as np
import pytest

from stream_assist.assistant.questions import VERDICT_WORDS
from stream_assist.bench.server_process import start_server_process
from stream_assist.bench.synthetic_client import connect
from stream_assist.inference.llama_log import route_llama_logs
from stream_assist.inference.model_process import INITIAL_FRAME_BYTES, ModelProcess, ModelProcessError
from stream_assist.inference.model_source import ModelFileError, ModelFiles
from stream_assist.inference.verdict import Choices
from stream_assist.inference.vision_model import VisionModel

from .conftest import keeps_streaming, running_server, small_config


def scene(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], axis=-1).astype(np.uint8)


@pytest.fixture
def model_process(tiny_files: ModelFiles):
    model = ModelProcess(tiny_files, small_config().model)
    yield model
    model.close()


def test_child_answers_as_the_inline_model_does_and_streams(model_process: ModelProcess,
                                                            tiny_files: ModelFiles) -> None:
    pieces: list[str] = []
    gen = model_process.describe(scene(), "What is in the picture?", pieces.append)
    choices = Choices(VERDICT_WORDS, min_mass=0.0)
    verdict = model_process.describe(scene(), "DONE or NOT?", choices=choices)
    fresh = VisionModel(tiny_files, small_config().model)  # the same first answer, with no prompt cache either side
    try:
        inline = fresh.describe(scene(), "What is in the picture?")
        inline_verdict = fresh.describe(scene(), "DONE or NOT?", choices=choices)
    finally:
        fresh.close()
    assert gen.text == inline.text and gen.completion_tokens == inline.completion_tokens  # temperature 0
    assert verdict.verdict and verdict.verdict == pytest.approx(inline_verdict.verdict, abs=1e-4)  # choices go across
    assert len(pieces) >= 1 and "".join(pieces).strip() == gen.text
    assert gen.phases_ms["encode"] > 0 and gen.image_encodes == 1


def test_a_frame_larger_than_the_shared_buffer_grows_it(model_process: ModelProcess) -> None:
    big = np.tile(scene(), (13, 13, 1))[:1200, :1600].copy()
    assert big.nbytes > INITIAL_FRAME_BYTES
    assert model_process.describe(big, "Describe.").completion_tokens >= 1
    assert model_process.describe(scene(), "Describe.").completion_tokens >= 1


def test_bad_frame_is_a_clear_error_and_changes_nothing(model_process: ModelProcess) -> None:
    pid = model_process.pid
    with pytest.raises(ValueError, match="expected an RGB uint8 frame"):
        model_process.describe(scene().astype(np.float32), "Describe.")
    with pytest.raises(ValueError, match="expected an RGB uint8 frame"):
        model_process.describe(scene()[..., 0], "Describe.")
    assert model_process.describe(scene(), "Describe.").completion_tokens >= 1
    assert model_process.pid == pid and model_process.health()["failures"] == 0


def test_a_hung_model_process_is_killed_past_its_timeout_and_replaced(tiny_files: ModelFiles) -> None:
    config = small_config().model
    config.timeout_s = 1.0
    model = ModelProcess(tiny_files, config)
    try:
        hung = model.pid
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(ModelProcessError, match="hung"):
            model.describe(scene(), "Describe.")
        with model.lease(threading.Event()) as describe:  # a new process, after the back-off
            assert describe(scene(), "Describe.").completion_tokens >= 1
        assert model.pid != hung and model.health()["restarts"] == 1
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # the hung one is gone, not left stopped
    finally:
        model.close()


def test_a_model_that_cannot_load_is_a_one_line_error(tiny_files: ModelFiles) -> None:
    wrong = ModelFiles(tiny_files.text, tiny_files.text, "wrong")  # the text model given as the projector
    with pytest.raises(ModelFileError, match="cannot load projector"):
        ModelProcess(wrong, small_config().model)


async def errors_until_resumed(client, since_ms: float) -> list[dict]:
    """The errors a session gets until its first answer about a frame the model took after since_ms."""
    errors = []
    while True:
        msg = await client.next_message(("error", "guidance"))
        if msg["type"] == "error":
            errors.append(msg)
        elif msg["timeline"]["taken"] > since_ms:
            return errors


async def test_sigkill_mid_answer_costs_one_error_then_guidance_resumes(model_process: ModelProcess) -> None:
    config = small_config()
    config.model.max_tokens = 64  # a longer answer, so the kill lands in one
    async with running_server(model_process, config) as (base, state):
        client = await connect(base)
        bystander = await connect(base)
        killed_during = (await client.next_message("partial"))["frame_id"]
        os.kill(model_process.pid, signal.SIGKILL)
        killed_ms = time.time() * 1000
        mine, theirs = await errors_until_resumed(client, killed_ms), await errors_until_resumed(bystander, killed_ms)
        errors = mine + theirs  # the session whose frame was in flight gets the one error; usually the client's
        assert len(errors) == 1 and "killed by SIGKILL" in errors[0]["message"]
        assert errors[0]["code"] == "inference_failed"
        await keeps_streaming(client)
        await keeps_streaming(bystander)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as res:
            health = await res.json()
        assert health["status"] == "ok" and health["worker_alive"]
        assert health["model_process"]["restarts"] == 1 and health["model_process"]["alive"]
        assert health["model_process"]["pid"] == model_process.pid
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as res:
            metrics = await res.text()
        assert "stream_assist_model_process_restarts_total 1.0" in metrics
        assert "stream_assist_model_process_up 1.0" in metrics
        await client.close()
        await bystander.close()
    where = "mid-answer" if mine and errors[0]["frame_id"] == killed_during else "between answers"
    print(f"\nfault: model process SIGKILLed ({where}): 1 error, guidance resumed after the restart")


async def test_serve_is_quiet_and_says_which_build_and_thread_mode_run(tiny_files: ModelFiles) -> None:
    proc, url = await start_server_process(tiny_files, keep_stderr=True, timeout=120)
    try:
        client = await connect(url)
        await client.next_message("guidance")
        await client.close()
    finally:
        proc.terminate()
        await proc.wait()
    stderr = (await proc.stderr.read()).decode()
    assert "model runs in process" in stderr and "on its main thread (llama-cpp-python" in stderr
    for chatter in ("add_text", "decoding image batch", "llama_model_loader", "clip_model_loader", "load_hparams"):
        assert chatter not in stderr, f"{chatter!r} in the server's stderr:\n{stderr[-2000:]}"


def test_llama_cpp_logs_reach_python_logging_at_debug(tiny_files: ModelFiles, caplog) -> None:
    route_llama_logs()
    with caplog.at_level(logging.DEBUG, logger="stream_assist.llama"):
        model = VisionModel(tiny_files, small_config().model)
        model.describe(scene(), "Describe.")
        model.close()
    lines = [r for r in caplog.records if r.name == "stream_assist.llama"]
    assert any("decoding image batch" in r.getMessage() for r in lines)
    assert all(r.levelno == logging.DEBUG for r in lines if "load_hparams" in r.getMessage())
