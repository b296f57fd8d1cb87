"""A model's chat template rendered around one image, cut into the template's own text and people's text.

Only the template's own text may contain control tokens; the instructions and the per-frame question are
marked in the rendering by private-use sentinels and come back as plain pieces, tokenized without special
tokens, so a typed `<end_of_utterance>` stays text. The image goes first in the user turn (SmolVLM's chat
template special-cases it, llama.cpp's CLI puts the media marker first), and the instructions go in a
system turn, so everything up to the image is constant from frame to frame and its KV cache can be kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

INSTRUCTIONS_SLOT = "\ue000instructions\ue000"
QUESTION_SLOT = "\ue001question\ue001"
_PROBE = "\ue002probe\ue002"


@dataclass(frozen=True)
class Piece:
    """A stretch of prompt text; special: the template's own text, whose control tokens are parsed."""

    text: str
    special: bool


@dataclass(frozen=True)
class Layout:
    """The prompt around the image: `before` ends where the image goes, `after` runs to the answer."""

    before: tuple[Piece, ...]
    after: tuple[Piece, ...]


def formatter(template: str, bos_text: str, eos_text: str) -> Jinja2ChatFormatter:
    """llama-cpp-python's renderer: Transformers' Jinja set-up (loop controls, raise_exception, tojson)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=True)


def _render(fmt: Jinja2ChatFormatter, messages: list[dict]) -> str:
    return fmt(messages=messages).prompt


def _user(*content: dict) -> dict:
    return {"role": "user", "content": list(content)}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


IMAGE = {"type": "image"}


def image_text(fmt: Jinja2ChatFormatter) -> str:
    """What the template writes for an image item ("<image>" for SmolVLM, "" if it writes nothing).

    Found as the text a second image adds to the rendering, so no template's markup is hard-coded here."""
    one = _render(fmt, [_user(IMAGE, _text(_PROBE))])
    two = _render(fmt, [_user(IMAGE, IMAGE, _text(_PROBE))])
    start = 0
    while start < len(one) and one[start] == two[start]:
        start += 1
    added = two[start:start + len(two) - len(one)]
    # the added text is the markup only if one image's rendering ends with it (not cut from inside the markup)
    end = one.find(_PROBE)
    return added if one[:end].endswith(added) else ""


def render(fmt: Jinja2ChatFormatter, marker: str) -> str:
    """The chat prompt with slots for the instructions and the question and the media marker for the image
    (rendered once per model: only the slots change from frame to frame)."""
    drawn = image_text(fmt)
    image = IMAGE if drawn else _text(marker)  # a template that draws no image gets the marker as text
    system = {"role": "system", "content": [_text(INSTRUCTIONS_SLOT)]}
    try:
        rendered = _render(fmt, [system, _user(image, _text(QUESTION_SLOT))])
    except ValueError:  # raise_exception: this template has no system turn; the instructions open the user turn
        rendered = _render(fmt, [_user(_text(INSTRUCTIONS_SLOT), image, _text(QUESTION_SLOT))])
    if drawn:
        head, _, tail = rendered.rpartition(drawn)
        rendered = head + marker + tail
    if rendered.count(marker) != 1 or QUESTION_SLOT not in rendered.partition(marker)[2]:
        raise ValueError("the chat template does not draw one image before the question")
    return rendered


def _pieces(rendered: str, people: dict[str, str]) -> list[Piece]:
    """Cuts rendered text at the slots: template text (special) and the people's text (plain)."""
    pieces: list[Piece] = []
    rest = rendered
    while rest:
        found = [(rest.find(slot), slot) for slot in people if slot in rest]
        if not found:
            pieces.append(Piece(rest, True))
            break
        at, slot = min(found)
        template = rest[:at]
        spaces = len(template) - len(template.rstrip(" "))
        if template[:len(template) - spaces]:
            pieces.append(Piece(template[:len(template) - spaces], True))
        # a space before a word belongs to the word's token (" Describe"), as when the whole text is tokenized
        pieces.append(Piece(" " * spaces + people[slot], False))
        rest = rest[at + len(slot):]
    return pieces


def cut(rendered: str, marker: str, instructions: str, question: str) -> Layout:
    """One frame's prompt from render()'s text, cut at the image marker."""
    head, _, tail = rendered.partition(marker)
    people = {INSTRUCTIONS_SLOT: instructions, QUESTION_SLOT: question}
    return Layout(tuple(_pieces(head, people)), tuple(_pieces(tail, people)))
