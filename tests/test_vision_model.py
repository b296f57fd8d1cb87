"""The model path with real llama.cpp: load, image encode, decode; quantized too; missing files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from stream_assist.config import ModelConfig
from stream_assist.inference.model_source import ModelFileError, ModelFiles, check_gguf, resolve
from stream_assist.inference.vision_model import VisionModel, cpu_advertises_amx, use_extra_buffers


def scene(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_describe_runs_image_and_text_through_llama_cpp(vision_model: VisionModel) -> None:
    pieces: list[str] = []
    gen = vision_model.describe(scene(), "Describe what is in view.", on_text=pieces.append)
    assert gen.completion_tokens >= 1
    assert gen.text == "".join(pieces).strip()
    assert gen.started_at <= gen.first_token_at <= gen.done_at
    assert {"encode", "image_prefill", "text_prefill", "first_token"} <= set(gen.phases_ms)
    # the image really went in: the prompt holds far more tokens than its text alone
    assert gen.prompt_tokens > len("Describe what is in view.")


def test_fixed_prompt_is_evaluated_once_and_reused(vision_model: VisionModel) -> None:
    head, _ = vision_model.prompt_parts("Which tool is this?")
    assert head.endswith("Which tool is this?")  # instructions come before the image
    vision_model.describe(scene(), "Which tool is this?")
    again = vision_model.describe(scene()[::-1].copy(), "Which tool is this?")
    assert again.reused_tokens >= len(vision_model.tokenize(head))  # the whole fixed part was kept
    other = vision_model.describe(scene(), "Is anything dangerous here?")
    assert other.reused_tokens < again.reused_tokens  # a new prompt is evaluated anew


def test_overview_only_encodes_once(tiny_files: ModelFiles) -> None:
    """mtmd slices idefics3 images into tiles + overview; the default evaluates the overview alone."""
    counts = {}
    for slicing in ("overview", "full"):
        model = VisionModel(tiny_files, ModelConfig(n_ctx=512, max_tokens=2, n_threads=1, slicing=slicing))
        try:
            gen = model.describe(scene(), "Describe.")
            counts[slicing] = (gen.image_encodes, gen.prompt_tokens)
        finally:
            model.close()
    assert counts["overview"][0] == 1 and counts["full"][0] >= 2
    assert counts["overview"][1] < counts["full"][1]


def test_raw_pixels_and_jpeg_give_the_same_prompt_length(vision_model: VisionModel) -> None:
    raw = vision_model.describe(scene(), "Describe.")
    jpeg = vision_model.describe(scene(), "Describe.", via_jpeg=True)
    assert raw.prompt_tokens == jpeg.prompt_tokens


QUANTIZED_RUN = """
import sys, numpy as np
from pathlib import Path
from stream_assist.config import ModelConfig
from stream_assist.inference.model_source import ModelFiles
from stream_assist.inference.vision_model import VisionModel
files = ModelFiles(Path(sys.argv[1]), Path(sys.argv[2]), "test")
model = VisionModel(files, ModelConfig(n_ctx=512, max_tokens=4, n_threads=1))
gen = model.describe(np.full((64, 64, 3), 128, np.uint8), "What is this?")
model.close()
print("tokens", gen.completion_tokens)
"""


def test_quantized_q4_k_m_model_decodes(tiny_quantized_files: ModelFiles) -> None:
    """Published SmolVLM files are Q4_K_M; on CPUs that advertise AMX but fault on it, a default
    llama.cpp build dies with SIGILL on the first quantized decode. Run it in a child process so
    that such a crash is a clear failure, not a dead test run."""
    reader = gguf.GGUFReader(tiny_quantized_files.text)
    types = {t.tensor_type for t in reader.tensors}
    assert gguf.GGMLQuantizationType.Q4_K in types
    result = subprocess.run([sys.executable, "-c", QUANTIZED_RUN, str(tiny_quantized_files.text),
                             str(tiny_quantized_files.mmproj)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"quantized decode died (rc {result.returncode}): {result.stderr[-2000:]}"
    assert "tokens" in result.stdout


def test_extra_buffers_follow_the_amx_flag(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text("flags\t: fpu sse2 avx2 amx_bf16 amx_tile amx_int8\n")
    plain = tmp_path / "plain"
    plain.write_text("flags\t: fpu sse2 avx2 avx512f\n")
    assert cpu_advertises_amx(amx) and not cpu_advertises_amx(plain)
    assert use_extra_buffers("on") and not use_extra_buffers("off")
    assert use_extra_buffers("auto") == (not cpu_advertises_amx())


def test_missing_or_bad_model_files_are_one_line_errors(tmp_path: Path, tiny_files: ModelFiles) -> None:
    with pytest.raises(ModelFileError, match="model file not found"):
        resolve(ModelConfig(model_path=str(tmp_path / "none.gguf"), mmproj_path=str(tiny_files.mmproj)))
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        check_gguf(not_gguf, "mmproj")
    with pytest.raises(ModelFileError, match="not a file"):
        check_gguf(tmp_path, "model")


def test_serve_with_missing_model_exits_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream_assist", "serve", "--model", str(tmp_path / "m.gguf"),
         "--mmproj", str(tmp_path / "p.gguf"), "--port", "18080"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"stream-assist: error: model file not found: {tmp_path / 'm.gguf'}"]


def test_an_answer_past_its_time_limit_is_abandoned_and_the_next_one_works(tiny_files: ModelFiles) -> None:
    model = VisionModel(tiny_files, ModelConfig(n_ctx=512, max_tokens=8, n_threads=1, timeout_s=1e-9))
    try:
        with pytest.raises(TimeoutError, match="no complete answer"):
            model.describe(scene(), "Describe.")
        model.config.timeout_s = 60.0
        assert model.describe(scene(), "Describe.").completion_tokens >= 1  # state left consistent
    finally:
        model.close()
