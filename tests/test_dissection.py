"""Network dissection on face parts (C7): IoU of thresholded channels with part masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from landmark_fixtures import synthetic_faces

from lfwcnn.dissection import (
    C7_PARTS,
    c7_verdict,
    channel_ious,
    channel_thresholds,
    detector_counts,
    dissect,
    layer_activations,
    units_per_layer,
    upsample,
)
from lfwcnn.errors import LfwcnnError
from lfwcnn.part_masks import REGIONS, part_masks

N, SIZE = 12, 64


@pytest.fixture(scope="module")
def masks():
    return part_masks(synthetic_faces(N), SIZE)


def test_a_channel_firing_exactly_on_the_eyes_detects_eyes_and_nothing_else(masks):
    eyes = masks["eyes"].astype(np.float32)
    dead = np.zeros_like(eyes)
    maps = np.stack([eyes, 2 * masks["mouth"], dead], axis=-1)
    table = dissect({"conv9": maps}, masks, quantile=0.005, iou_threshold=0.04)
    assert list(table.columns) == ["layer", "channel", "region", "iou", "detector"]
    assert len(table) == 3 * len(REGIONS)
    eye_unit = table[table["channel"] == 0].set_index("region")
    assert eye_unit.loc["eyes", "iou"] == 1.0
    assert eye_unit["detector"].to_dict() == {r: r == "eyes" for r in REGIONS}
    mouth_unit = table[table["channel"] == 1].set_index("region")
    assert mouth_unit.loc["mouth", "iou"] == 1.0
    assert mouth_unit["detector"].sum() == 1
    assert not table[table["channel"] == 2]["detector"].any()  # a dead unit detects nothing
    assert (table[table["channel"] == 2]["iou"] == 0).all()
    counts = detector_counts(table)
    assert counts.loc["conv9"].to_dict() == {r: int(r in ("eyes", "mouth")) for r in REGIONS}


def test_counts_equal_a_plain_numpy_count_on_random_upsampled_maps(masks):
    rng = np.random.default_rng(3)
    maps = np.maximum(rng.standard_normal((N, 16, 16, 5)), 0).astype(np.float32)
    maps[..., 4] = -1.0  # a unit that never fires: threshold below zero, selects nothing
    up = np.asarray(upsample(maps, SIZE))
    thresholds = channel_thresholds(maps, 0.02)
    ious = channel_ious(maps, masks, quantile=0.02, chunk=2)
    for channel in range(maps.shape[-1]):
        selected = (up[..., channel] >= thresholds[channel]) & (up[..., channel] > 0)
        for region, mask in masks.items():
            union = (selected | mask).sum()
            expected = (selected & mask).sum() / union if union else 0.0
            assert ious.loc[channel, region] == expected, (channel, region)
    assert (ious.loc[4] == 0).all()


def test_the_quantile_selects_exactly_the_top_share():
    values = np.random.default_rng(0).permutation(1000).astype(np.float32)
    maps = values.reshape(10, 10, 10, 1)
    for quantile, top in [(0.005, 5), (0.01, 10), (0.5, 500)]:
        threshold = channel_thresholds(maps, quantile)[0]
        assert (values >= threshold).sum() == top
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(LfwcnnError, match="quantile"):
            channel_thresholds(maps, bad)


def test_a_channel_at_the_iou_threshold_is_not_a_detector(masks):
    eyes = masks["eyes"]
    firing = np.zeros(eyes.size, dtype=np.float32)
    eye_pixels = np.flatnonzero(eyes.ravel())
    firing[eye_pixels[: len(eye_pixels) // 2]] = 1  # half the eye pixels: IoU = half
    maps = firing.reshape(*eyes.shape, 1)
    iou = channel_ious(maps, masks, quantile=0.005).loc[0, "eyes"]
    assert iou == (len(eye_pixels) // 2) / len(eye_pixels)
    at = dissect({"c": maps}, masks, quantile=0.005, iou_threshold=iou)
    below = dissect({"c": maps}, masks, quantile=0.005, iou_threshold=np.nextafter(iou, 0))
    assert not at.set_index("region").loc["eyes", "detector"]
    assert below.set_index("region").loc["eyes", "detector"]


def test_small_maps_are_upsampled_bilinearly_to_the_input(masks):
    maps = np.zeros((N, 8, 8, 2), dtype=np.float32)
    maps[:, 0, 0, 0] = 1  # the top-left corner: background
    up = np.asarray(upsample(maps, SIZE))
    assert up.shape == (N, SIZE, SIZE, 2)
    assert up[:, :4, :4, 0].min() == 1 and up[:, 12:, 12:, 0].max() == 0
    np.testing.assert_allclose(up[0, :, :, 0], up[0, :, :, 0].T)  # symmetric as the input
    table = dissect({"pool": maps}, masks, quantile=0.01, iou_threshold=0.04)
    corner = table[table["channel"] == 0].set_index("region")["iou"]
    assert corner.idxmax() == "background" and corner["eyes"] == 0


def test_large_regions_cap_the_iou(masks):
    from lfwcnn.dissection import max_iou
    from lfwcnn.part_masks import region_shares

    shares = region_shares(masks)
    assert abs(sum(shares.values()) - 1) < 1e-9  # the regions partition the pixels
    assert max_iou(0.005, shares["background"]) < 0.04 < max_iou(0.005, shares["eyes"])
    assert max_iou(0.02, 0.01) == 0.5 and max_iou(0.0, 0.3) == 0.0
    # a unit firing on its top 0.5 % inside the background: a background IoU near the cap
    ranks = np.where(masks["background"], np.arange(masks["background"].size).reshape(
        masks["background"].shape), 0).astype(np.float32)
    iou = channel_ious(ranks[..., None], masks, quantile=0.005).loc[0, "background"]
    assert iou == pytest.approx(max_iou(0.005, shares["background"]), rel=0.01)


def test_mismatched_masks_are_one_line(masks):
    with pytest.raises(LfwcnnError, match="activation maps"):
        channel_ious(np.zeros((N + 1, 4, 4, 1)), masks, quantile=0.005)


def _counts(rows):
    frame = pd.DataFrame(rows, index=["conv1", "pool1", "conv2"])
    return frame.reindex(columns=["eyes", "mouth", "nose"], fill_value=0)


def test_c7_verdict():
    trained = _counts({"eyes": [1, 2, 4], "mouth": [0, 1, 3]})
    untrained = _counts({"eyes": [2, 1, 1], "mouth": [1, 0, 0]})
    verdict = c7_verdict(trained, untrained)
    assert verdict["holds"] and verdict["more_than_untrained"]
    assert verdict["more_in_deeper_layers"]
    assert verdict["counts"]["eyes"] == {"trained": 7, "untrained": 4, "trained_first": 1,
                                         "trained_deeper": 6}
    assert "untrained" in verdict["rule"] and "conv1" in verdict["rule"]
    assert set(verdict["counts"]) == set(C7_PARTS)
    # as many mouth detectors as untrained: fails the control
    no_mouth = c7_verdict(trained, _counts({"eyes": [0, 0, 0], "mouth": [0, 4, 0]}))
    assert not no_mouth["holds"] and not no_mouth["more_than_untrained"]
    # all detectors in conv1: fails the depth condition
    shallow = c7_verdict(_counts({"eyes": [9, 0, 0], "mouth": [5, 0, 1]}), untrained)
    assert shallow["more_than_untrained"] and not shallow["more_in_deeper_layers"]
    assert not shallow["holds"]
    # per unit: conv1's 32 channels against 64 + 128 deeper ones
    per_unit = c7_verdict(trained, untrained, units={"conv1": 32, "pool1": 32, "conv2": 64})
    assert per_unit["depth"]["first_per_unit"] == 1 / 32
    assert per_unit["depth"]["deeper_per_unit"] == 10 / 96 and per_unit["holds"]
    assert "per unit" in per_unit["rule"]
    sparse = c7_verdict(_counts({"eyes": [2, 1, 1], "mouth": [1, 1, 1]}), _counts({}),
                        units={"conv1": 8, "pool1": 64, "conv2": 64})
    assert sparse["depth"] == {"first": 3, "deeper": 4, "first_per_unit": 3 / 8,
                               "deeper_per_unit": 4 / 128}
    assert not sparse["more_in_deeper_layers"]
    with pytest.raises(LfwcnnError, match="conv0"):
        c7_verdict(trained, untrained, first="conv0")


def test_dissection_of_the_papers_network():
    import keras

    from lfwcnn.config import default_settings
    from lfwcnn.model import initial_model

    model = initial_model(4, (SIZE, SIZE, 3), default_settings().model, seed=3)
    again = initial_model(4, (SIZE, SIZE, 3), default_settings().model, seed=3)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed, the same initial weights
    images = np.random.default_rng(0).integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    acts = layer_activations(model, ["conv1", "pool3"], images)
    assert acts["conv1"].shape == (N, 62, 62, 32) and acts["pool3"].shape == (N, 6, 6, 128)
    masks = part_masks(synthetic_faces(N), SIZE)
    table = dissect(acts, masks, quantile=0.005, iou_threshold=0.04)
    assert len(table) == (32 + 128) * len(REGIONS)
    assert table["iou"].between(0, 1).all()
    assert list(detector_counts(table).index) == ["conv1", "pool3"]
    assert units_per_layer(table) == {"conv1": 32, "pool3": 128}
    assert isinstance(keras.__version__, str)
