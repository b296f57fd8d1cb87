"""Writes a random-weight whisper.cpp model (legacy ggml layout) so the whisper path is tested without a download.

Width 64, one encoder and one decoder layer, the full English vocabulary size: it loads through pywhispercpp like
ggml-base.en.bin does (tens of ms) and transcribes any speech into noise. Layout as whisper.cpp's
whisper_model_load reads it and models/convert-pt-to-ggml.py writes it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = 0x67676D6C  # "ggml"
N_VOCAB = 51864  # English-only models (.en); whisper.cpp adds the special tokens past the written ones
N_WRITTEN_TOKENS = 50256  # the GPT-2 byte-level tokens a converted .en model lists; 50256 on are specials
N_AUDIO_CTX, N_TEXT_CTX, N_MELS, N_FFT = 1500, 448, 80, 201  # fixed by whisper's 30 s window and its mel front-end
F32, F16 = 0, 1
PRINTABLE = [chr(c) for c in range(32, 127)] + [" -", " '"]


def _tensors(width: int, layers: int) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, numpy shape, file type) of every tensor whisper.cpp expects; matrices and convolutions in f16."""
    w, ffn = width, 4 * width

    def block(prefix: str, cross: bool) -> list[tuple[str, tuple[int, ...], int]]:
        parts = ["attn", "cross_attn"] if cross else ["attn"]
        out: list[tuple[str, tuple[int, ...], int]] = []
        for part in parts:
            out += [(f"{prefix}.{part}_ln.weight", (w,), F32), (f"{prefix}.{part}_ln.bias", (w,), F32),
                    (f"{prefix}.{part}.query.weight", (w, w), F16), (f"{prefix}.{part}.query.bias", (w,), F32),
                    (f"{prefix}.{part}.key.weight", (w, w), F16),
                    (f"{prefix}.{part}.value.weight", (w, w), F16), (f"{prefix}.{part}.value.bias", (w,), F32),
                    (f"{prefix}.{part}.out.weight", (w, w), F16), (f"{prefix}.{part}.out.bias", (w,), F32)]
        return out + [(f"{prefix}.mlp_ln.weight", (w,), F32), (f"{prefix}.mlp_ln.bias", (w,), F32),
                      (f"{prefix}.mlp.0.weight", (ffn, w), F16), (f"{prefix}.mlp.0.bias", (ffn,), F32),
                      (f"{prefix}.mlp.2.weight", (w, ffn), F16), (f"{prefix}.mlp.2.bias", (w,), F32)]

    tensors = [("encoder.positional_embedding", (N_AUDIO_CTX, w), F32),
               ("encoder.conv1.weight", (w, N_MELS, 3), F16), ("encoder.conv1.bias", (w, 1), F32),
               ("encoder.conv2.weight", (w, w, 3), F16), ("encoder.conv2.bias", (w, 1), F32),
               ("encoder.ln_post.weight", (w,), F32), ("encoder.ln_post.bias", (w,), F32)]
    for i in range(layers):
        tensors += block(f"encoder.blocks.{i}", cross=False)
    tensors += [("decoder.positional_embedding", (N_TEXT_CTX, w), F32),
                ("decoder.token_embedding.weight", (N_VOCAB, w), F16),
                ("decoder.ln.weight", (w,), F32), ("decoder.ln.bias", (w,), F32)]
    for i in range(layers):
        tensors += block(f"decoder.blocks.{i}", cross=True)
    return tensors


def _token(i: int) -> bytes:
    """Printable ASCII first (whisper.cpp looks up " ", " -" and " '"), then unique made-up word pieces."""
    if i < len(PRINTABLE):
        return PRINTABLE[i].encode()
    n, piece = i // 2, ""
    while True:
        n, r = divmod(n, 26)
        piece += "etaoinshrdlucmfwypvbgkqjxz"[r]
        if n == 0:
            break
    return ((" " if i % 2 else "") + piece).encode()


def _write_tensor(f: BinaryIO, name: str, shape: tuple[int, ...], ftype: int, rng: np.random.Generator) -> None:
    data = rng.normal(0.0, 0.02, size=shape).astype(np.float16 if ftype == F16 else np.float32)
    if name.endswith("ln.weight") or name.endswith("ln_post.weight"):
        data[...] = 1.0  # layer-norm gains near one keep the random activations in range
    encoded = name.encode()
    f.write(struct.pack("iii", len(shape), len(encoded), ftype))
    f.write(struct.pack(f"{len(shape)}i", *reversed(shape)))  # ggml order: the fastest-varying dimension first
    f.write(encoded)
    f.write(data.tobytes())


def write_random_whisper(path: Path, width: int = 64, heads: int = 1, layers: int = 1, seed: int = 0) -> Path:
    """Writes the model to path (if not already there) and returns path."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        f.write(struct.pack("I", MAGIC))
        f.write(struct.pack("11i", N_VOCAB, N_AUDIO_CTX, width, heads, layers, N_TEXT_CTX, width, heads, layers,
                            N_MELS, F16))
        f.write(struct.pack("ii", N_MELS, N_FFT))
        f.write(rng.uniform(0.0, 0.02, size=(N_MELS, N_FFT)).astype(np.float32).tobytes())
        f.write(struct.pack("i", N_WRITTEN_TOKENS))
        for i in range(N_WRITTEN_TOKENS):
            token = _token(i)
            f.write(struct.pack("I", len(token)) + token)
        for name, shape, ftype in _tensors(width, layers):
            _write_tensor(f, name, shape, ftype, rng)
    partial.rename(path)  # a run killed mid-write leaves no half model under the real name
    return path
