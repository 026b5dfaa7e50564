"""The paper's CNN as a small function of the config (section 3, Fig. 3 of Soydaner 2019):
Conv-MaxPool blocks, dense layers, dropout, a softmax over the people; layers are named as
the paper's figures name them (``conv1``, ``pool1``, ...)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

import numpy as np

from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings

CONV, POOL = "conv", "pool"  # block i holds the layers conv{i} and pool{i}, as in the paper
BATCH_SIZE = 64  # images per forward pass when reading layer outputs (memory, not results)
FEATURE_LAYER = re.compile(rf"^({CONV}|{POOL})(\d+)$")


def feature_layer_names(blocks: int) -> list[str]:
    """conv1, pool1, conv2, ...: the conv and pooling layers of ``blocks`` blocks, in order."""
    return [f"{kind}{block}" for block in range(1, blocks + 1) for kind in (CONV, POOL)]


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 faces to float32 in [0, 1], as scikit-learn's LFW loader hands them to a script."""
    return images.astype(np.float32) / np.float32(255)


def feature_side(input_side: int, n_blocks: int, kernel_size: int, pool_size: int) -> int:
    """Side of the last pooled feature map (valid convolutions); below 1 the image is too small."""
    side = input_side
    for _ in range(n_blocks):
        side = (side - kernel_size + 1) // pool_size if side >= kernel_size else 0
    return side


def _activation(name: str) -> bool:
    """Whether a layer can apply Keras' activation ``name`` alone (Keras decides: no list here)."""
    import keras  # imports TensorFlow but does not start it (lfwcnn.devices still can)

    try:
        parameters = list(inspect.signature(keras.activations.get(name)).parameters.values())
    except (ValueError, TypeError):
        return False
    return all(p.default is not inspect.Parameter.empty for p in parameters[1:])


def check_model(model: Settings, input_shape: Sequence[int]) -> None:
    """What the schema and load_dataset cannot check: images large enough, a Keras activation."""
    height, width, _ = input_shape
    blocks, kernel, pool = len(model.filters), model.kernel_size, model.pool_size
    if feature_side(min(height, width), blocks, kernel, pool) < 1:
        raise LfwcnnError(f"images of {height}x{width} are too small for {blocks} blocks of "
                          f"{kernel}x{kernel} convolution and {pool}x{pool} pooling")
    if not _activation(model.activation):
        import keras

        known = sorted(n for n in dir(keras.activations) if n[0] != "_" and _activation(n))
        raise LfwcnnError(f"config key model.activation: {model.activation!r} is not a Keras "
                          f"activation; choose one of {', '.join(known)}")


def feature_layers(network) -> list[str]:
    """The conv and pooling layers of a Keras model, in order (conv1, pool1, ...)."""
    return [layer.name for layer in network.layers if FEATURE_LAYER.match(layer.name)]


def layer_output(network, name: str):
    """The symbolic output of ``network``'s layer ``name``, refused in one line if none."""
    try:
        return network.get_layer(name).output
    except ValueError:
        raise LfwcnnError(f"model {network.name} has no layer {name!r}") from None


def layer_outputs(extractor, images: np.ndarray, batch_size: int = BATCH_SIZE):
    """Yield, batch by batch, the list of (batch, H, W, C) float32 arrays of each output of
    ``extractor`` (a model to some layers' outputs) for uint8 ``images``, scaled as in
    training."""
    for start in range(0, len(images), batch_size):
        outputs = extractor(scale_pixels(images[start:start + batch_size]), training=False)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        yield [np.asarray(out, dtype=np.float32) for out in outputs]


def build_model(n_classes: int, input_shape: Sequence[int], model: Settings):
    """The uncompiled ``keras.Model`` of the section ``model``, for inputs in [0, 1].

    "Dropout is applied to the fully-connected layers preceding the output layer" reads as the
    last dense layer or all of them: ``model.dropout_placement`` picks.
    """
    check_model(model, input_shape)
    import keras  # here: importing the module must not start TensorFlow
    from keras import layers

    x = inputs = keras.Input(shape=tuple(input_shape), name="image")
    for block, n_filters in enumerate(model.filters, start=1):
        x = layers.Conv2D(n_filters, model.kernel_size, activation=model.activation,
                          name=f"{CONV}{block}")(x)
        x = layers.MaxPooling2D(model.pool_size, name=f"{POOL}{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(model.dense_units, start=1):
        x = layers.Dense(units, activation=model.activation, name=f"dense{i}")(x)
        if model.dropout_placement == "all" or i == len(model.dense_units):
            x = layers.Dropout(model.dropout_rate, name=f"dropout{i}")(x)
    # softmax in float32 under a mixed precision policy too (Keras' advice, for stability)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="soydaner2019")


def initial_model(n_classes: int, input_shape: Sequence[int], model: Settings, seed: int):
    """The network with the initial weights of a training with ``seed``: Keras seeded, then
    :func:`build_model`. The training starts from it, and the views use it as the untrained
    control, so both must come from here."""
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(n_classes, input_shape, model)
