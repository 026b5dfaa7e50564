"""The seeded input pipeline: batch order and dropout masks drawn from ``(seed, epoch)`` alone,
not from generators that advance epoch after epoch (a resumed run would see other ones)."""

from __future__ import annotations

import math

import numpy as np

EPOCH_STRIDE = 2**20  # dropout draws per epoch never reach this, so epochs never share a seed


def shuffled_batches(images: np.ndarray, onehot: np.ndarray, *, batch_size: int, seed: int,
                     epoch):
    """Scaled batches in an order drawn from ``(seed, epoch)``, ``epoch`` a host tf.Variable."""
    import tensorflow as tf

    n = len(images)
    with tf.device("/CPU:0"):
        # uint8 pixels: a quarter of the memory of the scaled floats
        pixels, targets = tf.constant(images), tf.constant(onehot)

    def permutation(_):
        key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
        return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)

    def gather(indices):
        # the same float32 division as scale_pixels, so both paths give identical inputs
        return tf.cast(tf.gather(pixels, indices), tf.float32) / 255.0, tf.gather(targets, indices)

    return (tf.data.Dataset.range(1).map(permutation).unbatch().batch(batch_size).map(gather)
            .apply(tf.data.experimental.assert_cardinality(math.ceil(n / batch_size)))
            .prefetch(tf.data.AUTOTUNE))


def epoch_randomness(model, epoch_var, seed: int, epoch: int) -> None:
    """Key the batch order and every dropout layer's generator to ``(seed, epoch)``."""
    epoch_var.assign(epoch)
    for index, layer in enumerate(model.layers):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state = np.array([seed * 131 + index, epoch * EPOCH_STRIDE], dtype="int64")
            generator.state.assign(state.astype(generator.state.dtype))
