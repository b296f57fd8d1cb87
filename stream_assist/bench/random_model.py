"""Writes random-weight SmolVLM-shaped GGUF pairs (llama text model + idefics3 projector).

No weights can be downloaded where the tests and benchmarks run, so they use models of the real
architecture with random weights: the answers are noise, but loading, the image path, the KV cache
and the compute cost are real. `tiny` is for tests; `256m` and `500m` have SmolVLM's real dimensions.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..assistant.cards import SHIPPED_DIR, Limits, find_card
from ..assistant.questions import frame_context, frame_question
from ..inference.prompts import DEFAULT_TASK, INSTRUCTIONS, PRESETS

# Idefics3 / SmolVLM chat template (as shipped with the published GGUF files).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<global-img>", "<image>"]


@dataclass(frozen=True)
class Chat:
    """A text model's chat template, the control tokens it adds to SmolVLM's, and its BOS/EOS."""

    template: str = CHAT_TEMPLATE
    extra_tokens: tuple[str, ...] = ()
    bos: str = "<|im_start|>"
    eos: str = "<end_of_utterance>"
    add_bos: bool = False


SMOLVLM_CHAT = Chat()
# SmolVLM's tile markers, filed as user-defined tokens: llama.cpp matches those even in plain-text tokenizing
TILE_TOKENS = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
# The big shapes' vocabularies make each word of the prompts one token (with and without its leading space),
# as SmolVLM's real 49k vocabulary does, so prompt lengths (and text prefill) are near the real ones.
BENCH_TASK = "assembling a bookshelf"
# The benchmarks' task card frame: a shipped card's third step, its context (before the image) and question.
TASK_CONTEXT = frame_context(find_card("flatpack-bookcase", [SHIPPED_DIR], Limits(50, 300)), 2)
TASK_QUESTION = frame_question(2)
# The task question's answer words are one token each even in the tiny vocabulary (bare, as a reply starts), so
# a verdict can be read from one decoding step there too; the big ones also hold the task card frame's words.
VERDICT_TEXT = "DONE NOT STEP HAZARD"
COMMON_TEXT = " ".join(["System User Assistant", INSTRUCTIONS, *PRESETS.values(), DEFAULT_TASK, BENCH_TASK,
                        VERDICT_TEXT, TASK_CONTEXT, TASK_QUESTION])
TOKENIZER_VERSION = 5  # in the file names: a changed vocabulary must not reuse a cached model


@dataclass(frozen=True)
class Shape:
    """Dimensions of a SmolVLM-like pair."""

    text_width: int
    text_blocks: int
    text_ffn: int
    text_heads: int
    text_kv_heads: int
    vocab_size: int
    vision_width: int
    vision_blocks: int
    vision_ffn: int
    vision_heads: int
    image_size: int
    patch_size: int
    scale_factor: int
    preproc_image_size: int  # the longest edge mtmd resizes a frame to before cutting tiles


SHAPES: dict[str, Shape] = {
    # text width 256 so every matrix row is a multiple of 256 and Q4_K really applies when quantized
    # preproc_image_size is 4 image sizes as llama.cpp's converter writes for SmolVLM (2048 for 512 px)
    "tiny": Shape(256, 2, 512, 4, 2, 320, 32, 2, 48, 2, 64, 8, 2, 256),
    "256m": Shape(576, 30, 1536, 9, 3, 49280, 768, 12, 3072, 12, 512, 16, 4, 2048),
    "500m": Shape(960, 32, 2560, 15, 5, 49280, 768, 12, 3072, 12, 512, 16, 4, 2048),
}


def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (any text is then tokenizable)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _word_merges(text: str, spaced: bool = True) -> list[tuple[str, str]]:
    """BPE merges that build each word of text letter by letter from its start: after a space (GPT-2's Ġ),
    and bare for capitalised words (a sentence's first word). Every chain starts at a word's first
    character, so no merge can fire inside another word and break its chain."""
    words = sorted(set(re.findall(r"[A-Za-z]+", text)))
    forms = ["Ġ" + w for w in words if spaced] + [w for w in words if w[0].isupper()]
    merges: dict[tuple[str, str], None] = {}
    for form in forms:
        for i in range(2, len(form) + 1):
            merges[(form[:i - 1], form[i - 1])] = None
    return list(merges)


def _vocabulary(size: int, extra_tokens: tuple[str, ...] = ()) -> tuple[list[str], list[int], list[str]]:
    tokens = _byte_tokens() + ["ĊĊ"]
    types = [1] * len(tokens)
    merges = ["Ċ Ċ"]
    words = _word_merges(COMMON_TEXT)
    if size - len(tokens) - len(SPECIAL_TOKENS) - len(TILE_TOKENS) >= len(words):  # not in the tiny vocabulary
        tokens += [a + b for a, b in words]
        types += [1] * len(words)
        merges += [f"{a} {b}" for a, b in words]
    have = set(tokens)
    answers = [(a, b) for a, b in _word_merges(VERDICT_TEXT, spaced=False) if a + b not in have]
    tokens += [a + b for a, b in answers]
    types += [1] * len(answers)
    merges += [f"{a} {b}" for a, b in answers]
    control = SPECIAL_TOKENS + list(extra_tokens)
    tokens += control
    types += [3] * len(control)
    tokens += TILE_TOKENS
    types += [4] * len(TILE_TOKENS)
    filler = max(0, size - len(tokens))
    tokens += [f"<unused_{i}>" for i in range(filler)]
    types += [4] * filler  # user-defined: never produced by the BPE merges
    return tokens, types, merges


def _rand(rng: np.random.Generator, *shape: int, scale: float = 0.02) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)


def _matrix(rng: np.random.Generator, out_dim: int, in_dim: int, f16: bool) -> np.ndarray:
    m = _rand(rng, out_dim, in_dim)
    return m.astype(np.float16) if f16 else m


def write_text_model(path: Path, shape: Shape, seed: int = 0, f16: bool = False, chat: Chat = SMOLVLM_CHAT) -> None:
    """Writes the llama-architecture text half with a byte-level BPE tokenizer and a chat template
    (SmolVLM's unless chat says otherwise)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, types, merges = _vocabulary(shape.vocab_size, chat.extra_tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("stream-assist random SmolVLM text model")
    w.add_context_length(8192)
    w.add_embedding_length(shape.text_width)
    w.add_block_count(shape.text_blocks)
    w.add_feed_forward_length(shape.text_ffn)
    w.add_head_count(shape.text_heads)
    w.add_head_count_kv(shape.text_kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(100000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index(chat.bos))
    w.add_eos_token_id(tokens.index(chat.eos))
    w.add_add_bos_token(chat.add_bos)
    w.add_chat_template(chat.template)

    head_dim = shape.text_width // shape.text_heads
    kv_width = head_dim * shape.text_kv_heads
    n_vocab = len(tokens)
    w.add_tensor("token_embd.weight", _matrix(rng, n_vocab, shape.text_width, f16))
    w.add_tensor("output_norm.weight", np.ones(shape.text_width, dtype=np.float32))
    for i in range(shape.text_blocks):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(shape.text_width, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", _matrix(rng, shape.text_width, shape.text_width, f16))
        w.add_tensor(p + "attn_k.weight", _matrix(rng, kv_width, shape.text_width, f16))
        w.add_tensor(p + "attn_v.weight", _matrix(rng, kv_width, shape.text_width, f16))
        w.add_tensor(p + "attn_output.weight", _matrix(rng, shape.text_width, shape.text_width, f16))
        w.add_tensor(p + "ffn_norm.weight", np.ones(shape.text_width, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", _matrix(rng, shape.text_ffn, shape.text_width, f16))
        w.add_tensor(p + "ffn_up.weight", _matrix(rng, shape.text_ffn, shape.text_width, f16))
        w.add_tensor(p + "ffn_down.weight", _matrix(rng, shape.text_width, shape.text_ffn, f16))
    _finish(w)


def write_mmproj(path: Path, shape: Shape, seed: int = 1, precision: str = "f32") -> None:
    """Writes the idefics3 projector: SigLIP-style ViT, pixel shuffle, one linear layer.

    precision sets the matrices' type (f32, f16 or q8_0); norms, biases and positions stay F32."""
    import gguf

    rng = np.random.default_rng(seed)
    f16 = precision != "f32"
    w = gguf.GGUFWriter(str(path), "clip")

    def add_matrix(name: str, out_dim: int, in_dim: int) -> None:
        m = _rand(rng, out_dim, in_dim)
        if precision == "q8_0" and in_dim % 32 == 0:  # Q8_0 blocks are 32 wide; others stay F16
            w.add_tensor(name, gguf.quants.quantize(m, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, m.astype(np.float16) if f16 else m)

    vw, ps = shape.vision_width, shape.patch_size
    n_patches = (shape.image_size // ps) ** 2
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "idefics3")
    w.add_uint32("clip.vision.image_size", shape.image_size)
    w.add_uint32("clip.vision.preproc_image_size", shape.preproc_image_size)
    w.add_uint32("clip.vision.patch_size", ps)
    w.add_uint32("clip.vision.embedding_length", vw)
    w.add_uint32("clip.vision.feed_forward_length", shape.vision_ffn)
    w.add_uint32("clip.vision.block_count", shape.vision_blocks)
    w.add_uint32("clip.vision.attention.head_count", shape.vision_heads)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", shape.text_width)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.projector.scale_factor", shape.scale_factor)

    patch = _rand(rng, vw, 3, ps, ps)
    w.add_tensor("v.patch_embd.weight", patch.astype(np.float16) if f16 else patch)
    w.add_tensor("v.patch_embd.bias", np.zeros(vw, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", _rand(rng, n_patches, vw))
    for i in range(shape.vision_blocks):
        p = f"v.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            add_matrix(p + name + ".weight", vw, vw)
            w.add_tensor(p + name + ".bias", np.zeros(vw, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(p + name + ".weight", np.ones(vw, dtype=np.float32))
            w.add_tensor(p + name + ".bias", np.zeros(vw, dtype=np.float32))
        add_matrix(p + "ffn_up.weight", shape.vision_ffn, vw)
        w.add_tensor(p + "ffn_up.bias", np.zeros(shape.vision_ffn, dtype=np.float32))
        add_matrix(p + "ffn_down.weight", vw, shape.vision_ffn)
        w.add_tensor(p + "ffn_down.bias", np.zeros(vw, dtype=np.float32))
    w.add_tensor("v.post_ln.weight", np.ones(vw, dtype=np.float32))
    w.add_tensor("v.post_ln.bias", np.zeros(vw, dtype=np.float32))
    add_matrix("mm.model.fc.weight", shape.text_width, vw * shape.scale_factor**2)
    _finish(w)


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize_q4_k_m(src: Path, dst: Path, threads: int = 0) -> None:
    """Quantizes a text model to Q4_K_M with llama.cpp itself, as the published SmolVLM files are."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed with code {rc}")


def _once(path: Path, write) -> Path:  # noqa: ANN001 - write(path) callable
    """Writes path via a temporary name unless it exists, so an interrupted write is never reused."""
    if not path.exists():
        tmp = path.with_name(path.name + ".partial")
        write(tmp)
        tmp.replace(path)
    return path


def write_pair(directory: Path, shape_name: str = "tiny", quantized: bool = False,
               mmproj_precision: str | None = None) -> tuple[Path, Path]:
    """Writes (text model, mmproj) into directory, reusing files already there; returns their paths.

    Real shapes are F16 like the published files (the text model then quantized to Q4_K_M when asked);
    tiny is F32 unless mmproj_precision says otherwise."""
    shape = SHAPES[shape_name]
    directory.mkdir(parents=True, exist_ok=True)
    big = shape_name != "tiny"
    precision = "f16" if big else "f32"
    mm_precision = mmproj_precision or precision
    mmproj = _once(directory / f"random-{shape_name}-mmproj-{mm_precision}-p{shape.preproc_image_size}.gguf",
                   lambda p: write_mmproj(p, shape, precision=mm_precision))
    plain = _once(directory / f"random-{shape_name}-text-{precision}-tok{TOKENIZER_VERSION}.gguf",
                  lambda p: write_text_model(p, shape, f16=big))
    if not quantized:
        return plain, mmproj
    quantized_name = f"random-{shape_name}-text-q4_k_m-tok{TOKENIZER_VERSION}.gguf"
    return _once(directory / quantized_name, lambda p: quantize_q4_k_m(plain, p)), mmproj
