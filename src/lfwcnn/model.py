"""The paper's CNN as a small function of the config (section 3, Fig. 3 of Soydaner 2019).

Conv-MaxPool blocks, then dense layers, dropout, and a softmax over the people. Layers are
named as the paper's figures name them (``conv1``, ``pool1``, ...) so that later steps (the
feature-map and sparsity figures) can ask for a layer by the name the paper uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from lfwcnn.errors import LfwcnnError

DROPOUT_PLACEMENTS = ("last", "all")  # after the last dense layer only, or after every one
CONV, POOL = "conv", "pool"  # block i holds the layers conv{i} and pool{i}, as in the paper
FEATURE_LAYER = re.compile(rf"^({CONV}|{POOL})(\d+)$")


def block_layers(block: int) -> tuple[str, str]:
    """The names of the conv and pooling layer of block ``block`` (from 1): conv1, pool1."""
    return f"{CONV}{block}", f"{POOL}{block}"


def feature_layer_names(blocks: int) -> list[str]:
    """conv1, pool1, conv2, ...: the conv and pooling layers of ``blocks`` blocks, in order."""
    return [name for block in range(1, blocks + 1) for name in block_layers(block)]


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 faces to float32 in [0, 1], as scikit-learn's LFW loader hands them to a script."""
    return images.astype(np.float32) / np.float32(255)


def feature_side(input_side: int, n_blocks: int, kernel_size: int, pool_size: int) -> int:
    """Side of the last pooled feature map (valid convolutions); below 1 the image is too small."""
    side = input_side
    for _ in range(n_blocks):
        side = (side - kernel_size + 1) // pool_size if side >= kernel_size else 0
    return side


def check_architecture(
    *,
    filters: Sequence[int],
    kernel_size: int,
    pool_size: int,
    dense_units: Sequence[int],
    dropout_rate: float,
    dropout_placement: str,
) -> None:
    """Reject settings Keras would only trip over mid-build, with the setting named."""
    if not filters or any(f < 1 for f in filters):
        raise LfwcnnError(f"filters must be one or more positive integers, got {list(filters)}")
    if not dense_units or any(u < 1 for u in dense_units):
        raise LfwcnnError(
            f"dense units must be one or more positive integers, got {list(dense_units)}"
        )
    if kernel_size < 1 or pool_size < 1:
        raise LfwcnnError(
            f"kernel size and pool size must be positive, got {kernel_size} and {pool_size}"
        )
    if not 0 <= dropout_rate < 1:
        raise LfwcnnError(f"dropout rate must lie in [0, 1), got {dropout_rate}")
    if dropout_placement not in DROPOUT_PLACEMENTS:
        raise LfwcnnError(
            f"unknown dropout placement {dropout_placement!r}; choose one of "
            f"{', '.join(DROPOUT_PLACEMENTS)}"
        )


def check_input_shape(
    input_shape: Sequence[int], *, filters: Sequence[int], kernel_size: int, pool_size: int
) -> None:
    """The images must be RGB and large enough to survive every conv-pool block."""
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise LfwcnnError(f"images must be (height, width, 3), got {tuple(input_shape)}")
    height, width, _ = input_shape
    if feature_side(min(height, width), len(filters), kernel_size, pool_size) < 1:
        raise LfwcnnError(
            f"images of {height}x{width} are too small for {len(filters)} blocks of "
            f"{kernel_size}x{kernel_size} convolution and {pool_size}x{pool_size} pooling"
        )


def build_model(
    n_classes: int,
    input_shape: Sequence[int] = (64, 64, 3),
    *,
    filters: Sequence[int] = (32, 64, 128),
    kernel_size: int = 3,
    pool_size: int = 2,
    dense_units: Sequence[int] = (128, 256),
    dropout_rate: float = 0.5,
    dropout_placement: str = "last",
):
    """Return the uncompiled ``keras.Model``; the defaults are the paper's network.

    "Dropout is applied to the fully-connected layers preceding the output layer" reads as
    either the last dense layer or all of them: ``dropout_placement`` picks ("last" or
    "all"); each dropout layer is named after the dense layer it follows (``dropout2``).
    Inputs are expected in [0, 1] (:func:`scale_pixels`). The settings are those the config
    schema (or :func:`check_architecture`, for a command line) has checked; the data's shape
    and number of classes are checked here.
    """
    check_input_shape(input_shape, filters=filters, kernel_size=kernel_size, pool_size=pool_size)
    if n_classes < 2:
        raise LfwcnnError(f"a classifier needs at least 2 classes, got {n_classes}")
    import keras  # here: importing the module must not start TensorFlow
    from keras import layers

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for block, n_filters in enumerate(filters, start=1):
        conv, pool = block_layers(block)
        x = layers.Conv2D(n_filters, kernel_size, activation="relu", name=conv)(x)
        x = layers.MaxPooling2D(pool_size, name=pool)(x)
    x = layers.Flatten(name="flatten")(x)
    last = len(dense_units)
    for i, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        if dropout_placement == "all" or i == last:
            x = layers.Dropout(dropout_rate, name=f"dropout{i}")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="soydaner2019")
