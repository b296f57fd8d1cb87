"""The vision-language model: SmolVLM (or another llama.cpp mtmd pair) loaded with llama-cpp-python.

A camera frame's cost on a CPU is the vision encoder, so each frame is evaluated by hand through
mtmd's chunk-level calls rather than the chat-completion helper:
- the frame goes in as raw RGB (`mtmd_bitmap_init`), with no JPEG encode, base64 and decode;
- by default only the overview image is encoded (`slicing = "overview"`): the single global image of
  Hugging Face's `do_image_splitting=False`, one encode instead of overview + tiles; mtmd's image-token
  limit keeps it from cutting (and then throwing away) tiles of the frame upscaled to 2048 px;
- the prompt is in the layout SmolVLM was trained on (chat_layout.py): fixed instructions as a system
  turn, the image first in the user turn, the per-frame question after it. Everything before the image
  is constant and its KV cache is kept from frame to frame; the image's closing tokens and the question
  are evaluated in one call;
- people's text (question, task) is never tokenized into control tokens (prompt_tokens.py);
- tokens stream to a callback as they are generated.
One instance is shared by every session and used from the inference worker's thread only.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import ModelConfig
from . import chat_layout, prompt_tokens
from .model_source import ModelFileError, ModelFiles
from .prompts import instructions
from .verdict import Choices, Verdict, first_tokens, from_logits

log = logging.getLogger(__name__)

# Idefics3 (SmolVLM) wraps the unsliced global image in these tokens (Hugging Face processor layout).
OVERVIEW_OPEN = "<fake_token_around_image><global-img>"
OVERVIEW_CLOSE = "<fake_token_around_image>"


@dataclass
class Generation:
    """One answer, when its parts happened (time.time() seconds) and what each phase cost."""

    text: str
    started_at: float
    first_token_at: float
    done_at: float
    prompt_tokens: int
    completion_tokens: int
    reused_tokens: int = 0  # prompt tokens whose KV cache was kept from the previous frame
    image_encodes: int = 0  # vision-encoder runs for this frame (1 with overview-only slicing)
    phases_ms: dict[str, float] = field(default_factory=dict)  # encode, image_prefill, text_prefill, ...
    engine: str = ""  # where it ran: "" for the embedded model, the endpoint URL for a remote one
    verdict: dict[str, float] = field(default_factory=dict)  # answer word → probability, when read in one step
    verdict_mass: float = 0.0  # the probability the answer words had together, before normalising


def cpu_advertises_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU lists AMX; ggml then repacks quantized weights for AMX tiles."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(flag in text.split() for flag in ("amx_int8", "amx_tile"))


def use_extra_buffers(setting: str) -> bool:
    """Resolves model.cpu_extra_buffers.

    ggml's CPU "extra buffer types" repack quantized weights, for AMX among others. Some virtual
    machines advertise AMX but fault on it (SIGILL on the first decode of a Q4_K_M model), so `auto`
    leaves the extra buffers off wherever AMX is advertised; the plain CPU path is as fast there.
    """
    if setting == "auto":
        return not cpu_advertises_amx()
    return setting == "on"


@contextlib.contextmanager
def _model_defaults(extra_buffers: bool) -> Iterator[None]:
    """llama-cpp-python's Llama does not expose use_extra_bufts, so set it on the defaults it reads."""
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def defaults():  # noqa: ANN202 - ctypes struct
        params = original()
        params.use_extra_bufts = extra_buffers
        return params

    native.llama_model_default_params = defaults
    try:
        yield
    finally:
        native.llama_model_default_params = original


def gpu_offload_available() -> bool:
    """True when this llama.cpp build can put layers on a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def overview_tokens(mmproj: Path) -> int | None:
    """Tokens of one image for an idefics3 (SmolVLM) projector, None for other projectors."""
    import gguf

    fields = gguf.GGUFReader(mmproj).fields

    def value(key: str):  # noqa: ANN202 - a GGUF scalar
        return fields[key].contents() if key in fields else None

    sizes = [value(f"clip.vision.{key}") for key in ("image_size", "patch_size", "projector.scale_factor")]
    if value("clip.projector_type") != "idefics3" or None in sizes:
        return None
    side = sizes[0] // sizes[1] // sizes[2]
    return side * side


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _Chunks:
    """mtmd input chunks for one frame, freed on exit."""

    def __init__(self, mtmd, ctx, bitmap, text: str) -> None:  # noqa: ANN001 - ctypes handles
        self._mtmd = mtmd
        self.handle = mtmd.mtmd_input_chunks_init()
        source = mtmd.mtmd_input_text()
        encoded = text.encode()
        source.text, source.text_len, source.add_special, source.parse_special = encoded, len(encoded), False, True
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        rc = mtmd.mtmd_tokenize(ctx, self.handle, ctypes.byref(source), bitmaps, 1)
        if rc != 0:
            mtmd.mtmd_input_chunks_free(self.handle)
            raise RuntimeError(f"mtmd_tokenize failed with code {rc}")

    def __enter__(self) -> list:
        m = self._mtmd
        return [m.mtmd_input_chunks_get(self.handle, i) for i in range(m.mtmd_input_chunks_size(self.handle))]

    def __exit__(self, *exc: object) -> None:
        self._mtmd.mtmd_input_chunks_free(self.handle)


class _EncodeWatch:
    """mtmd's eval callback, so the vision encoder can be stopped at the answer's deadline (an overlong or
    hung encode would otherwise hold every session's worker for as long as it takes).

    ggml asks, node by node, whether the callback wants a result; saying yes every OBSERVE_EVERY nodes
    splits the encoder graph into pieces (about 12 for SigLIP's ~400 nodes), and saying "stop" after a
    piece ends the compute there. Cost measured with `bench model`: within noise.
    """

    OBSERVE_EVERY = 32

    def __init__(self) -> None:
        import llama_cpp

        self.deadline = math.inf
        self.stopped = False
        self._asked = 0
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)  # kept alive by this object

    def arm(self, deadline: float) -> None:
        self.deadline, self.stopped = deadline, False

    def _on_node(self, tensor, ask: bool, user_data) -> bool:  # noqa: ANN001 - ctypes pointers
        if ask:
            self._asked += 1
            return self._asked % self.OBSERVE_EVERY == 0
        if time.monotonic() < self.deadline:
            return True
        self.stopped = True
        return False


class VisionModel:
    """Owns the llama.cpp text model, its projector, and the KV cache of the fixed prompt."""

    parallel = 1  # one frame at a time: the worker runs one thread for it

    def __init__(self, files: ModelFiles, config: ModelConfig) -> None:
        import llama_cpp.mtmd_cpp as mtmd
        from llama_cpp import Llama

        self.files = files
        self.config = config
        self._busy = threading.Lock()  # describe is for one thread at a time
        self.extra_buffers = use_extra_buffers(config.cpu_extra_buffers)
        self.threads = config.n_threads or os.cpu_count() or 1
        started = time.perf_counter()
        try:
            with _model_defaults(self.extra_buffers):
                self._llm = Llama(model_path=str(files.text), n_ctx=config.n_ctx, n_gpu_layers=config.n_gpu_layers,
                                  n_threads=self.threads, n_threads_batch=self.threads, verbose=False)
        except ValueError as e:
            raise ModelFileError(f"cannot load model {files.text}: {e}") from None
        self._mtmd = mtmd
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = config.n_gpu_layers != 0
        params.print_timings = False
        params.n_threads = self.threads
        self.image_tokens_limit = overview_tokens(files.mmproj) if config.slicing == "overview" else None
        if self.image_tokens_limit:  # one tile's worth: mtmd resizes to one tile instead of 2048 px and 12 tiles
            params.image_max_tokens = self.image_tokens_limit
        self._watch = _EncodeWatch()
        params.cb_eval = self._watch.callback
        self._ctx = mtmd.mtmd_init_from_file(str(files.mmproj).encode(), self._llm.model, params)
        if not self._ctx:
            self._llm.close()
            raise ModelFileError(f"cannot load projector {files.mmproj} for {files.text.name}")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelFileError(f"projector {files.mmproj} has no vision encoder")
        self.marker = mtmd.mtmd_default_marker().decode()
        try:
            self.chat_formatter = self._chat_formatter()
            self.chat = self._render_chat()
        except ModelFileError:
            self.close()
            raise
        self._overview_open = self._special_tokens(OVERVIEW_OPEN)
        self._overview_close = self._special_tokens(OVERVIEW_CLOSE)
        self._cached: list[int] = []  # tokens whose KV cache is valid at positions 0..len-1
        self._word_tokens: dict[tuple[str, ...], dict[int, str]] = {}  # answer words → their first tokens
        self.load_seconds = time.perf_counter() - started
        log.info("model loaded in %.2f s from %s (%s); cpu extra buffers %s, %d threads, image slicing %s",
                 self.load_seconds, files.text, files.source, "on" if self.extra_buffers else "off", self.threads,
                 config.slicing)

    # --- prompt ---------------------------------------------------------------------------------

    def _chat_formatter(self):  # noqa: ANN202 - llama_cpp's Jinja2ChatFormatter
        """The model's chat template with its vocabulary's BOS and EOS text."""
        source = self._llm.metadata.get("tokenizer.chat_template")
        if not source:
            raise ModelFileError(f"model {self.files.text.name} has no tokenizer.chat_template")
        model = self._llm._model
        bos, eos = self._llm.token_bos(), self._llm.token_eos()
        return chat_layout.formatter(source, model.token_get_text(bos) if bos >= 0 else "",
                                     model.token_get_text(eos) if eos >= 0 else "")

    def _render_chat(self) -> str:
        """The chat prompt rendered once with slots for the instructions and the question (`chat`; a
        benchmark may set another layout's rendering)."""
        try:
            return chat_layout.render(self.chat_formatter, self.marker)
        except Exception as e:  # a template error of any kind is the model file's problem
            raise ModelFileError(f"chat template of {self.files.text.name} cannot be used: {e}") from None

    def tokenize(self, text: str) -> list[int]:
        """Tokens of template text, special tokens included (no BOS: the chat template writes it)."""
        return prompt_tokens.template_tokens(self._llm, text)

    def _special_tokens(self, text: str) -> list[int] | None:
        """Tokens of text if each special piece is one token in this vocabulary, else None."""
        tokens = self.tokenize(text)
        return tokens if len(tokens) == text.count("<") else None

    def tokens_around_image(self, question: str, context: str = "") -> tuple[list[int], list[int]]:
        """Token ids of the prompt before the image (the instructions and context: cached while they stay the
        same) and after it (with the question)."""
        parts = chat_layout.cut(self.chat, self.marker, instructions(context), question)
        return (prompt_tokens.with_bos(self._llm, prompt_tokens.piece_tokens(self._llm, parts.before)),
                prompt_tokens.piece_tokens(self._llm, parts.after))

    def forget_prompt_cache(self) -> None:
        """Makes the next frame evaluate its whole prompt again (for measuring what the cache saves)."""
        self._cached = []

    # --- one frame ------------------------------------------------------------------------------

    def _bitmap(self, rgb: np.ndarray, via_jpeg: bool):  # noqa: ANN202 - ctypes handle
        m = self._mtmd
        if via_jpeg:  # the chat-completion path's way, kept for the benchmark's comparison
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise ValueError("JPEG encoding failed")
            data = buf.tobytes()
            return m.mtmd_helper_bitmap_init_from_buf(self._ctx, (ctypes.c_uint8 * len(data)).from_buffer_copy(data),
                                                      len(data), False)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame, got {rgb.dtype} {rgb.shape}")
        pixels = np.require(rgb, requirements=("C", "W"))
        height, width = pixels.shape[:2]
        return m.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * pixels.nbytes).from_buffer(pixels))

    def _image_segments(self, chunks: list) -> list:
        """What to evaluate for the image: every chunk (full slicing) or only the overview, wrapped as
        Hugging Face does without image splitting. Items are token lists or image chunks."""
        m = self._mtmd
        segments: list = []
        for chunk in chunks:
            if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                segments.append([ptr[i] for i in range(n.value)])
            else:
                segments.append(chunk)
        images = [s for s in segments if not isinstance(s, list)]
        if self.config.slicing == "overview" and len(images) > 1 and self._overview_open and self._overview_close:
            return [list(self._overview_open), images[-1], list(self._overview_close)]  # overview comes last
        return segments

    def preprocessed_images(self, rgb: np.ndarray) -> list[int]:
        """Token counts of the images mtmd makes of a frame (tiles and overview), each one resized and
        normalised whether it is encoded or not."""
        m = self._mtmd
        bitmap = self._bitmap(rgb, via_jpeg=False)
        try:
            with _Chunks(m, self._ctx, bitmap, self.marker) as chunks:
                return [m.mtmd_input_chunk_get_n_tokens(c) for c in chunks
                        if m.mtmd_input_chunk_get_type(c) != m.MTMD_INPUT_CHUNK_TYPE_TEXT]
        finally:
            m.mtmd_bitmap_free(bitmap)

    def encode_overview(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The projector's output for the frame's overview image and the encode time in ms (benchmarks)."""
        import llama_cpp

        m = self._mtmd
        bitmap = self._bitmap(rgb, via_jpeg=False)
        try:
            with _Chunks(m, self._ctx, bitmap, self.marker) as chunks:
                images = [c for c in chunks if m.mtmd_input_chunk_get_type(c) != m.MTMD_INPUT_CHUNK_TYPE_TEXT]
                t0 = time.perf_counter()
                if m.mtmd_encode_chunk(self._ctx, images[-1]) != 0:
                    raise RuntimeError("image encode failed")
                ms = (time.perf_counter() - t0) * 1000
                n = m.mtmd_input_chunk_get_n_tokens(images[-1]) * llama_cpp.llama_model_n_embd(self._llm.model)
                return np.ctypeslib.as_array(m.mtmd_get_output_embd(self._ctx), shape=(n,)).copy(), ms
        finally:
            m.mtmd_bitmap_free(bitmap)

    def _eval_image(self, chunk, phases: dict[str, float]) -> None:  # noqa: ANN001 - ctypes handle
        m, llm = self._mtmd, self._llm
        t0 = time.perf_counter()
        if m.mtmd_encode_chunk(self._ctx, chunk) != 0:
            raise RuntimeError("image encode failed")
        if self._watch.stopped:
            raise TimeoutError(f"no complete answer within {self.config.timeout_s:g} s (image encode stopped)")
        t1 = time.perf_counter()
        new_n_past = ctypes.c_int32(0)
        rc = m.mtmd_helper_decode_image_chunk(self._ctx, llm._ctx.ctx, chunk, m.mtmd_get_output_embd(self._ctx),
                                              llm.n_tokens, 0, llm.n_batch, ctypes.byref(new_n_past),
                                              ctypes.cast(None, m.mtmd_helper_post_decode_callback), None)
        if rc != 0:
            raise RuntimeError(f"image decode failed with code {rc}")
        llm.n_tokens = new_n_past.value
        t2 = time.perf_counter()
        phases["encode"] = phases.get("encode", 0.0) + (t1 - t0) * 1000
        phases["encodes"] = phases.get("encodes", 0) + 1
        phases["image_prefill"] = phases.get("image_prefill", 0.0) + (t2 - t1) * 1000

    def _eval_text(self, tokens: list[int], phases: dict[str, float]) -> None:
        if not tokens:
            return
        t0 = time.perf_counter()
        self._llm.eval(tokens)
        phases["text_prefill"] = phases.get("text_prefill", 0.0) + (time.perf_counter() - t0) * 1000

    def _prefill(self, rgb: np.ndarray, prompt: str, context: str, via_jpeg: bool, phases: dict[str, float]) -> int:
        """Evaluates prompt and image, keeping the KV cache of the unchanged leading tokens; returns them."""
        llm = self._llm
        before, after = self.tokens_around_image(prompt, context)
        t0 = time.perf_counter()
        bitmap = self._bitmap(rgb, via_jpeg)
        if not bitmap:
            raise ValueError("could not make an image bitmap from the frame")
        try:
            with _Chunks(self._mtmd, self._ctx, bitmap, self.marker) as chunks:
                segments = self._image_segments(chunks)
                phases["image_tokenize"] = (time.perf_counter() - t0) * 1000
                lead = list(before)
                while segments and isinstance(segments[0], list):  # the image's opening tokens: constant
                    lead += segments.pop(0)
                closing: list[int] = []
                while segments and isinstance(segments[-1], list):  # evaluated with the question in one call
                    closing = segments.pop() + closing
                reused = common_prefix(lead, self._cached)
                llm._ctx.kv_cache_seq_rm(-1, reused, -1)
                llm.n_tokens = reused
                self._cached = []  # until the prefix is evaluated again
                self._eval_text(lead[reused:], phases)
                self._cached = lead
                for segment in segments:
                    if isinstance(segment, list):
                        self._eval_text(segment, phases)
                    else:
                        self._eval_image(segment, phases)
        finally:
            self._mtmd.mtmd_bitmap_free(bitmap)
        total = llm.n_tokens + len(closing) + len(after)
        if total >= llm.n_ctx():  # llama.cpp would only say "decode returned 1"
            raise ValueError(f"the prompt with its image is {total} tokens, more than model.n_ctx = {llm.n_ctx()} "
                             "holds with room to answer; shorten the question or raise n_ctx")
        self._eval_text(closing + after, phases)
        return reused

    def lease(self, stopping: object = None) -> contextlib.AbstractContextManager[Callable[..., Generation]]:
        """The model is always ready for the worker's one thread: the describe function itself."""
        return contextlib.nullcontext(self.describe)

    def describe(self, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None = None,
                 via_jpeg: bool = False, choices: Choices | None = None, context: str = "") -> Generation:
        """Answers prompt about an RGB frame, streaming text pieces to on_text as they are generated; with choices,
        the verdict is read from the first token's distribution (verdict.py); context goes before the image, with
        the instructions. One caller at a time: one llama.cpp context used from two threads at once crashes the
        process."""
        with self._busy:
            return self._describe(rgb, prompt, on_text, via_jpeg, choices, context)

    def word_tokens(self, words: tuple[str, ...]) -> dict[int, str]:
        """The first tokens each answer word can begin with in this vocabulary (computed once per word list)."""
        if words not in self._word_tokens:
            self._word_tokens[words] = first_tokens(
                words, lambda text: prompt_tokens.plain_tokens(self._llm, text),
                lambda token: self._llm.detokenize([token]).decode(errors="replace"))
        return self._word_tokens[words]

    def _read_verdict(self, choices: Choices) -> tuple[Verdict | None, int]:
        """The verdict in the logits after the prompt, and the most likely first token of its word."""
        import llama_cpp

        tokens = self.word_tokens(choices.names)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1),
                                       shape=(self._llm.n_vocab(),))
        verdict = from_logits(logits, tokens, choices)
        if verdict is None:
            return None, -1
        word = verdict.word
        return verdict, max((t for t, w in tokens.items() if w == word), key=lambda t: logits[t])

    def _describe(self, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None,
                  via_jpeg: bool, choices: Choices | None, context: str) -> Generation:
        llm = self._llm
        started = time.time()
        deadline = time.monotonic() + self.config.timeout_s
        self._watch.arm(deadline)
        phases: dict[str, float] = {}
        try:
            reused = self._prefill(rgb, prompt, context, via_jpeg, phases)
        except Exception:
            self._cached = []
            raise
        finally:
            self._watch.arm(math.inf)
        prompt_tokens = llm.n_tokens
        out = _Writer(llm, on_text, deadline, self.config.timeout_s)
        verdict, token = self._read_verdict(choices) if choices is not None else (None, -1)
        if verdict is not None:  # the verdict word is the answer; only some words are followed by more
            out.emit(token)
            if limit := choices.follow(verdict.word):
                llm.eval([token])
                out.generate(limit, self.config.temperature)
        else:
            out.generate(self.config.max_tokens, self.config.temperature)
        done = time.time()
        phases.update(out.phases)
        return Generation(text="".join(out.pieces).strip(), started_at=started,
                          first_token_at=out.first_at or done, done_at=done, prompt_tokens=prompt_tokens,
                          completion_tokens=out.generated, reused_tokens=reused,
                          image_encodes=int(phases.pop("encodes", 0)),
                          phases_ms={k: round(v, 3) for k, v in phases.items()},
                          verdict=verdict.probs if verdict else {}, verdict_mass=verdict.mass if verdict else 0.0)

    def close(self) -> None:
        """Frees the projector and the model (llama.cpp memory is not reclaimed by the GC in time)."""
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None
        self._llm.close()


class _Writer:
    """The answer being written after the prompt: tokens sampled (or given), decoded to text, streamed, timed."""

    def __init__(self, llm, on_text: Callable[[str], None] | None, deadline: float,  # noqa: ANN001 - Llama
                 timeout_s: float) -> None:
        self.llm, self.on_text, self.deadline, self.timeout_s = llm, on_text, deadline, timeout_s
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pieces: list[str] = []
        self.phases: dict[str, float] = {}
        self.generated = 0
        self.first_at = 0.0
        self.t0 = time.perf_counter()

    def emit(self, token: int) -> None:
        """One token of the answer: counted, timed, decoded and streamed."""
        self.generated += 1
        piece = self.decoder.decode(self.llm.detokenize([token]))
        if not self.first_at:
            self.first_at = time.time()
            self.phases["first_token"] = (time.perf_counter() - self.t0) * 1000
        if piece:
            self.pieces.append(piece)
            if self.on_text is not None:
                self.on_text(piece)

    def generate(self, limit: int, temperature: float) -> None:
        """Samples and evaluates up to limit tokens, stopping at end of generation or the context's end."""
        import llama_cpp

        llm = self.llm
        vocab = llm._model.vocab
        for _ in range(limit):
            if llm.n_tokens >= llm.n_ctx():
                break
            if time.monotonic() > self.deadline:  # a runaway answer must not hold every session's worker
                raise TimeoutError(f"no complete answer within {self.timeout_s:g} s")
            token = llm.sample(temp=temperature, top_k=40, top_p=0.95, min_p=0.05)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            self.emit(token)
            llm.eval([token])
        if self.generated > 1:
            self.phases["per_token"] = ((time.perf_counter() - self.t0) * 1000 - self.phases["first_token"]) / (
                self.generated - 1)
