"""Prompt presets, from the reference system's use cases, worded for short spoken guidance."""

from __future__ import annotations

from dataclasses import dataclass

SHORT = " Answer in one or two short sentences that can be read aloud."

PRESETS: dict[str, str] = {
    "describe": "Describe what is in view." + SHORT,
    "next_step": "The user is working on this task: {task}. Looking at the image, what should they do next?" + SHORT,
    "safety": "Point out any safety hazard in view, or say that none is visible." + SHORT,
    "progress": "The user is working on this task: {task}. What step of the task is shown, and how far along are they?"
    + SHORT,
}
DEFAULT_TASK = "the task in front of the camera"


@dataclass
class PromptSettings:
    """What one session asks the model: a preset (with the user's task) or a custom prompt."""

    preset: str = "describe"
    task: str = ""
    custom: str = ""

    def text(self) -> str:
        if self.preset == "custom":
            return self.custom.strip() + SHORT
        return PRESETS[self.preset].format(task=self.task.strip() or DEFAULT_TASK)


PRESET_NAMES = (*PRESETS, "custom")
