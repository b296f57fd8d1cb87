"""Enhancement: the Numba kernels against the float64 NumPy definition, the OpenCV baseline, the plumbing.

Error bounds (issue 3): at most 2 levels per channel anywhere, at most 0.5 levels on average per channel,
on natural-looking synthetic frames and edge cases, for each step alone, the chain and other settings.
No timing assertions here: `stream-assist bench enhance` measures speed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_assist.bench import enhance as bench_enhance
from stream_assist.config import Config, ConfigError, EnhancementConfig, config_from_dict
from stream_assist.enhance import kernels as enhancement
from stream_assist.enhance import opencv as enhance_opencv
from stream_assist.enhance import reference as enhance_reference
from stream_assist.enhance.image_file import enhance_file

ALL = EnhancementConfig()
LAB_ONLY = EnhancementConfig(adaptive_enhancement=False, hdr_simulation=False)
ADAPTIVE_ONLY = EnhancementConfig(advanced_color=False, hdr_simulation=False)
HDR_ONLY = EnhancementConfig(advanced_color=False, adaptive_enhancement=False)
CONFIGS = {
    "chain": ALL,
    "lab": LAB_ONLY,
    "adaptive": ADAPTIVE_ONLY,
    "hdr": HDR_ONLY,
    "lab+adaptive": EnhancementConfig(hdr_simulation=False),
    "strong": EnhancementConfig(l_channel_boost=2.0, ab_channel_boost=2.5, dark_boost=3.0, light_boost=2.0,
                                hdr_strength=1.0, under_exposure=0.5, over_exposure=2.0),
    "gentle": EnhancementConfig(l_channel_boost=0.8, ab_channel_boost=0.6, hdr_strength=0.2),
    "no-stretch": EnhancementConfig(auto_contrast=False),
    "lab-off-switch": EnhancementConfig(lab_enhancement=False),
}


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    return bench_enhance.sample_frame(w, h, seed).astype(np.float64)


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:120, 0:160] / 160
    hue = np.stack([np.sin(2 * np.pi * (x + k / 3)) for k in range(3)], axis=-1)
    images = {
        "natural": _scene(240, 320, 1),  # large enough that the statistics sample every 3rd pixel and row
        "gradient": np.stack([255 * x / x.max(), 255 * y / y.max(), 255 * (1 - x / x.max())], axis=-1),
        "dark": 0.22 * _scene(120, 160, 2),
        "bright": 255 - 0.2 * _scene(120, 160, 3),
        "low-contrast": 110 + 0.12 * _scene(120, 160, 4),
        "saturated": 127.5 + 127.5 * np.sign(hue) * np.abs(hue) ** 0.2,
        "noise-texture": 0.6 * _scene(120, 160, 5) + rng.normal(0, 40, (120, 160, 3)),
        "random": rng.integers(0, 256, (64, 64, 3)),
        "one-pixel": np.array([[[200, 30, 90]]]),
        "odd-7x13": rng.integers(0, 256, (7, 13, 3)),
        "black": np.zeros((9, 11, 3)),
        "white": np.full((9, 11, 3), 255),
        "dark-saturated": 0.3 * (127.5 + 127.5 * np.sign(hue) * np.abs(hue) ** 0.2),
    }
    return {name: np.clip(img, 0, 255).astype(np.uint8) for name, img in images.items()}


IMAGES = _images()


def _errors(ours: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Largest and largest per-channel mean absolute difference, in levels."""
    diff = np.abs(ours.astype(np.int64) - reference.astype(np.int64))
    return int(diff.max()), float(diff.reshape(-1, 3).mean(axis=0).max())


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("image_name", sorted(IMAGES))
def test_kernels_match_the_float64_reference(image_name: str, config_name: str) -> None:
    rgb, config = IMAGES[image_name], CONFIGS[config_name]
    ours = enhancement.enhance(rgb, config)
    assert ours.dtype == np.uint8 and ours.shape == rgb.shape
    worst, mean = _errors(ours, enhance_reference.enhance(rgb, config))
    assert worst <= 2 and mean <= 0.5, (worst, mean)


def test_lab_boost_over_the_colour_cube() -> None:
    """Every 4th level of each channel (262144 colours): the colour mapping alone, within a level."""
    levels = np.arange(2, 256, 4, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(512, 512, 3)
    for config in (LAB_ONLY, CONFIGS["strong"]):
        only_lab = dataclasses.replace(config, adaptive_enhancement=False, hdr_simulation=False)
        worst, mean = _errors(enhancement.enhance(cube, only_lab), enhance_reference.enhance(cube, only_lab))
        assert worst <= 1 and mean <= 0.05, (worst, mean)


def test_unit_boosts_keep_the_image() -> None:
    rgb = IMAGES["noise-texture"]
    same = EnhancementConfig(l_channel_boost=1.0, ab_channel_boost=1.0, adaptive_enhancement=False,
                             hdr_simulation=False)
    assert _errors(enhancement.enhance(rgb, same), rgb)[0] <= 1
    assert np.array_equal(enhance_reference.enhance(rgb, same), rgb)


def test_reference_lab_agrees_with_opencv() -> None:
    """The published constants give the CIELAB OpenCV computes, to OpenCV's own precision (its float path
    interpolates the sRGB curve): an independent check of the reference's constants."""
    rgb = IMAGES["random"]
    ours = enhance_reference.rgb_to_lab(rgb)
    theirs = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    assert np.abs(ours - theirs).max() < 0.6


@pytest.mark.parametrize("image_name", ["natural", "dark", "bright", "saturated", "noise-texture", "low-contrast"])
def test_opencv_baseline_does_the_same_work(image_name: str) -> None:
    rgb = IMAGES[image_name]
    for config in (ALL, LAB_ONLY, ADAPTIVE_ONLY, HDR_ONLY):
        diff = np.abs(enhance_opencv.enhance(rgb, config).astype(int) - enhance_reference.enhance(rgb, config))
        assert diff.mean() <= 3, (config, diff.mean())


def test_everything_off_is_the_input() -> None:
    rgb = IMAGES["natural"]
    off = EnhancementConfig(advanced_color=False, adaptive_enhancement=False, hdr_simulation=False)
    assert enhancement.enhance(rgb, off) is rgb


def test_read_only_and_strided_frames() -> None:
    rgb = IMAGES["natural"]
    expected = enhancement.enhance(rgb, ALL)
    frozen = rgb.copy()
    frozen.flags.writeable = False
    assert np.array_equal(enhancement.enhance(frozen, ALL), expected)
    padded = np.zeros((rgb.shape[0], rgb.shape[1], 4), np.uint8)
    padded[..., :3] = rgb
    assert np.array_equal(enhancement.enhance(padded[..., :3], ALL), expected)


def test_thread_count_changes_nothing_but_speed() -> None:
    rgb = IMAGES["noise-texture"]
    one = enhancement.enhance(rgb, dataclasses.replace(ALL, threads=1))
    assert np.array_equal(one, enhancement.enhance(rgb, dataclasses.replace(ALL, threads=0)))
    assert enhancement.set_threads(1) == 1
    assert enhancement.set_threads(0) >= 1
    assert enhancement.set_threads(10_000) == enhancement.set_threads(0)


def test_warm_up_reports_seconds() -> None:
    assert 0 < enhancement.warm_up() < 600


def test_defaults_are_the_reference_configuration() -> None:
    c = EnhancementConfig()
    assert (c.advanced_color, c.lab_enhancement, c.adaptive_enhancement, c.auto_contrast, c.hdr_simulation) == (
        True, True, True, True, True)
    assert (c.l_channel_boost, c.ab_channel_boost, c.dark_boost, c.light_boost) == (1.2, 1.2, 1.4, 1.2)
    assert (c.hdr_strength, c.under_exposure, c.over_exposure, c.threads) == (0.5, 0.7, 1.3, 0)


@pytest.mark.parametrize(("data", "needle"), [
    ({"enhancement": {"l_channel_boost": 0}}, "enhancement.l_channel_boost"),
    ({"enhancement": {"dark_boost": 0.5}}, "enhancement.dark_boost"),
    ({"enhancement": {"hdr_strength": 1.5}}, "enhancement.hdr_strength"),
    ({"enhancement": {"under_exposure": 0}}, "enhancement.under_exposure"),
    ({"enhancement": {"threads": -1}}, "enhancement.threads"),
    ({"enhancement": {"enabled": True}}, "unknown key enhancement.enabled"),
])
def test_broken_enhancement_values_are_named(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert needle in str(e.value)


def test_enhance_file_resizes_and_writes(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    rgb = bench_enhance.sample_frame(300, 200)
    cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    config = Config()
    config.pipeline.max_edge = 150
    assert enhance_file(src, dst, config) == (150, 100)
    out = cv2.cvtColor(cv2.imread(str(dst)), cv2.COLOR_BGR2RGB)
    small = cv2.cvtColor(cv2.resize(cv2.imread(str(src)), (150, 100), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(out, enhancement.enhance(small, config.enhancement))
    with pytest.raises(ValueError, match="cannot read"):
        enhance_file(tmp_path / "missing.png", dst, config)
    cv2.imwrite(str(src), np.zeros((100, 1300, 3), np.uint8))
    config.pipeline.max_edge = 0  # auto: the reference's 1024
    assert enhance_file(src, dst, config) == (1024, 78)


def test_bench_reports_every_implementation(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_enhance.run(((64, 48),), repeats=2, as_json=True)
    row = result["sizes"][0]
    assert row["size"] == "64x48" and row["numba_ms"] > 0 and row["opencv_ms"] > 0 and row["numpy_ms"] > 0
    assert '"opencv_over_numba"' in capsys.readouterr().out


def test_enhance_command_writes_what_the_model_sees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream_assist.cli import main

    src, dst, conf = tmp_path / "photo.jpg", tmp_path / "seen.png", tmp_path / "c.toml"
    cv2.imwrite(str(src), cv2.cvtColor(bench_enhance.sample_frame(400, 300), cv2.COLOR_RGB2BGR))
    conf.write_text("[pipeline]\nmax_edge = 200\n[enhancement]\nhdr_simulation = false\n")
    assert main(["enhance", str(src), str(dst), "--config", str(conf)]) == 0
    assert cv2.imread(str(dst)).shape == (150, 200, 3)
    assert "what the model sees" in capsys.readouterr().out
    assert main(["enhance", str(tmp_path / "missing.jpg"), str(dst)]) == 2  # a clear error, no traceback
