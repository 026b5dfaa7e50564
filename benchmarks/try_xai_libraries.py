"""Grad-CAM of xplique 2.0.2 and tf-keras-vis 0.8.7 against lfwcnn.gradcam on the paper's
network (random weights), with this project's Keras 3 / TensorFlow 2.21 untouched.

The libraries go into a folder of their own, never into the environment (xplique's pins would
downgrade TensorFlow); their other needs are added there without dependency resolution:

    .venv/bin/pip install --no-deps --target /tmp/xai xplique==2.0.2 tf-keras-vis==0.8.7 \\
        deprecated einops tensorflow-probability==0.25.0 tf-keras==2.21.0 dm-tree decorator \\
        cloudpickle opencv-python-headless
    PYTHONPATH=/tmp/xai:src .venv/bin/python benchmarks/try_xai_libraries.py

Prints, per library, whether it runs and how far its maps are from ours: after upsampling
(the libraries resize differently) and at the conv layer's own size (the Grad-CAM itself).
"""

from __future__ import annotations

import traceback

import numpy as np


def peak_normalised(maps: np.ndarray) -> np.ndarray:
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def main() -> None:
    import keras
    import tensorflow as tf

    from lfwcnn.config import default_settings
    from lfwcnn.gradcam import gradcam
    from lfwcnn.model import build_model

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    keras.utils.set_random_seed(0)
    model = build_model(34, (64, 64, 3), default_settings().model)
    images = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32)
    classes = [0, 5, 7, 9, 11, 33]
    ours, ours_raw = gradcam(model, images, classes), gradcam(model, images, classes,
                                                              at_input_size=False)
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        cam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        theirs = np.asarray(cam(CategoricalScore(classes), images, penultimate_layer="conv3"))
        raw = np.asarray(cam(CategoricalScore(classes), images, penultimate_layer="conv3",
                             expand_cam=False, normalize_cam=False))
        print("tf-keras-vis runs: correlation at input size "
              f"{np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]:.3f}; at conv3's size, "
              f"max |difference| {np.abs(ours_raw - peak_normalised(raw)).max():.1e}")
    except Exception:
        print("tf-keras-vis fails:")
        traceback.print_exc(limit=-3)
    try:
        from xplique.attributions import GradCAM

        targets = np.eye(34, dtype=np.float32)[classes]
        theirs = np.asarray(GradCAM(model, conv_layer="conv3").explain(images, targets))[..., 0]
        logits = keras.models.clone_model(model)
        logits.set_weights(model.get_weights())
        logits.layers[-1].activation = keras.activations.linear
        explainer = GradCAM(logits, conv_layer="conv3")
        maps, grads = explainer._gradient(tf.constant(images), tf.constant(targets))
        raw = np.asarray(GradCAM._apply_weights(GradCAM._compute_weights(grads, maps), maps))
        print("xplique runs: on the softmax model, correlation at input size "
              f"{np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]:.3f}, values "
              f"{theirs.min():.1e}..{theirs.max():.1e}; on a logit model at conv3's size, "
              f"max |difference| {np.abs(ours_raw - peak_normalised(raw)).max():.1e}")
    except Exception:
        print("xplique fails:")
        traceback.print_exc(limit=-3)


if __name__ == "__main__":
    main()
