"""`stream-assist bench enhance`.

The benchmark times, in one process and interleaved, the Numba chain (enhance/kernels.py), the same operations
in OpenCV (enhance/opencv.py) and the float64 NumPy definition (enhance/reference.py) on a synthetic
natural-looking frame of each size, with every step on, and prints medians and ratios. Frames are
enhanced at the size given (the server resizes to the model's size before enhancement).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np

from ..config import EnhancementConfig
from ..enhance import kernels as enhancement
from ..enhance import opencv as enhance_opencv
from ..enhance import reference as enhance_reference

SIZES = ((640, 480), (1280, 720), (1024, 1024), (1920, 1080))


def sample_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-looking RGB frame: smooth colour gradients, soft-edged discs, sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    img = np.stack([120 + 90 * np.sin(3 * x + 1), 110 + 80 * np.cos(4 * y + 2 * x), 100 + 70 * np.sin(5 * x * y + 0.5)],
                   axis=-1)
    for _ in range(12):
        cx, cy, r = rng.random(3)
        weight = 0.8 / (1 + np.exp((np.hypot(x - cx, y - cy) - 0.25 * r) * 200))[..., None]
        img = (1 - weight) * img + weight * rng.random(3) * 255
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _time_ms(fn: Callable[[np.ndarray, EnhancementConfig], np.ndarray], frame: np.ndarray,
             config: EnhancementConfig, times: list[float]) -> None:
    """Enhances frame once with fn and appends the wall time in ms."""
    started = time.perf_counter()
    fn(frame, config)
    times.append((time.perf_counter() - started) * 1000)


def run(sizes: tuple[tuple[int, int], ...] = SIZES, repeats: int = 30, as_json: bool = False,
        config: EnhancementConfig | None = None) -> dict:
    """Times the three implementations at each size; prints a table (or JSON) and returns the figures."""
    config = config or EnhancementConfig()
    compile_s = enhancement.warm_up()
    enhancement.set_threads(config.threads)
    result = {"config": vars(config).copy(), "numba_threads": numba.get_num_threads(), "cpu_count": os.cpu_count(),
              "threading_layer": numba.threading_layer(), "compile_or_load_s": round(compile_s, 3), "sizes": []}
    for width, height in sizes:
        frame = sample_frame(width, height)
        ours: list[float] = []
        opencv: list[float] = []
        numpy: list[float] = []
        for i in range(repeats):  # interleaved, so drifting machine load affects all alike
            _time_ms(enhancement.enhance, frame, config, ours)
            _time_ms(enhance_opencv.enhance, frame, config, opencv)
            if i < max(1, repeats // 10):  # the float64 reference takes about a second per megapixel
                _time_ms(enhance_reference.enhance, frame, config, numpy)
        medians = {name: statistics.median(times) for name, times in (("numba", ours), ("opencv", opencv),
                                                                      ("numpy", numpy))}
        result["sizes"].append({
            "size": f"{width}x{height}", **{f"{name}_ms": round(ms, 3) for name, ms in medians.items()},
            "opencv_over_numba": round(medians["opencv"] / medians["numba"], 2),
            "numpy_over_numba": round(medians["numpy"] / medians["numba"], 1),
            "runs": {"numba": len(ours), "opencv": len(opencv), "numpy": len(numpy)}})
    print(json.dumps(result, indent=2) if as_json else format_table(result))
    return result


def format_table(result: dict) -> str:
    """The figures as a plain-text table."""
    lines = [f"enhancement chain, all steps on; median ms over runs; Numba threads {result['numba_threads']} "
             f"({result['threading_layer']}), {result['cpu_count']} CPUs; "
             f"kernels compiled or loaded in {result['compile_or_load_s']:.2f} s",
             f"{'size':>10} {'numba':>8} {'opencv':>8} {'numpy':>9} {'opencv/numba':>13} {'numpy/numba':>12}"]
    for row in result["sizes"]:
        lines.append(f"{row['size']:>10} {row['numba_ms']:8.2f} {row['opencv_ms']:8.2f} {row['numpy_ms']:9.1f} "
                     f"{row['opencv_over_numba']:12.1f}x {row['numpy_over_numba']:11.0f}x")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`stream-assist bench enhance [--repeats N] [--sizes WxH ...] [--threads N] [--json]`."""
    parser.add_argument("--repeats", type=int, default=30, help="runs per size of the Numba and OpenCV versions")
    parser.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for w, h in SIZES], help="WxH ...")
    parser.add_argument("--threads", type=int, default=0, help="Numba threads (0: Numba's default)")
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    sizes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.sizes)
    run(sizes, args.repeats, args.json, EnhancementConfig(threads=args.threads))
    return 0
