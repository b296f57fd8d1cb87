"""Prompt pieces to token ids: the template's text with its control tokens, people's text never as one.

llama.cpp's tokenizer, asked not to parse special tokens, still matches "user-defined" added tokens
(some vocabularies file `<row_1_col_1>` and the like so); people's text that yields any control or
user-defined token is therefore tokenized again one character at a time, where no such token fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .chat_layout import Piece

if TYPE_CHECKING:
    from llama_cpp import Llama


def is_plain(llm: Llama, token: int) -> bool:
    """False for control and user-defined tokens (`<|im_start|>`, `<image>`, ...)."""
    import llama_cpp

    attr = llama_cpp.llama_vocab_get_attr(llm._model.vocab, token)
    return not attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)


def plain_tokens(llm: Llama, text: str) -> list[int]:
    """Tokens of text a person wrote: none of them a control or user-defined token."""
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    if all(is_plain(llm, t) for t in tokens):
        return tokens
    tokens = [t for ch in text for t in llm.tokenize(ch.encode(), add_bos=False, special=False)]
    if not all(is_plain(llm, t) for t in tokens):
        raise ValueError("this text cannot be tokenized without control tokens")
    return tokens


def template_tokens(llm: Llama, text: str) -> list[int]:
    """Tokens of the chat template's own text, its control tokens parsed."""
    return llm.tokenize(text.encode(), add_bos=False, special=True)


def piece_tokens(llm: Llama, pieces: Iterable[Piece]) -> list[int]:
    return [t for p in pieces for t in (template_tokens(llm, p.text) if p.special else plain_tokens(llm, p.text))]


def with_bos(llm: Llama, tokens: list[int]) -> list[int]:
    """Adds the BOS token where the vocabulary asks for one and the template did not write it."""
    import llama_cpp

    bos = llm.token_bos()
    if llama_cpp.llama_vocab_get_add_bos(llm._model.vocab) and bos >= 0 and tokens[:1] != [bos]:
        return [bos, *tokens]
    return tokens
