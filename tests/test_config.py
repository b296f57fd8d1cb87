"""Configuration: the defaults file mirrors the code, and broken values are named clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from stream_assist.config import Config, ConfigError, config_from_dict, config_to_dict, load_config

DEFAULTS = Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def test_defaults_file_matches_code_defaults() -> None:
    with open(DEFAULTS, "rb") as f:
        assert tomllib.load(f) == config_to_dict(Config())
    assert load_config(DEFAULTS) == Config()


@pytest.mark.parametrize(("data", "needle"), [
    ({"server": {"port": "80"}}, "server.port must be int"),
    ({"server": {"port": 70000}}, "server.port must be 0..65535"),
    ({"model": {"n_ctx": True}}, "model.n_ctx must be an integer"),
    ({"model": {"model_path": "a.gguf"}}, "go together"),
    ({"model": {"cpu_extra_buffers": "maybe"}}, "cpu_extra_buffers"),
    ({"model": {"colour": 1}}, "unknown key model.colour"),
    ({"modle": {}}, "unknown section [modle]"),
    ({"pipeline": {"sample_fps": 0}}, "pipeline.sample_fps"),
    ({"server": 3}, "[server] must be a table"),
])
def test_broken_values_are_named(data, needle) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert needle in str(e.value)


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9000\n[pipeline]\nsample_fps = 5\n")
    config = load_config(path)
    assert config.server.port == 9000 and config.pipeline.sample_fps == 5.0
    assert config.model == Config().model


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_ice_servers_from_config() -> None:
    from stream_assist.server.app import ice_servers

    config = config_from_dict({"server": {"ice_urls": "stun:a.example:3478, turn:a.example:3478?transport=udp",
                                          "ice_username": "u", "ice_credential": "p"}})
    assert ice_servers(config) == [{"urls": ["stun:a.example:3478", "turn:a.example:3478?transport=udp"],
                                    "username": "u", "credential": "p"}]
    assert ice_servers(config_from_dict({})) == []
    with pytest.raises(ConfigError, match="ice_urls"):
        config_from_dict({"server": {"ice_urls": "http://a.example"}})
