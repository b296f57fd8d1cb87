"""Shared fixtures: a tiny random-weight SmolVLM pair made here, and a real server running it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stream_assist.bench.random_model import write_pair
from stream_assist.bench.synthetic_client import Client
from stream_assist.config import Config
from stream_assist.inference.model_source import ModelFiles
from stream_assist.inference.vision_model import VisionModel
from stream_assist.inference.worker import InferenceWorker
from stream_assist.server.app import ServerState, make_app, start_site
from stream_assist.speech_out.synth import Synthesiser


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_files(model_dir: Path) -> ModelFiles:
    text, mmproj = write_pair(model_dir, "tiny")
    return ModelFiles(text, mmproj, "random tiny")


@pytest.fixture(scope="session")
def tiny_quantized_files(model_dir: Path) -> ModelFiles:
    text, mmproj = write_pair(model_dir, "tiny", quantized=True)
    return ModelFiles(text, mmproj, "random tiny q4_k_m")


# Journals and user cards of every test server go here, never into the user's own data and config dirs.
ASSISTANT_DIR = Path(tempfile.mkdtemp(prefix="stream-assist-test-"))


def small_config() -> Config:
    config = Config()
    config.assistant.data_dir = str(ASSISTANT_DIR / "journals")
    config.assistant.cards_dir = str(ASSISTANT_DIR / "cards")
    config.model.n_ctx = 1024  # the tiny model's byte-level tokens make a task's question ~4x longer than real
    config.model.max_tokens = 12
    config.model.n_threads = 1
    config.pipeline.max_edge = 256
    config.pipeline.change_threshold = 0.0  # every frame goes to the model, unless a test says otherwise
    config.server.max_sessions = 4
    config.voice.max_utterance_s = 3.0  # the monologue test stays short
    config.voice.asr = "pocketsphinx"  # the server tests hear with pocketsphinx; test_voice_faster_whisper uses whisper
    return config


@pytest.fixture(scope="session")
def vision_model(tiny_files: ModelFiles):
    model = VisionModel(tiny_files, small_config().model)
    yield model
    model.close()


@contextlib.asynccontextmanager
async def running_server(model: VisionModel, config: Config, port: int = 0,
                         voice: Synthesiser | None = None) -> AsyncIterator[tuple[str, ServerState]]:
    """The real app on a loopback port (0: a free one), serving model (and speaking with voice, if given); yields
    (base URL, state)."""
    worker = InferenceWorker(model)
    worker.start()
    state = ServerState(config, worker, "tiny", voice)
    app = make_app(state)
    app.on_shutdown.clear()  # the model belongs to the vision_model fixture
    runner, port = await start_site(app, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        for session in list(state.sessions.values()):
            await session.close()
        state.resume.clear()
        await runner.cleanup()
        worker.stop()
        state.executor.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(vision_model: VisionModel) -> AsyncIterator[tuple[str, ServerState]]:
    async with running_server(vision_model, small_config()) as running:
        yield running


async def keeps_streaming(client: Client) -> None:
    """Asserts that a session still gets guidance: two more, about newer and newer frames."""
    before = (await client.next_message("guidance"))["frame_id"]
    assert (await client.next_message("guidance"))["frame_id"] > before
