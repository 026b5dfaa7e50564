"""The paper's CNN: its layers, its parameter count, and the settings it refuses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from helpers_training import TINY_ARCH

from lfwcnn.errors import LfwcnnError
from lfwcnn.model import (
    FEATURE_LAYER,
    build_model,
    check_architecture,
    feature_layer_names,
    feature_side,
    scale_pixels,
)

PAPER_LAYERS = ["image", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "flatten",
                "dense1", "dense2", "dropout2", "output"]


def test_paper_model_has_724962_parameters_and_named_layers():
    model = build_model(34, (64, 64, 3))
    assert model.count_params() == 724_962
    assert [layer.name for layer in model.layers] == PAPER_LAYERS
    assert model.output_shape == (None, 34)
    # valid 3x3 convolutions and 2x2 pooling: 64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6
    assert model.get_layer("pool3").output.shape[1:] == (6, 6, 128)
    assert model.get_layer("flatten").output.shape[1:] == (4608,)


def test_the_feature_layer_names_are_those_the_model_gets():
    """Other steps (activations, figures, claims, the workflow) derive the names from these."""
    model = build_model(4, (16, 16, 3), filters=(4, 8), dense_units=(8,))
    built = [layer.name for layer in model.layers if FEATURE_LAYER.fullmatch(layer.name)]
    assert built == feature_layer_names(2) == ["conv1", "pool1", "conv2", "pool2"]


def test_activations_and_dropout_match_the_paper():
    model = build_model(34, (64, 64, 3))
    for name in ("conv1", "conv2", "conv3", "dense1", "dense2"):
        assert model.get_layer(name).activation.__name__ == "relu"
    assert model.get_layer("output").activation.__name__ == "softmax"
    assert model.get_layer("dropout2").rate == 0.5
    assert model.get_layer("conv1").padding == "valid"


def test_dropout_after_every_dense_layer_adds_no_parameters():
    model = build_model(34, (64, 64, 3), dropout_placement="all", dropout_rate=0.3)
    names = [layer.name for layer in model.layers]
    assert names[names.index("dense1") + 1] == "dropout1"
    assert names[names.index("dense2") + 1] == "dropout2"
    assert model.get_layer("dropout1").rate == 0.3
    assert model.count_params() == 724_962


def test_sizes_come_from_the_parameters():
    model = build_model(4, (16, 16, 3), **TINY_ARCH)
    # conv1 3*3*3*4+4, conv2 3*3*4*8+8, dense1 (2*2*8)*16+16, dense2 16*8+8, output 8*4+4
    assert model.count_params() == 112 + 296 + 528 + 136 + 36
    assert [layer.name for layer in model.layers if layer.name.startswith("conv")] == [
        "conv1", "conv2"]


def test_feature_side():
    assert feature_side(64, 3, 3, 2) == 6
    assert feature_side(16, 2, 3, 2) == 2
    assert feature_side(8, 3, 3, 2) == 0


def test_scale_pixels_to_unit_interval():
    scaled = scale_pixels(np.array([[0, 51, 255]], dtype=np.uint8))
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, np.array([[0, 0.2, 1]], dtype=np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"filters": ()}, "filters must be"),
        ({"filters": (32, 0)}, "filters must be"),
        ({"dense_units": ()}, "dense units must be"),
        ({"kernel_size": 0}, "kernel size and pool size"),
        ({"dropout_rate": 1.0}, "dropout rate must lie in"),
        ({"dropout_rate": -0.1}, "dropout rate must lie in"),
        ({"dropout_placement": "middle"}, "unknown dropout placement 'middle'"),
    ],
)
def test_bad_architecture_is_refused(change, message):
    settings = {"filters": (32, 64, 128), "kernel_size": 3, "pool_size": 2,
                "dense_units": (128, 256), "dropout_rate": 0.5, "dropout_placement": "last"}
    with pytest.raises(LfwcnnError, match=message):
        check_architecture(**{**settings, **change})


def test_images_too_small_or_grey_are_refused():
    with pytest.raises(LfwcnnError, match="8x8 are too small for 3 blocks"):
        build_model(34, (8, 8, 3))
    with pytest.raises(LfwcnnError, match=r"must be \(height, width, 3\)"):
        build_model(34, (64, 64, 1))
    with pytest.raises(LfwcnnError, match="at least 2 classes"):
        build_model(1, (64, 64, 3))
