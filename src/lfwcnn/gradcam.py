"""Grad-CAM class activation maps (R. R. Selvaraju et al., "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV 2017) for a Keras 3 model.

For an image, a class c and a conv layer with maps A_k: the weight of channel k is the
spatial mean of d y_c / d A_k, where y_c is the class's score BEFORE the softmax (as in the
paper; for the usual last ``Dense`` layer with a softmax activation the logit is computed
from that layer's input, kernel and bias); the map is ReLU(sum_k weight_k A_k), upsampled
bilinearly to the input size (``tf.image.resize``, half-pixel centres) and divided by its
maximum (a map that is zero everywhere stays zero), so it lies in [0, 1].

A small module of our own: issue 15 asked to try two libraries first (each installed with
``pip install --no-deps --target`` beside, never into, this environment; Keras 3.15.1,
TensorFlow 2.21.0), and at the conv layer's own size both give exactly these maps (largest
difference after dividing by the maximum: tf-keras-vis 5e-7, xplique 0 on a logit model):

- ``tf-keras-vis`` 0.8.7 (last release March 2024) installs with our pins (it adds only
  ``Deprecated``) and its ``Gradcam`` runs on this model (``ReplaceToLinear`` for the logit,
  ``clone=True``), but it upsamples with ``scipy.ndimage.zoom(order=1)`` (corner-aligned, not
  half-pixel), rescales each map to min..max, and imports ``zoom`` from
  ``scipy.ndimage.interpolation``, a namespace SciPy warns will be removed in SciPy 2.0.
- ``xplique`` 2.0.2 declares ``tensorflow<=2.20``, ``scikit-learn<=1.7.2``,
  ``scipy<=1.15.3``, ``scikit-image<=0.25.2``, ``opencv-python`` and
  ``tensorflow-probability`` (which imports the Keras 2 package ``tf-keras``): pip would
  downgrade TensorFlow to 2.20 to install it. Forced in beside (with ``tf-keras`` 2.21,
  ``dm-tree``, ``decorator``, ``cloudpickle``, ``einops``, OpenCV) its ``GradCAM`` runs; it
  scores the model's output as it is (here the softmax, unless the model is changed to
  output logits) and resizes bicubically without rescaling (small negative values).

Neither is worth a dependency for the thirty lines below, which are tested against a
hand-computed class activation map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lfwcnn.errors import LfwcnnError


def last_conv_layer(model) -> str:
    """The name of the model's last ``Conv2D`` layer."""
    import keras

    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise LfwcnnError(f"model {model.name} has no Conv2D layer for Grad-CAM")
    return convs[-1]


def _score_model(model, layer_name: str):
    """A model from the input to (the layer's maps, the class scores before any softmax)."""
    import keras

    from lfwcnn.model import layer_output

    maps = layer_output(model, layer_name)
    last = model.layers[-1]
    softmax = keras.activations.get("softmax")
    if isinstance(last, keras.layers.Dense) and last.activation is softmax:
        return keras.Model(model.input, [maps, last.input]), last
    return keras.Model(model.input, [maps, model.output]), None


def gradcam(model, images: np.ndarray, classes: Sequence[int], *, layer: str | None = None,
            batch_size: int = 64, at_input_size: bool = True) -> np.ndarray:
    """Grad-CAM maps (n, H, W) in [0, 1] of ``images`` (n, H, W, C, scaled as the model
    expects) for ``classes`` (one index per image), at ``layer`` (default: the last conv);
    ``at_input_size=False``: at the layer's own size, not upsampled."""
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if classes.shape != (len(images),):
        raise LfwcnnError(f"{len(images)} images but {classes.shape} class indices")
    score_model, dense = _score_model(model, layer or last_conv_layer(model))
    size = images.shape[1:3]
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start:start + batch_size])
        picked = classes[start:start + batch_size]
        with tf.GradientTape() as tape:
            conv, scores = score_model(batch, training=False)
            if dense is not None:
                scores = tf.matmul(scores, dense.kernel) + dense.bias
            chosen = tf.gather(scores, picked, axis=1, batch_dims=1)
        grads = tape.gradient(chosen, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1, keepdims=True))
        if at_input_size:
            cam = tf.image.resize(cam, size, method="bilinear", antialias=False)
        cam = cam[..., 0].numpy()
        peak = cam.max(axis=(1, 2), keepdims=True)
        maps.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
    return np.concatenate(maps).astype(np.float32)
