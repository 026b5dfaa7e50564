"""Face-part masks from 68 landmarks, in the crop frame: the concepts of the dissection (C7).

Per image, boolean masks of the eyes, eyebrows, nose and mouth (filled polygons of the
landmark groups, ``skimage.draw.polygon``; a pixel belongs to a polygon when its centre lies
inside), and two controls: the rest of the face and the background. Together the six masks
partition the image: every pixel is in exactly one of them.

- eyes: both eye outlines (36-41, 42-47);
- eyebrows: each brow (17-21, 22-26) as a band from its points down by :data:`BROW_DEPTH` of
  the distance between the brow and its eye (five points on an arc enclose almost no area);
- nose: the outline bridge top (27), nostrils and base (31-35);
- mouth: the outer lip outline (48-59);
- face_rest: inside the outline jaw (0-16) then brows (26 to 17), minus the four parts;
- background: the rest of the image.

On a 64x64 centre crop an open eye is one or two pixels high; ``grow`` widens each part by
that many pixels (a binary dilation with a 3x3 square, repeated) before the parts are made
disjoint, for a coarser "eye region".

Where two parts overlap (a brow band reaching the eye, the nose's top between the eyes) the
pixel goes to the first of :data:`PARTS` (eyes, mouth, eyebrows, nose), so no pixel counts
for two parts.
"""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon

from lfwcnn.landmarks import N_POINTS

PARTS = ("eyes", "mouth", "eyebrows", "nose")  # priority order where outlines overlap
CONTROLS = ("face_rest", "background")
REGIONS = PARTS + CONTROLS
BROW_DEPTH = 0.35  # brow band's depth, as a fraction of the brow-to-eye distance

JAW = list(range(0, 17))
RIGHT_BROW, LEFT_BROW = list(range(17, 22)), list(range(22, 27))
RIGHT_EYE, LEFT_EYE = list(range(36, 42)), list(range(42, 48))
NOSE = [27, 31, 32, 33, 34, 35]
OUTER_LIPS = list(range(48, 60))
FACE_OUTLINE = JAW + LEFT_BROW[::-1] + RIGHT_BROW[::-1]


def fill(outline: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) mask of the polygon whose vertices are the (x, y) rows of ``outline``."""
    mask = np.zeros((size, size), dtype=bool)
    rows, cols = polygon(outline[:, 1], outline[:, 0], shape=(size, size))
    mask[rows, cols] = True
    return mask


def brow_band(brow: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """The brow's points, then the same points moved towards the eye, in reverse order."""
    shift = BROW_DEPTH * (eye.mean(axis=0) - brow.mean(axis=0))
    return np.concatenate([brow, (brow + shift)[::-1]])


def image_masks(points: np.ndarray, size: int, grow: int = 0) -> dict[str, np.ndarray]:
    """The six region masks of one face, from its (68, 2) landmarks in the crop frame."""
    from scipy.ndimage import binary_dilation

    points = np.asarray(points, dtype=np.float64)
    raw = {
        "eyes": fill(points[RIGHT_EYE], size) | fill(points[LEFT_EYE], size),
        "mouth": fill(points[OUTER_LIPS], size),
        "eyebrows": fill(brow_band(points[RIGHT_BROW], points[RIGHT_EYE]), size)
        | fill(brow_band(points[LEFT_BROW], points[LEFT_EYE]), size),
        "nose": fill(points[NOSE], size),
    }
    if grow:
        raw = {part: binary_dilation(mask, np.ones((3, 3), bool), iterations=grow)
               for part, mask in raw.items()}
    masks, taken = {}, np.zeros((size, size), dtype=bool)
    for part in PARTS:
        masks[part] = raw[part] & ~taken
        taken |= masks[part]
    face = fill(points[FACE_OUTLINE], size) | taken
    masks["face_rest"] = face & ~taken
    masks["background"] = ~face
    return masks


def part_masks(points: np.ndarray, size: int, grow: int = 0) -> dict[str, np.ndarray]:
    """Masks of every region (:data:`REGIONS`) for every face: bool (n, size, size) each, from
    landmarks (n, 68, 2) in the crop frame (:class:`lfwcnn.landmarks.Landmarks.points`),
    each part widened by ``grow`` pixels."""
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"landmarks must be (n, {N_POINTS}, 2), got {points.shape}")
    masks = {region: np.zeros((len(points), size, size), dtype=bool) for region in REGIONS}
    for i, face in enumerate(points):
        for region, mask in image_masks(face, size, grow).items():
            masks[region][i] = mask
    return masks


def region_shares(masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of all pixels of all faces that each region covers."""
    return {region: float(np.mean(mask)) for region, mask in masks.items()}
