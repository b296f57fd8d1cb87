"""Settings for every stage, as plain dataclasses, loaded from TOML with strict checking.

The dataclass defaults are the source of truth; `configs/default.toml` mirrors them (a test keeps the
two equal). A broken value is a `ConfigError` naming the key, never a traceback deep in a stage.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 8
    max_body_bytes: int = 65536
    token: str = ""  # access token; empty: none on a loopback address, a new one at each start otherwise
    ice_urls: str = ""  # comma-separated STUN/TURN URLs for users beyond one network (e.g. a coturn server)
    ice_username: str = ""  # TURN username, if the TURN server wants one
    ice_credential: str = ""  # TURN password
    peer_timeout_s: float = 15.0  # a session whose browser sends no video for this long is closed (it vanished)
    resume_s: float = 120.0  # a closed session's state waits this long for its page to reconnect, then is freed


@dataclass
class ModelConfig:
    backend: str = "embedded"  # embedded: llama-cpp-python in this process | openai: the [openai] endpoints
    variant: str = "500m"  # a key of model_source.VARIANTS, used when no local paths are given
    model_path: str = ""  # local text-model GGUF; overrides `variant`
    mmproj_path: str = ""  # local projector GGUF; required with model_path
    n_ctx: int = 2048
    n_gpu_layers: int = -1  # -1: every layer on the GPU when llama.cpp was built with one
    n_threads: int = 0  # 0: all cores
    max_tokens: int = 48
    temperature: float = 0.0
    cpu_extra_buffers: str = "auto"  # auto | on | off: weight repacking; auto turns it off where AMX is advertised
    timeout_s: float = 60.0  # an answer not done by then is abandoned (checked in the image encode and per token)
    slicing: str = "overview"  # overview: one image encode per frame | full: overview + tiles (more detail, slower)
    process: str = "child"  # child: the embedded model in its own process (full speed, crash-proof) | inline: this one
    max_restart_backoff_s: float = 30.0  # a crashed model process is restarted after 0.5 s, doubling up to this


@dataclass
class OpenAIConfig:
    """OpenAI-compatible chat-completions endpoints, used when model.backend = "openai"."""

    endpoints: str = ""  # comma-separated base URLs, e.g. "http://gpu1:8080/v1,http://gpu2:8080/v1"
    model: str = ""  # model name sent with each request; empty: the first one an endpoint lists
    api_key: str = ""  # sent as a bearer token; empty: none
    parallel: int = 1  # requests one endpoint serves at once (its server's parallel slots)
    timeout_s: float = 30.0  # a request with no complete answer after this long fails (and is retried elsewhere)
    connect_timeout_s: float = 3.0
    health_interval_s: float = 5.0  # a healthy endpoint is checked this often
    max_backoff_s: float = 30.0  # a failing endpoint is checked after 0.5 s, then twice as long each time, up to this
    jpeg_quality: int = 90  # frames travel as JPEG data URLs


@dataclass
class PipelineConfig:
    sample_fps: float = 15.0  # the most frames per second a session hands to enhancement
    max_edge: int = 0  # longest edge of the frame the model sees; 0: auto (1024 with a GPU, 512 without)
    change_threshold: float = 3.0  # mean grey-level change that makes a frame news; 0 sends every frame
    max_reguide_s: float = 10.0  # an unchanged scene is still re-checked this often
    queue: str = "slot"  # slot: newest frame only | fifo: every frame in order (a baseline for benchmarks)


@dataclass
class EnhancementConfig:
    """The reference system's enhancement settings, flattened (docs/enhancement.md has every formula)."""

    advanced_color: bool = True  # CIELAB boost (with lab_enhancement)
    lab_enhancement: bool = True
    l_channel_boost: float = 1.2  # L* scale (result clipped to 100)
    ab_channel_boost: float = 1.2  # a*, b* scale
    adaptive_enhancement: bool = True  # per-frame tone curve from luma statistics
    auto_contrast: bool = True  # stretch the 0.5th..99.5th luma percentiles to 0..255
    dark_boost: float = 1.4  # mean luma < 85: gamma 1/dark_boost
    light_boost: float = 1.2  # mean luma > 170: gamma light_boost
    hdr_simulation: bool = True  # fuse under-, normally and over-exposed versions
    hdr_strength: float = 0.5  # 0: off, 1: fused only
    under_exposure: float = 0.7
    over_exposure: float = 1.3
    threads: int = 0  # Numba threads for enhancement; 0: Numba's default (all cores)


@dataclass
class ChannelConfig:
    max_message_bytes: int = 4096
    max_prompt_chars: int = 500
    max_messages_per_s: float = 20.0  # sustained rate of browser messages; bursts up to twice it


@dataclass
class AssistantConfig:
    """The task assistant (stream_assist/assistant/): cards, step tracking, when to speak, the journal."""

    cards_dir: str = ""  # your own task cards (*.toml); empty: $XDG_CONFIG_HOME/stream-assist/tasks
    data_dir: str = ""  # task journals; empty: $XDG_DATA_HOME/stream-assist (~/.local/share/stream-assist)
    max_steps: int = 50  # a task with more steps is refused
    max_step_chars: int = 300  # a longer step (or title, done_when, caution) is refused
    advance_rule: str = "evidence"  # evidence: answers weighed and added up (evidence.py); streak: done_frames in a row
    done_frames: int = 2  # the streak rule: the model must report a step done on this many answers in a row
    describer_error: float = 0.03  # how often a verdict the model is sure of is wrong: the most one answer is worth
    advance_odds: float = 12.0  # a step advances once the answers favour done by these odds (bounds false advances)
    independent_s: float = 1.0  # answers closer together than this count as partly the same look (evidence scaled)
    one_step_verdict: bool = True  # read a task frame's verdict from the first token's probabilities, not an answer
    verdict_min_mass: float = 0.5  # the answer words must get this much probability together, or the answer is written
    min_gap_s: float = 4.0  # least time between two utterances the person did not ask for
    stall_nudge_s: float = 90.0  # a step unchanged and nothing said this long: one spoken nudge
    journal_max_age_days: float = 30.0  # older journals are removed
    journal_max_sessions: int = 200  # only the newest this many journals are kept


@dataclass
class VoiceConfig:
    """Hearing the person over the page's microphone track (stream_assist/voice/)."""

    enabled: bool = True  # listen to the microphone track; off: the track is drained and ignored
    # auto: faster-whisper tiny.en when it and the model are on this machine (the [speech] extra), else pocketsphinx;
    # or pocketsphinx, faster-whisper:<tiny.en | base.en | small.en | CTranslate2 folder>, whisper:<ggml name | path>
    asr: str = "auto"
    vad_aggressiveness: int = 3  # webrtcvad 0 (keeps most as speech) .. 3 (strictest)
    end_silence_ms: int = 120  # an utterance ends after this much silence (a fricative is not silence: vad.py)
    max_utterance_s: float = 6.0  # longer sound is cut and dropped (a monologue, endless noise)
    max_command_s: float = 1.6  # speech longer than this is not a command (except "my task is ...")
    min_coverage: float = 0.5  # recognised words must span this share of the speech, or it is not a command
    max_s_per_phone: float = 0.12  # nor is speech longer than 0.4 s + this per phone of the command heard
    barge_in_ms: int = 150  # while the page speaks, this much of the person's speech stops it
    echo_window_s: float = 3.0  # commands matching what the page said this recently are its own voice


@dataclass
class SourceConfig:
    """A camera source beside the browser (stream_assist/source/): guided from server start, watched from any page."""

    url: str = ""  # rtsp://, rtsps://, http(s):// (MJPEG, HLS .m3u8), /dev/videoN or a video file; empty: browsers only
    loop: bool = False  # a file source starts again when it ends
    max_backoff_s: float = 1.0  # a dropped source is reopened after 0.25 s, then twice as long each time, up to this


@dataclass
class RecordConfig:
    """Recordings of what the model was shown, and what was said (stream_assist/record/)."""

    dir: str = ""  # where each session's recording goes; empty: nothing is recorded
    max_mb: float = 500.0  # a recording stops growing at this size (the file stays playable)
    crf: int = 26  # H.264 quality of the recorded frames (lower: better and bigger)


@dataclass
class SpeechConfig:
    """The server's voice (stream_assist/speech_out/): guidance spoken on the session's WebRTC audio track."""

    tts: str = "auto"  # auto: the packaged Piper voice with the [speech] extra, else the page's speechSynthesis |
    # browser: the page speaks | piper:<hub voice name like en_US-lessac-medium | path/to/voice.onnx | joe>
    length_scale: float = 1.0  # Piper's pace: above 1 slower, below 1 faster
    max_chars: int = 600  # a longer guidance is cut (at a word) when spoken; the page still shows all of it
    echo_canceller: bool = True  # take the voice's own echo out of the microphone (WebRTC AEC3, pywebrtc-audio)
    echo_tail_s: float = 0.6  # after the last sample sent, its echo may still reach the microphone this long


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    enhancement: EnhancementConfig = field(default_factory=EnhancementConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    assistant: AssistantConfig = field(default_factory=AssistantConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)


def _coerce(section: str, key: str, value: Any, kind: type) -> Any:
    """Checks one value against its declared type; ints are accepted where floats are declared."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"config: {section}.{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"config: {section}.{key} must be {kind.__name__}, got {value!r}")
    return value


def _build_section(section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config: [{section}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"config: unknown key {section}.{unknown[0]} (known: {', '.join(sorted(known))})")
    return cls(**{k: _coerce(section, k, v, hints[k]) for k, v in values.items()})


def config_from_dict(data: dict[str, Any]) -> Config:
    """Builds a checked Config from nested dicts; missing keys keep their defaults."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"config: unknown section [{unknown[0]}] (known: {', '.join(sorted(sections))})")
    hints = typing.get_type_hints(Config)
    built = {name: _build_section(name, hints[name], values) for name, values in data.items()}
    return validate(Config(**built))


def validate(config: Config) -> Config:
    """Checks ranges that types alone cannot; returns the config unchanged."""
    checks = [
        (0 <= config.server.port < 65536, "server.port must be 0..65535 (0: any free port)"),
        (config.server.max_sessions >= 1, "server.max_sessions must be at least 1"),
        (config.server.max_body_bytes >= 1024, "server.max_body_bytes must be at least 1024"),
        (all(u.strip().split(":", 1)[0] in ("stun", "stuns", "turn", "turns")
             for u in config.server.ice_urls.split(",") if u.strip()),
         "server.ice_urls must be comma-separated stun:, stuns:, turn: or turns: URLs"),
        (config.server.peer_timeout_s > 0, "server.peer_timeout_s must be positive"),
        (config.server.resume_s > 0, "server.resume_s must be positive"),
        (config.model.backend in ("embedded", "openai"), "model.backend must be embedded or openai"),
        (config.model.backend != "openai" or bool(endpoint_urls(config.openai)),
         "model.backend = openai needs openai.endpoints"),
        (all(u.startswith(("http://", "https://")) for u in endpoint_urls(config.openai)),
         "openai.endpoints must be comma-separated http:// or https:// URLs"),
        (config.openai.parallel >= 1, "openai.parallel must be at least 1"),
        (config.openai.timeout_s > 0, "openai.timeout_s must be positive"),
        (config.openai.connect_timeout_s > 0, "openai.connect_timeout_s must be positive"),
        (config.openai.health_interval_s > 0, "openai.health_interval_s must be positive"),
        (config.openai.max_backoff_s >= 0.5, "openai.max_backoff_s must be at least 0.5"),
        (1 <= config.openai.jpeg_quality <= 100, "openai.jpeg_quality must be 1..100"),
        (config.model.n_ctx >= 256, "model.n_ctx must be at least 256"),
        (config.model.n_threads >= 0, "model.n_threads must be 0 (all cores) or more"),
        (config.model.max_tokens >= 1, "model.max_tokens must be at least 1"),
        (config.model.temperature >= 0, "model.temperature must not be negative"),
        (config.model.cpu_extra_buffers in ("auto", "on", "off"), "model.cpu_extra_buffers must be auto, on or off"),
        (config.model.slicing in ("overview", "full"), "model.slicing must be overview or full"),
        (config.model.timeout_s > 0, "model.timeout_s must be positive"),
        (config.model.process in ("child", "inline"), "model.process must be child or inline"),
        (config.model.max_restart_backoff_s >= 0.5, "model.max_restart_backoff_s must be at least 0.5"),
        (bool(config.model.model_path) == bool(config.model.mmproj_path),
         "model.model_path and model.mmproj_path go together"),
        (0 < config.pipeline.sample_fps <= 120, "pipeline.sample_fps must be in (0, 120]"),
        (config.pipeline.max_edge == 0 or config.pipeline.max_edge >= 32, "pipeline.max_edge must be 0 (auto) or ≥ 32"),
        (0 < config.enhancement.l_channel_boost <= 4, "enhancement.l_channel_boost must be in (0, 4]"),
        (0 < config.enhancement.ab_channel_boost <= 4, "enhancement.ab_channel_boost must be in (0, 4]"),
        (1 <= config.enhancement.dark_boost <= 4, "enhancement.dark_boost must be in [1, 4]"),
        (1 <= config.enhancement.light_boost <= 4, "enhancement.light_boost must be in [1, 4]"),
        (0 <= config.enhancement.hdr_strength <= 1, "enhancement.hdr_strength must be in [0, 1]"),
        (0 < config.enhancement.under_exposure <= 1, "enhancement.under_exposure must be in (0, 1]"),
        (1 <= config.enhancement.over_exposure <= 4, "enhancement.over_exposure must be in [1, 4]"),
        (0 <= config.enhancement.threads <= 256, "enhancement.threads must be 0 (Numba's default) to 256"),
        (config.pipeline.change_threshold >= 0, "pipeline.change_threshold must not be negative"),
        (config.pipeline.max_reguide_s > 0, "pipeline.max_reguide_s must be positive"),
        (config.pipeline.queue in ("slot", "fifo"), "pipeline.queue must be slot or fifo"),
        (config.channel.max_message_bytes >= 256, "channel.max_message_bytes must be at least 256"),
        (config.channel.max_prompt_chars >= 1, "channel.max_prompt_chars must be at least 1"),
        (config.channel.max_messages_per_s > 0, "channel.max_messages_per_s must be positive"),
        *assistant_checks(config.assistant),
        *voice_checks(config.voice),
        (config.source.max_backoff_s >= 0.25, "source.max_backoff_s must be at least 0.25"),
        (config.record.max_mb >= 1, "record.max_mb must be at least 1"),
        (0 <= config.record.crf <= 51, "record.crf must be 0..51"),
        *speech_checks(config.speech),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config: {message}")
    return config


def speech_checks(config: SpeechConfig) -> list[tuple[bool, str]]:
    return [
        (config.tts in ("auto", "browser") or (config.tts.startswith("piper:") and len(config.tts) > 6),
         "speech.tts must be auto, browser or piper:<voice name | path to .onnx>"),
        (0.25 <= config.length_scale <= 4, "speech.length_scale must be in [0.25, 4]"),
        (config.max_chars >= 1, "speech.max_chars must be at least 1"),
        (0 <= config.echo_tail_s <= 5, "speech.echo_tail_s must be in [0, 5]"),
    ]


def assistant_checks(config: AssistantConfig) -> list[tuple[bool, str]]:
    return [
        (1 <= config.max_steps <= 500, "assistant.max_steps must be 1..500"),
        (20 <= config.max_step_chars <= 2000, "assistant.max_step_chars must be 20..2000"),
        (1 <= config.done_frames <= 20, "assistant.done_frames must be 1..20"),
        (config.advance_rule in ("evidence", "streak"), "assistant.advance_rule must be evidence or streak"),
        (0.0 < config.describer_error < 0.5, "assistant.describer_error must be above 0 and below 0.5"),
        (1.0 < config.advance_odds <= 1e6, "assistant.advance_odds must be above 1 (and at most 1e6)"),
        (0.0 < config.independent_s <= 60.0, "assistant.independent_s must be above 0 and at most 60"),
        (0.0 <= config.verdict_min_mass <= 1.0, "assistant.verdict_min_mass must be 0..1"),
        (config.min_gap_s >= 0, "assistant.min_gap_s must not be negative"),
        (config.stall_nudge_s > 0, "assistant.stall_nudge_s must be positive"),
        (config.journal_max_age_days > 0, "assistant.journal_max_age_days must be positive"),
        (config.journal_max_sessions >= 1, "assistant.journal_max_sessions must be at least 1"),
    ]


def voice_checks(voice: VoiceConfig) -> list[tuple[bool, str]]:
    return [
        (voice.asr in ("auto", "pocketsphinx") or any(voice.asr.startswith(k) and len(voice.asr) > len(k)
                                                      for k in ("whisper:", "faster-whisper:")),
         "voice.asr must be auto, pocketsphinx, faster-whisper:<model name or folder> or whisper:<model name or path>"),
        (0 <= voice.vad_aggressiveness <= 3, "voice.vad_aggressiveness must be 0..3"),
        (30 <= voice.end_silence_ms <= 3000, "voice.end_silence_ms must be 30..3000"),
        (1 <= voice.max_utterance_s <= 60, "voice.max_utterance_s must be 1..60"),
        (0 < voice.max_command_s <= voice.max_utterance_s, "voice.max_command_s must be in (0, max_utterance_s]"),
        (0 <= voice.min_coverage <= 1, "voice.min_coverage must be 0..1"),
        (0 < voice.max_s_per_phone <= 1, "voice.max_s_per_phone must be in (0, 1]"),
        (0 <= voice.barge_in_ms <= 3000, "voice.barge_in_ms must be 0..3000"),
        (voice.echo_window_s >= 0, "voice.echo_window_s must not be negative"),
    ]


def endpoint_urls(config: OpenAIConfig) -> list[str]:
    """The configured endpoint base URLs, without trailing slashes."""
    return [u.strip().rstrip("/") for u in config.endpoints.split(",") if u.strip()]


def load_config(path: Path | None) -> Config:
    """Reads a TOML file (or returns the defaults when path is None)."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    return config_from_dict(data)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as nested dicts (for the defaults file check and for /health)."""
    return dataclasses.asdict(config)
