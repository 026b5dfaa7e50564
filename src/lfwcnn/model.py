"""The paper's CNN as a small function of the config (section 3, Fig. 3 of Soydaner 2019).

Conv-MaxPool blocks, then dense layers, dropout, and a softmax over the people. Layers are
named as the paper's figures name them (``conv1``, ``pool1``, ...) so that later steps (the
feature-map and sparsity figures) can ask for a layer by the name the paper uses.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

import numpy as np

from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings

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


def _activation(name: str):
    """The Keras activation ``name``, if it is one a layer can apply alone (no further
    argument), else None. Keras itself decides, so no list here falls behind Keras."""
    import keras  # imports TensorFlow but does not start it (lfwcnn.devices still can)

    try:
        function = keras.activations.get(name)
        parameters = list(inspect.signature(function).parameters.values())[1:]
    except (ValueError, TypeError):
        return None
    return None if any(p.default is inspect.Parameter.empty for p in parameters) else function


def check_activation(name: str) -> None:
    if _activation(name) is None:
        import keras

        known = sorted(n for n in dir(keras.activations)
                       if not n.startswith("_") and _activation(n) is not None)
        raise LfwcnnError(f"config key model.activation: {name!r} is not a Keras activation; "
                          f"choose one of {', '.join(known)}")


def check_model(model: Settings, input_shape: Sequence[int]) -> None:
    """What the schema cannot check about the ``model`` section, before anything is written:
    the images must be RGB and large enough to survive every conv-pool block, and the
    activation must be one Keras knows."""
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise LfwcnnError(f"images must be (height, width, 3), got {tuple(input_shape)}")
    height, width, _ = input_shape
    blocks, kernel, pool = len(model.filters), model.kernel_size, model.pool_size
    if feature_side(min(height, width), blocks, kernel, pool) < 1:
        raise LfwcnnError(
            f"images of {height}x{width} are too small for {blocks} blocks of "
            f"{kernel}x{kernel} convolution and {pool}x{pool} pooling"
        )
    check_activation(model.activation)


def build_model(n_classes: int, input_shape: Sequence[int], model: Settings):
    """Return the uncompiled ``keras.Model`` of the config section ``model``.

    "Dropout is applied to the fully-connected layers preceding the output layer" reads as
    either the last dense layer or all of them: ``model.dropout_placement`` picks ("last" or
    "all"); each dropout layer is named after the dense layer it follows (``dropout2``).
    Inputs are expected in [0, 1] (:func:`scale_pixels`). The settings are those the config
    schema has checked; the activation, the data's shape and number of classes are checked
    here (:func:`check_model`).
    """
    check_model(model, input_shape)
    if n_classes < 2:
        raise LfwcnnError(f"a classifier needs at least 2 classes, got {n_classes}")
    import keras  # here: importing the module must not start TensorFlow
    from keras import layers

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for block, n_filters in enumerate(model.filters, start=1):
        conv, pool = block_layers(block)
        x = layers.Conv2D(n_filters, model.kernel_size, activation=model.activation, name=conv)(x)
        x = layers.MaxPooling2D(model.pool_size, name=pool)(x)
    x = layers.Flatten(name="flatten")(x)
    last = len(model.dense_units)
    for i, units in enumerate(model.dense_units, start=1):
        x = layers.Dense(units, activation=model.activation, name=f"dense{i}")(x)
        if model.dropout_placement == "all" or i == last:
            x = layers.Dropout(model.dropout_rate, name=f"dropout{i}")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="soydaner2019")
