"""Grad-CAM: against a hand-computed class activation map, and on a model that only looks at
one quadrant of its input."""

from __future__ import annotations

import numpy as np
import pytest

from lfwcnn.errors import LfwcnnError
from lfwcnn.gradcam import gradcam, last_conv_layer

keras = pytest.importorskip("keras")


def _set_dense(layer, kernel, bias):
    layer.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])


def test_gradcam_equals_the_hand_computed_cam_of_a_global_pooling_model():
    """conv(1x1) -> global average -> dense softmax: d logit_c / d A_k = w_kc / (H W), so
    Grad-CAM is ReLU(sum_k w_kc A_k) / max, Zhou et al.'s CAM."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(pooled))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    classes = [0, 1, 1, 0]
    kernel, bias = model.get_layer("conv").get_weights()
    dense = rng.normal(size=(3, 2))
    _set_dense(model.get_layer("out"), dense, [0.3, -0.2])
    maps = np.maximum(images @ kernel[0, 0] + bias, 0)  # (4, 8, 8, 3)
    for i, c in enumerate(classes):
        expected = np.maximum(maps[i] @ dense[:, c] / 64, 0)
        expected = expected / expected.max() if expected.max() > 0 else expected
        got = gradcam(model, images[i:i + 1], [c], at_input_size=False)[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    both = gradcam(model, images, classes, batch_size=3)  # batches agree with single images
    assert both.shape == (4, 8, 8) and both.min() >= 0 and both.max() <= 1
    np.testing.assert_allclose(both[1], gradcam(model, images[1:2], [1])[0], atol=1e-6)
    assert last_conv_layer(model) == "conv"


class TopLeftOnly(keras.layers.Layer):
    """Zero every pixel outside the top-left quadrant."""

    def call(self, x):
        side = x.shape[1] // 2
        rows = keras.ops.arange(x.shape[1]) < side
        cols = keras.ops.arange(x.shape[2]) < side
        mask = keras.ops.cast(rows[:, None] & cols[None, :], x.dtype)
        return x * mask[None, :, :, None]


def test_a_model_that_sees_only_the_top_left_quadrant_is_highlighted_there():
    inputs = keras.Input((16, 16, 3))
    seen = TopLeftOnly()(inputs)
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False,
                               name="conv")(seen)
    flat = keras.layers.Flatten()(conv)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(flat))
    rng = np.random.default_rng(0)
    model.get_layer("conv").set_weights([np.abs(rng.normal(size=(3, 3, 3, 4))).astype("f4")])
    weights = np.abs(rng.normal(size=(16 * 16 * 4, 2)))
    weights[:, 1] *= -1  # class 0 rises with every activation
    _set_dense(model.get_layer("out"), weights, [0, 0])
    images = rng.random((3, 16, 16, 3)).astype(np.float32)
    cams = gradcam(model, images, [0, 0, 0])
    assert cams.shape == (3, 16, 16)
    share = cams[:, :8, :8].sum(axis=(1, 2)) / cams.sum(axis=(1, 2))
    assert (share > 0.9).all(), share
    np.testing.assert_allclose(cams.max(axis=(1, 2)), 1)


def test_the_papers_network_and_bad_arguments():
    from lfwcnn.config import default_settings
    from lfwcnn.model import build_model

    keras.utils.set_random_seed(0)
    model = build_model(5, (64, 64, 3), default_settings().model)
    assert last_conv_layer(model) == "conv3"
    images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    cams = gradcam(model, images, [0, 4])
    assert cams.shape == (2, 64, 64) and cams.min() >= 0 and cams.max() <= 1
    np.testing.assert_array_equal(cams, gradcam(model, images, [0, 4]))  # deterministic
    assert gradcam(model, images, [0, 4], layer="conv2").shape == (2, 64, 64)
    with pytest.raises(LfwcnnError, match="no layer 'conv9'"):
        gradcam(model, images, [0, 4], layer="conv9")
    with pytest.raises(LfwcnnError, match="class indices"):
        gradcam(model, images, [0])
