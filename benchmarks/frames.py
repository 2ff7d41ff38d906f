"""Synthetic frames for the benchmarks: a desktop, noise and a video-like picture.

The desktop is a flat background with a dozen windows of text-like
strokes and one photo-sized noisy area -- what a remote desktop mostly
looks like; noise is the worst case for every encoder; the "video"
frame is a smooth moving gradient (every pixel changes, few repeats).
Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["desktop", "noise", "video", "WIDTH", "HEIGHT"]

WIDTH, HEIGHT = 1920, 1080


def desktop(width: int = WIDTH, height: int = HEIGHT, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.zeros((height, width, 4), dtype=np.uint8)
    f[..., :3] = (58, 110, 165)
    for _ in range(12):
        x, y = int(rng.integers(0, width - 400)), int(rng.integers(0, height - 300))
        f[y:y + 300, x:x + 400, :3] = 240
        f[y:y + 24, x:x + 400, :3] = (40, 40, 90)
        for row in range(y + 30, y + 290, 14):
            length = int(rng.integers(50, 380))
            strokes = rng.random((9, length, 1)) < 0.4
            f[row:row + 9, x + 10:x + 10 + length, :3] = np.where(strokes, 20, 240)
    ph, pw = height // 4, width // 4
    f[height - ph - 110:height - 110, width - pw - 40:width - 40, :3] = \
        rng.integers(0, 256, (ph, pw, 3))
    return f


def noise(width: int = WIDTH, height: int = HEIGHT, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


def video(t: float, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    f = np.zeros((height, width, 4), dtype=np.uint8)
    f[..., 0] = (127 + 127 * np.sin(x / 97 + t)).astype(np.uint8)
    f[..., 1] = (127 + 127 * np.sin(y / 53 - t * 1.3)).astype(np.uint8)
    f[..., 2] = (127 + 127 * np.sin((x + y) / 151 + t * 0.7)).astype(np.uint8)
    return f
