"""Hearing the person: the microphone track → 16 kHz PCM → voice activity → a recogniser → commands.

Runs beside the video path, never in its executor: each session's audio work goes to one shared voice thread.
"""
