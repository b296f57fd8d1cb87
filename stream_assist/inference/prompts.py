"""Prompt presets, from the reference system's use cases, worded for short spoken guidance.

The fixed instructions go to the model once per model as a system turn (their KV cache is kept); what a
session asks about each frame is only the question, which follows the image. Context that stays the same from
frame to frame (a task's current step) joins the instructions, so it too is evaluated once, not every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

SHORT = "Answer in one or two short sentences that can be read aloud."
INSTRUCTIONS = ("You watch a live camera view for a person working with their hands and give them short "
                "spoken guidance about what the image shows. " + SHORT)

PRESETS: dict[str, str] = {
    "describe": "Describe what is in view.",
    "next_step": "The user is working on this task: {task}. Looking at the image, what should they do next?",
    "safety": "Point out any safety hazard in view, or say that none is visible.",
    "progress": "The user is working on this task: {task}. What step of the task is shown, and how far along are they?",
}
DEFAULT_TASK = "the task in front of the camera"


def instructions(context: str = "") -> str:
    """The system turn: the fixed instructions, then the frames' common context (kept in the KV cache with them)."""
    return f"{INSTRUCTIONS} {context}" if context else INSTRUCTIONS


@dataclass
class PromptSettings:
    """What one session asks the model: a preset (with the user's task) or a custom question."""

    preset: str = "describe"
    task: str = ""
    custom: str = ""

    def text(self) -> str:
        """The per-frame question; plain text that goes after the image."""
        if self.preset == "custom":
            return self.custom.strip()
        return PRESETS[self.preset].format(task=self.task.strip() or DEFAULT_TASK)


PRESET_NAMES = (*PRESETS, "custom")
