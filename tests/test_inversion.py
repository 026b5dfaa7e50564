"""Inversion of a layer's activations (C8), PSNR/SSIM, filter patterns and the C8 verdict."""

from __future__ import annotations

import numpy as np
import pytest

from lfwcnn.errors import LfwcnnError
from lfwcnn.inversion import (
    c8_verdict,
    filter_patterns,
    invert,
    invert_layer,
    layer_model,
    psnr,
    reconstruction_scores,
    ssim,
)

keras = pytest.importorskip("keras")
OPTIONS = {"steps": 150, "learning_rate": 0.05, "tv_weight": 0.0, "seed": 0}


def smooth_faces(n: int, side: int = 32) -> np.ndarray:
    """Smooth colour images in [0.1, 0.9]: sums of a few seeded sinusoids."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    images = np.empty((n, side, side, 3), dtype=np.float32)
    for i in range(n):
        for c in range(3):
            fx, fy, phase = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 6)]
            images[i, :, :, c] = np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    return (0.5 + 0.4 * images).astype(np.float32)


@pytest.fixture(scope="module")
def papers_model():
    from lfwcnn.config import default_settings
    from lfwcnn.model import build_model

    keras.utils.set_random_seed(0)
    return build_model(3, (32, 32, 3), default_settings().model)


def test_inverting_the_identity_returns_the_input(papers_model):
    faces = smooth_faces(3)
    identity = layer_model(papers_model, "image")  # the "layer" is the input itself
    back = invert(identity, faces, **OPTIONS)
    assert back.shape == faces.shape and back.min() >= 0 and back.max() <= 1
    assert (ssim(faces, back) > 0.99).all()
    assert (psnr(faces, back) > 35).all()
    same = invert_layer(papers_model, "image", faces, **OPTIONS)
    np.testing.assert_array_equal(same, back)  # deterministic for a seed


def test_a_deep_layer_keeps_less_than_the_first(papers_model):
    faces = smooth_faces(2)
    options = {**OPTIONS, "steps": 60, "tv_weight": 0.01}
    recon = {layer: invert_layer(papers_model, layer, faces, **options)
             for layer in ("conv1", "pool3")}
    table = reconstruction_scores(faces, recon)
    assert list(table.columns) == ["layer", "image", "psnr", "ssim"]
    assert len(table) == 4
    mean = table.groupby("layer", sort=False)["ssim"].mean()
    assert mean["conv1"] > mean["pool3"]


def test_psnr_and_ssim_follow_scikit_image():
    faces = smooth_faces(2)
    noisy = np.clip(faces + 0.1 * np.random.default_rng(1).standard_normal(faces.shape), 0, 1)
    mse = ((faces - noisy) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(psnr(faces, noisy), 10 * np.log10(1 / mse), rtol=1e-5)
    assert (ssim(faces, faces) == 1).all() and (ssim(faces, noisy) < 0.95).all()


def test_filter_patterns_raise_their_filter(papers_model):
    options = {"steps": 20, "step_size": 0.02, "seed": 0}
    patterns = filter_patterns(papers_model, "conv2", filters=[0, 5, 7], **options)
    assert patterns.shape == (3, 32, 32, 3)
    assert patterns.min() >= 0 and patterns.max() <= 1
    extractor = layer_model(papers_model, "conv2")
    start = filter_patterns(papers_model, "conv2", filters=[0, 5, 7], **{**options, "steps": 0})
    after = np.asarray(extractor(patterns)).mean(axis=(1, 2))[[0, 1, 2], [0, 5, 7]]
    before = np.asarray(extractor(start)).mean(axis=(1, 2))[[0, 1, 2], [0, 5, 7]]
    alive = before > 0
    assert alive.any() and not alive.all()  # two filters are silent on the grey start image
    assert (after[alive] > 2 * before[alive]).all()
    assert (after[~alive] > 0).all()  # ascended before the ReLU, they fire in the end
    after_relu = filter_patterns(papers_model, "conv2", filters=[0, 5, 7], linear=False,
                                 **options)
    np.testing.assert_array_equal(after_relu[~alive], start[~alive])  # no gradient: unchanged
    assert (np.asarray(extractor(after_relu)).mean(axis=(1, 2))[0, 0] > 2 * before[0])
    again = filter_patterns(papers_model, "conv2", filters=[0, 5, 7], **options)
    np.testing.assert_array_equal(again, patterns)
    assert filter_patterns(papers_model, "conv1", steps=1, step_size=0.01,
                           seed=0).shape == (32, 32, 32, 3)
    with pytest.raises(LfwcnnError, match="has 64 filters"):
        filter_patterns(papers_model, "conv2", filters=[64], **options)
    with pytest.raises(LfwcnnError, match="no layer 'conv7'"):
        layer_model(papers_model, "conv7")


def test_c8_verdict():
    trained = {"conv1": 0.95, "pool1": 0.8, "conv2": 0.8, "pool3": 0.3}
    untrained = {"conv1": 0.97, "pool1": 0.9, "conv2": 0.85, "pool3": 0.5}
    verdict = c8_verdict(trained, untrained)
    assert verdict["holds"] and verdict["trained"]["holds"] and verdict["untrained"]["holds"]
    assert verdict["trained"]["mean_ssim"] == trained
    assert "SSIM >= 0.9" in verdict["rule"] and "conv1" in verdict["rule"]
    assert "untrained" in verdict["rule"]
    blurry = c8_verdict({"conv1": 0.89, "pool1": 0.5}, untrained)
    assert not blurry["holds"] and not blurry["trained"]["first_close"]
    assert c8_verdict({"conv1": 0.89, "pool1": 0.5}, untrained, threshold=0.89)["holds"]
    rising = c8_verdict({"conv1": 0.95, "pool1": 0.96}, untrained)
    assert not rising["holds"] and not rising["trained"]["falls_with_depth"]
    assert c8_verdict({"conv1": 0.95, "pool1": 0.96}, untrained, tolerance=0.02)["holds"]
    with pytest.raises(LfwcnnError, match="at least one layer"):
        c8_verdict({}, untrained)
