"""What each layer keeps (C8), and what each filter looks for: inversion and filter patterns.

**Inversion** after A. Mahendran and A. Vedaldi, "Understanding Deep Image Representations by
Inverting Them", CVPR 2015: from a layer's activations phi0 = phi(x0) of a face, find the
image x in [0, 1] minimising

    ||phi(x) - phi0||^2 / ||phi0||^2  +  tv_weight * TV(x),

TV(x) = the mean over pixels of the squared differences to the right and lower neighbours
(their TV^beta prior with beta = 2), by Adam on the pixels from mid-grey plus seeded noise,
for a fixed number of steps, each step followed by clipping to [0, 1]. A batch of faces is
inverted at once: each face's loss depends only on its own pixels and Adam's moments are
per pixel, so the result is the same as one face at a time. How close a reconstruction is to
its face is measured with scikit-image's PSNR and SSIM (``data_range=1``, colour channels
last).

**Filter patterns** after F. Chollet, *Deep Learning with Python*, 5.4.2: for each filter of
a conv layer, the input that maximises the filter's mean response (before its ReLU, see
:func:`filter_patterns`), by gradient ascent from mid-grey plus small seeded noise, each
gradient divided by its root mean square, clipped to [0, 1] after every step.

Both are deterministic for a seed on one machine: the noise comes from NumPy's seeded
generator and TensorFlow's CPU kernels for these ops are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lfwcnn.errors import LfwcnnError

GREY = 0.5


def layer_model(model, layer: str):
    """A model from ``model``'s input to ``layer``'s output (the input layer's name: the
    identity)."""
    import keras

    from lfwcnn.model import layer_output

    return keras.Model(model.input, layer_output(model, layer))


def start_images(shape: Sequence[int], seed: int, noise: float) -> np.ndarray:
    """Mid-grey plus seeded Gaussian noise of standard deviation ``noise``, in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(GREY + noise * rng.standard_normal(tuple(shape)), 0, 1).astype(np.float32)


def total_variation(images):
    """Mean squared difference of each pixel to its right and lower neighbour, per image."""
    import tensorflow as tf

    down = tf.square(images[:, 1:, :, :] - images[:, :-1, :, :])
    right = tf.square(images[:, :, 1:, :] - images[:, :, :-1, :])
    return tf.reduce_mean(down, axis=(1, 2, 3)) + tf.reduce_mean(right, axis=(1, 2, 3))


def invert(extractor, images: np.ndarray, *, steps: int, learning_rate: float,
           tv_weight: float, seed: int, noise: float = 0.05) -> np.ndarray:
    """Reconstructions (n, H, W, C) in [0, 1] of ``images`` from ``extractor(images)`` (a
    Keras model or any differentiable callable, e.g. :func:`layer_model`)."""
    import keras
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    target = tf.constant(extractor(images, training=False) if isinstance(
        extractor, keras.Model) else extractor(images))
    axes = tuple(range(1, len(target.shape)))
    scale = tf.maximum(tf.reduce_sum(tf.square(target), axis=axes), 1e-12)
    x = tf.Variable(start_images(images.shape, seed, noise))
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build([x])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            features = extractor(x, training=False) if isinstance(
                extractor, keras.Model) else extractor(x)
            distance = tf.reduce_sum(tf.square(features - target), axis=axes) / scale
            loss = tf.reduce_sum(distance + tv_weight * total_variation(x))
        optimizer.apply_gradients([(tape.gradient(loss, x), x)])
        x.assign(tf.clip_by_value(x, 0.0, 1.0))

    for _ in range(steps):
        step()
    return x.numpy()


def invert_layer(model, layer: str, images: np.ndarray, **options) -> np.ndarray:
    """:func:`invert` from the activations of ``model``'s layer ``layer``."""
    return invert(layer_model(model, layer), images, **options)


def psnr(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """PSNR in dB of each reconstruction against its original (images in [0, 1])."""
    from skimage.metrics import peak_signal_noise_ratio

    return np.array([peak_signal_noise_ratio(o, r, data_range=1.0)
                     for o, r in zip(originals, reconstructions, strict=True)])


def ssim(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """SSIM of each reconstruction against its original (images in [0, 1], colour last)."""
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(o, r, data_range=1.0, channel_axis=-1)
                     for o, r in zip(originals, reconstructions, strict=True)])


def reconstruction_scores(originals: np.ndarray, reconstructions: Mapping[str, np.ndarray]
                          ) -> pd.DataFrame:
    """A tidy table (layer, image, psnr, ssim): every face's reconstruction from each layer."""
    originals = np.asarray(originals, dtype=np.float64)
    frames = [pd.DataFrame({"layer": layer, "image": np.arange(len(originals)),
                            "psnr": psnr(originals, np.asarray(images, np.float64)),
                            "ssim": ssim(originals, np.asarray(images, np.float64))})
              for layer, images in reconstructions.items()]
    return pd.concat(frames, ignore_index=True)


def filter_response(model, layer: str, *, linear: bool):
    """A function from input images to ``layer``'s maps; ``linear``: for a conv layer, its
    response before the activation (convolution plus bias)."""
    import keras

    extractor = layer_model(model, layer)
    conv = model.get_layer(layer)
    if not linear or not isinstance(conv, keras.layers.Conv2D):
        return extractor, extractor.output.shape[-1]
    below = keras.Model(model.input, conv.input)

    def response(images):
        maps = conv.convolution_op(below(images, training=False), conv.kernel)
        return maps + conv.bias if conv.use_bias else maps

    return response, conv.filters


def filter_patterns(model, layer: str, *, steps: int, step_size: float, seed: int,
                    noise: float = 0.05, filters: Sequence[int] | None = None,
                    linear: bool = True) -> np.ndarray:
    """For each filter of ``layer`` (default: all), the input (H, W, C) in [0, 1] that
    maximises its mean response: an array (filters, H, W, C).

    ``linear`` (for conv layers): ascend the response before the ReLU rather than after it.
    Where the filter fires the two rise together; a filter silent on the whole start image
    has no gradient after the ReLU and would stay at the start image.
    """
    import tensorflow as tf

    response, channels = filter_response(model, layer, linear=linear)
    chosen = np.arange(channels) if filters is None else np.asarray(filters, dtype=np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= channels):
        raise LfwcnnError(f"layer {layer} has {channels} filters, asked for {list(chosen)}")
    shape = (len(chosen), *model.input.shape[1:])
    x = tf.Variable(start_images(shape, seed, noise))
    select = tf.one_hot(chosen, channels)  # (filters, channels)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            means = tf.reduce_mean(response(x), axis=(1, 2))  # (filters, channels)
            objective = tf.reduce_sum(means * select)
        grads = tape.gradient(objective, x)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True))
        x.assign(tf.clip_by_value(x + step_size * grads / (rms + 1e-8), 0.0, 1.0))

    for _ in range(steps):
        step()
    return x.numpy()


C8_RULE = (
    "C8 holds when the reconstructions from {first} are close to the input (mean SSIM >= "
    "{threshold}) and the mean SSIM does not rise from one layer to the next deeper one "
    "(it falls with depth, within {tolerance}); the same network with its untrained initial "
    "weights is the control: where it keeps as much, what the layers keep comes from the "
    "architecture, not from training."
)


def _check_c8(mean_ssim: Mapping[str, float], threshold: float, tolerance: float) -> dict:
    values = [float(v) for v in mean_ssim.values()]
    if not values:
        raise LfwcnnError("the C8 rule needs the SSIM of at least one layer")
    falls = all(b <= a + tolerance for a, b in zip(values, values[1:], strict=False))
    close = values[0] >= threshold
    return {"first_close": bool(close), "falls_with_depth": bool(falls),
            "holds": bool(close and falls), "mean_ssim": dict(zip(mean_ssim, values, strict=True))}


def c8_verdict(trained: Mapping[str, float], untrained: Mapping[str, float], *,
               threshold: float = 0.9, tolerance: float = 0.0) -> dict:
    """The C8 verdict from the mean SSIM per layer (in depth order, the first conv first) of
    the trained and the untrained network."""
    got, control = _check_c8(trained, threshold, tolerance), _check_c8(untrained, threshold,
                                                                       tolerance)
    first = next(iter(trained))
    return {
        "claim": "C8",
        "holds": got["holds"],
        "trained": got,
        "untrained": control,
        "rule": C8_RULE.format(first=first, threshold=threshold, tolerance=tolerance),
    }
