"""Landmarks (dlib, mapped into the crop frame) and the face-part masks built from them."""

from __future__ import annotations

import time

import numpy as np
import pytest
from landmark_fixtures import people_files, synthetic_face, synthetic_faces
from workflow_runner import SHARED_LFW, SHARED_LFW_REASON

from lfwcnn.errors import LfwcnnError
from lfwcnn.landmarks import (
    LFW_CENTRE_BOX,
    Landmarks,
    compute_landmarks,
    load_landmarks,
    predictor_path,
    save_landmarks,
    to_crop_frame,
)
from lfwcnn.part_masks import CONTROLS, PARTS, REGIONS, part_masks

CENTRE_CROP = {"crop_rows": (61, 189), "crop_cols": (61, 189), "size": 64}


# ------------------------------------------------------------------ the crop frame
def test_crop_frame_maps_pixel_centres_as_pillow_resizes():
    rows, cols = (61, 189), (61, 189)
    # the crop's corners (pixel centres 61 and 188) land half a scale inside the 64 frame
    mapped = to_crop_frame(np.array([[61.0, 61.0], [188.0, 188.0]]), rows, cols, 64)
    np.testing.assert_allclose(mapped, [[-0.25, -0.25], [63.25, 63.25]])
    # identity when the crop is the whole frame at full size
    points = np.array([[3.0, 7.0], [249.0, 0.0]])
    np.testing.assert_allclose(to_crop_frame(points, (0, 250), (0, 250), 250), points)
    # x follows the columns, y the rows
    moved = to_crop_frame(np.array([[100.0, 100.0]]), (0, 200), (50, 250), 200)
    np.testing.assert_allclose(moved, [[50.0, 100.0]])


def test_landmarks_file_round_trip(tmp_path):
    marks = Landmarks(points=synthetic_faces(3), detected=np.array([True, False, True]),
                      files=np.array(["A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg"]))
    save_landmarks(tmp_path / "lm.npz", marks)
    back = load_landmarks(tmp_path / "lm.npz")
    np.testing.assert_array_equal(back.points, marks.points)
    np.testing.assert_array_equal(back.detected, marks.detected)
    assert list(back.files) == list(marks.files)
    np.savez(tmp_path / "bad.npz", points=np.zeros((2, 5, 2)), detected=np.zeros(2, bool),
             files=np.array(["a", "b"]))
    with pytest.raises(LfwcnnError, match="do not fit 2 files"):
        load_landmarks(tmp_path / "bad.npz")


def test_a_missing_image_is_one_line(tmp_path):
    with pytest.raises(LfwcnnError, match="no such image"):
        compute_landmarks(["Nobody/Nobody_0001.jpg"], tmp_path, **CENTRE_CROP)


def test_the_model_file_is_installed():
    assert predictor_path().stat().st_size > 90_000_000


# ------------------------------------------------------------------ part masks
def test_part_masks_are_disjoint_and_the_controls_partition_the_rest():
    masks = part_masks(synthetic_faces(5), 64)
    assert set(masks) == set(REGIONS)
    stacked = np.stack([masks[r] for r in REGIONS]).astype(int)
    np.testing.assert_array_equal(stacked.sum(axis=0), 1)  # every pixel in exactly one region
    for part in PARTS:
        assert masks[part].sum(axis=(1, 2)).min() > 10, part
    face = synthetic_face()
    one = part_masks(face[None], 64)
    for group, part in [(range(36, 42), "eyes"), (range(42, 48), "eyes"),
                        (range(48, 60), "mouth"), (range(31, 36), "nose")]:
        x, y = np.round(face[list(group)].mean(axis=0)).astype(int)
        assert one[part][0, y, x], part
    assert one["background"][0, 0, 0] and one["background"][0, 63, 63]
    assert one["face_rest"][0, 32, 14]  # a cheek
    union_of_controls = one["face_rest"] | one["background"]
    assert not (union_of_controls & np.any([one[p] for p in PARTS], axis=0)).any()
    assert CONTROLS == ("face_rest", "background")


def test_grown_parts_are_larger_and_still_a_partition():
    faces = synthetic_faces(3)
    plain, grown = part_masks(faces, 64), part_masks(faces, 64, grow=1)
    np.testing.assert_array_equal(np.stack([grown[r] for r in REGIONS]).sum(axis=0), 1)
    assert grown["eyes"].sum() > 2 * plain["eyes"].sum()
    assert (grown["eyes"] >= plain["eyes"]).all()  # eyes come first: they only gain
    assert grown["background"].sum() <= plain["background"].sum()


def test_part_masks_refuse_other_shapes():
    with pytest.raises(ValueError, match=r"\(n, 68, 2\)"):
        part_masks(np.zeros((2, 5, 2)), 64)


# ------------------------------------------------------------------ the real LFW
def _people_files(min_images: int) -> list[str]:
    return people_files(SHARED_LFW, min_images)


@pytest.mark.real_lfw
@pytest.mark.skipif(not SHARED_LFW.is_dir(), reason=SHARED_LFW_REASON)
def test_landmarks_on_a_few_real_faces():
    files = _people_files(30)[::150]  # 16 faces of several people
    marks = compute_landmarks(files, SHARED_LFW, workers=2, **CENTRE_CROP)
    assert marks.points.shape == (len(files), 68, 2) and marks.points.dtype == np.float32
    assert list(marks.files) == files
    assert marks.detected.mean() >= 0.9
    inner = marks.points[:, 17:]  # brows, nose, eyes, mouth: inside the 64x64 crop
    assert ((inner >= -0.5) & (inner <= 63.5)).all()
    masks = part_masks(marks.points, 64)
    assert all(masks[p].any(axis=(1, 2)).all() for p in PARTS)
    again = compute_landmarks(files, SHARED_LFW, workers=1, **CENTRE_CROP)
    np.testing.assert_array_equal(again.points, marks.points)  # deterministic, same order


@pytest.mark.real_lfw
@pytest.mark.skipif(not SHARED_LFW.is_dir(), reason=SHARED_LFW_REASON)
def test_centre_box_fallback_lies_in_the_face():
    left, top, right, bottom = LFW_CENTRE_BOX
    assert 0 < left < 125 < right < 250 and 0 < top < 125 < bottom < 250


@pytest.mark.slow
@pytest.mark.real_lfw
@pytest.mark.skipif(not SHARED_LFW.is_dir(), reason=SHARED_LFW_REASON)
def test_landmarks_of_every_face_of_the_paper_people():
    files = _people_files(30)
    assert len(files) == 2370
    start = time.perf_counter()
    marks = compute_landmarks(files, SHARED_LFW, workers=2, **CENTRE_CROP)
    took = time.perf_counter() - start
    rate = marks.detected.mean()
    print(f"landmarks of {len(files)} faces, 2 workers: {took:.1f} s; detected {rate:.2%}")
    assert rate >= 0.95
    inner = marks.points[:, 17:]
    assert ((inner >= -0.5) & (inner <= 63.5)).all(axis=(1, 2)).mean() >= 0.95
