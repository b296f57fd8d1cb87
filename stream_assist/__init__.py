"""stream-assist: live camera guidance from a local vision-language model."""

__version__ = "0.1.0"
