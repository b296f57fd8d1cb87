"""Inference: the drop-stale frame slot, the worker that serves every session's slot, the embedded SmolVLM and
remote OpenAI-compatible endpoints, where model files come from, and the prompts. Hands each answer (text and
phase timings) back to its session."""
