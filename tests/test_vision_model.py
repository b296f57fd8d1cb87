"""The model path with real llama.cpp: load, image encode, decode; quantized too; missing files."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import gguf
import numpy as np
import pytest

from stream_assist.bench.random_model import SHAPES, Chat, write_text_model
from stream_assist.config import ModelConfig
from stream_assist.inference import chat_layout, prompt_tokens
from stream_assist.inference.model_source import ModelFileError, ModelFiles, check_gguf, resolve
from stream_assist.inference.prompts import INSTRUCTIONS, PromptSettings
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


def test_a_second_caller_waits_for_the_first_answer(vision_model: VisionModel) -> None:
    """One llama.cpp context used by two threads at once crashes the process (a server's worker and a direct caller
    did in CI): describe lets one caller in at a time."""
    first_piece, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def first() -> None:
        results["a"] = vision_model.describe(scene(), "Describe what is in view.",
                                             on_text=lambda _: (first_piece.set(), release.wait(60)))

    a = threading.Thread(target=first)
    a.start()
    assert first_piece.wait(60), "the first answer produced no text"
    b = threading.Thread(target=lambda: results.update(b=vision_model.describe(scene(), "What is this?")))
    b.start()
    assert vision_model._busy.locked() and b.is_alive()  # the second caller is held while the first one generates
    release.set()
    a.join(60)
    b.join(60)
    assert results["b"].started_at >= results["a"].done_at


def test_image_comes_first_in_the_user_turn_after_the_instructions(vision_model: VisionModel) -> None:
    """SmolVLM's layout: instructions as a system turn, then `User:` and the image, then the question."""
    before, after = vision_model.tokens_around_image("Which tool is this?")
    head = vision_model._llm.detokenize(before, special=True).decode()
    tail = vision_model._llm.detokenize(after, special=True).decode()
    assert head == f"<|im_start|>System: {INSTRUCTIONS}<end_of_utterance>\nUser:"  # image-first: no space
    assert tail == "Which tool is this?<end_of_utterance>\nAssistant:"


def test_everything_before_the_image_is_evaluated_once_whatever_the_question(vision_model: VisionModel) -> None:
    before, _ = vision_model.tokens_around_image("Which tool is this?")
    vision_model.describe(scene(), "Which tool is this?")
    again = vision_model.describe(scene()[::-1].copy(), "Which tool is this?")
    assert again.reused_tokens > len(before)  # the instructions and the image's opening tokens were kept
    other = vision_model.describe(scene(), "Is anything dangerous here?")
    assert other.reused_tokens == again.reused_tokens  # a new question changes nothing before the image
    vision_model.forget_prompt_cache()
    assert vision_model.describe(scene(), "Is anything dangerous here?").reused_tokens == 0


CONTROL_TEXTS = ["<end_of_utterance>", "<|im_start|>", "<image>", "<global-img>", "<row_1_col_1>",
                 "<fake_token_around_image>", "<__media__>", "\ue001question\ue001"]


@pytest.mark.parametrize("typed", CONTROL_TEXTS)
def test_text_a_person_types_never_becomes_a_control_token(vision_model: VisionModel, typed: str) -> None:
    llm = vision_model._llm
    template_ids = [t for t in vision_model.tokens_around_image("Is it here?")[1] if not prompt_tokens.is_plain(llm, t)]
    questions = [f"Is {typed} here?", PromptSettings("custom", custom=f"{typed} now").text(),
                 PromptSettings("next_step", task=f"fix {typed}").text()]
    for question in questions:
        before, after = vision_model.tokens_around_image(question)
        assert before == vision_model.tokens_around_image("Is it here?")[0]  # the cached prefix is untouched
        # the only control tokens after the image are the template's own (<end_of_utterance>)
        assert [t for t in after if not prompt_tokens.is_plain(llm, t)] == template_ids
        assert typed in llm.detokenize(after, special=True).decode()  # the text itself is kept
    assert vision_model.describe(scene(), questions[0]).completion_tokens >= 1


def test_overview_mode_makes_no_tiles_and_as_many_image_tokens(tiny_files: ModelFiles) -> None:
    """The tiny projector carries preproc_image_size = 4 image sizes, as SmolVLM's do: without the image-token
    limit mtmd would cut 12 tiles of a 4:3 frame; with it, one tile and the overview, as many tokens. mtmd
    resizes the overview a little differently under the limit (relative L2 ~1.5 % on the 500M shape)."""
    frame = scene(480, 640)
    made, embeddings = {}, {}
    for slicing in ("overview", "full"):
        model = VisionModel(tiny_files, ModelConfig(n_ctx=1024, max_tokens=2, n_threads=1, slicing=slicing))
        try:
            made[slicing] = model.preprocessed_images(frame)
            embeddings[slicing] = model.encode_overview(frame)[0]
        finally:
            model.close()
    assert len(made["full"]) == 13 and len(made["overview"]) == 2
    assert made["overview"][-1] == made["full"][-1]  # as many overview tokens
    a, b = embeddings["overview"].astype(np.float64), embeddings["full"].astype(np.float64)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.05  # the same picture


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


# Chat templates of other mtmd models, as published with their GGUF files (Gemma 3 writes the BOS text
# and raises on bad roles; Qwen2-VL draws its own vision markup).
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""
QWEN2VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}")
OTHER_CHATS = {
    "gemma3": (Chat(GEMMA3_TEMPLATE, ("<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>"), "<bos>",
                    "<end_of_turn>", add_bos=True),
               f"<bos><start_of_turn>user\n{INSTRUCTIONS}\n\n", "Is it on?<end_of_turn>\n<start_of_turn>model\n"),
    "qwen2vl": (Chat(QWEN2VL_TEMPLATE, ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>",
                                        "<|vision_end|>"), "<|endoftext|>", "<|im_end|>"),
                f"<|im_start|>system\n{INSTRUCTIONS}<|im_end|>\n<|im_start|>user\n",
                "Is it on?<|im_end|>\n<|im_start|>assistant\n"),
}


@pytest.mark.parametrize("name", sorted(OTHER_CHATS))
def test_other_models_templates_render_with_their_bos_and_image_markup(name: str, tmp_path: Path,
                                                                       tiny_files: ModelFiles) -> None:
    chat, head, tail = OTHER_CHATS[name]
    text = tmp_path / f"{name}.gguf"
    write_text_model(text, SHAPES["tiny"], chat=chat)
    model = VisionModel(ModelFiles(text, tiny_files.mmproj, name), ModelConfig(n_ctx=1024, max_tokens=2, n_threads=1))
    try:
        before, after = model.tokens_around_image("Is it on?")
        # the template's own image markup is replaced by the media marker: mtmd adds the image's tokens
        assert model._llm.detokenize(before, special=True).decode() == head
        assert model._llm.detokenize(after, special=True).decode() == tail
        assert before.count(model._llm.token_bos()) == chat.add_bos  # Gemma's template writes it: not added twice
        assert model.describe(scene(), "Is it on?").completion_tokens >= 1
    finally:
        model.close()


def test_a_template_without_system_turn_gets_the_instructions_first_in_the_user_turn() -> None:
    """raise_exception and loop controls are there for templates that use them (Transformers' Jinja set-up)."""
    template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
                "{% endif %}[{{ m['role'] }}]{% for c in m['content'] %}{% if c['type'] == 'video' %}{% continue %}"
                "{% endif %}{% if c['type'] == 'image' %}<img>{% else %}{{ c['text'] }}{% endif %}"
                "{% if loop.index > 5 %}{% break %}{% endif %}{% endfor %}{% endfor %}>")
    rendered = chat_layout.render(chat_layout.formatter(template, "<s>", "</s>"), "<__media__>")
    assert rendered == f"[user]{chat_layout.INSTRUCTIONS_SLOT}<__media__>{chat_layout.QUESTION_SLOT}>"


def test_a_template_that_cannot_place_the_image_is_a_one_line_model_error(tmp_path: Path,
                                                                          tiny_files: ModelFiles) -> None:
    text = tmp_path / "bad-template.gguf"
    write_text_model(text, SHAPES["tiny"], chat=Chat("{{ raise_exception('no images here') }}"))
    with pytest.raises(ModelFileError, match="chat template of bad-template.gguf cannot be used: no images here"):
        VisionModel(ModelFiles(text, tiny_files.mmproj, "bad"), ModelConfig(n_ctx=512, n_threads=1))
