"""A hand-made 68-point face in a 64x64 frame, in dlib's (iBUG 300-W) point order."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def people_files(root: Path, min_images: int) -> list[str]:
    """``Person/Person_NNNN.jpg`` of the people with at least ``min_images`` JPEGs, sorted."""
    files = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(f.name for f in person.glob("*.jpg"))
        if len(names) >= min_images:
            files += [f"{person.name}/{name}" for name in names]
    return files


def _arc(cx, cy, rx, ry, start, stop, n):
    t = np.linspace(start, stop, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def synthetic_face(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """(68, 2) (x, y) points of a frontal face centred in a 64x64 frame, moved by (dx, dy)."""
    t = np.linspace(0, np.pi, 17)  # (10, 30) down to the chin (32, 60), up to (54, 30)
    jaw = np.stack([32 - 22 * np.cos(t), 30 + 30 * np.sin(t)], axis=1)
    right_brow = np.stack([np.linspace(14, 28, 5), [19, 17.5, 17, 17.5, 19]], axis=1)
    left_brow = right_brow * [-1, 1] + [64, 0]
    left_brow = left_brow[::-1]
    nose_bridge = np.stack([np.full(4, 32.0), np.linspace(24, 36, 4)], axis=1)
    nose_base = np.stack([np.linspace(27, 37, 5), [38, 39, 40, 39, 38]], axis=1)
    right_eye = np.array([[16, 26], [19, 24], [23, 24], [26, 26], [23, 28], [19, 28]], float)
    left_eye = right_eye * [-1, 1] + [64, 0]
    left_eye = left_eye[[3, 2, 1, 0, 5, 4]]  # outer corner first, clockwise as dlib's
    outer_lips = _arc(32, 48, 9, 4, np.pi, -np.pi, 13)[:12]
    inner_lips = _arc(32, 48, 6, 2, np.pi, -np.pi, 9)[:8]
    points = np.concatenate([jaw, right_brow, left_brow, nose_bridge, nose_base, right_eye,
                             left_eye, outer_lips, inner_lips])
    assert points.shape == (68, 2)
    return (points + [dx, dy]).astype(np.float32)


def synthetic_faces(n: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic faces, each moved by up to 2 pixels (seeded)."""
    shifts = np.random.default_rng(seed).uniform(-2, 2, size=(n, 2))
    return np.stack([synthetic_face(dx, dy) for dx, dy in shifts])
