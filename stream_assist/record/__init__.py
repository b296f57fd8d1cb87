"""Recordings of sessions (what the model was shown, and what was said) and replaying them through the pipeline."""
