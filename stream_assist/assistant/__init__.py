"""The task assistant: a task's steps kept outside the model, tracked from narrow per-frame questions,
a policy that decides when to speak apart from what to say, and a journal so progress is never lost."""
