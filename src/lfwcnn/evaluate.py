"""Score one trained seed on its test images: accuracy, loss, per-class scores, confusion matrix.

Besides the accuracy, ``metrics.json`` holds its binomial confidence interval over the test
images (Clopper-Pearson, exact), so a single seed can already say whether the paper's number
is within what 593 test images can resolve; ``lfwcnn.aggregate`` then looks across seeds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn import plots
from lfwcnn.atomic import write_text
from lfwcnn.dataset import load_dataset, load_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import load_keras_model, read_json
from lfwcnn.model import scale_pixels
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)

EPSILON = 1e-7  # Keras' clipping in categorical cross-entropy, so the loss matches training's
TRAIN_INFO_KEYS = ("seed", "split_seed", "device", "gpu_name", "epochs", "seconds",
                   "seconds_per_epoch", "params", "tensorflow", "keras")


def binomial_interval(correct: int, total: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of an accuracy of ``correct`` out of ``total``."""
    from scipy.stats import binomtest

    if total < 1 or not 0 <= correct <= total:
        raise LfwcnnError(f"need 0 <= correct <= total and total >= 1, got {correct}/{total}")
    ci = binomtest(correct, total).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy computed as Keras does (normalise, clip, log)."""
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    p = np.clip(p[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    return float(-np.mean(np.log(p)))


def load_model(path: str | os.PathLike, images: np.ndarray):
    """The saved model, refused in one line unless it takes images shaped as ``images``'."""
    model = load_keras_model(path)
    expected = tuple(model.input_shape[1:])
    if expected != images.shape[1:]:
        raise LfwcnnError(f"{path}: the model takes images of {expected}, the dataset holds "
                          f"{images.shape[1:]}")
    return model


def predict(model_path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Class probabilities of the saved model for uint8 images (scaled as in training).

    Runs on the CPU: a few hundred images take a second there, and a GPU left alone stays
    whole for the training jobs that may be sharing it.
    """
    import tensorflow as tf

    # a RuntimeError means the runtime already started in this process: placement then stays
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    model = load_model(model_path, images)
    return np.asarray(model.predict(scale_pixels(images), batch_size=256, verbose=0),
                      dtype=np.float64)


def per_class(confusion: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1, support and predictions per class of a confusion matrix: bit for
    bit scikit-learn's ``precision_recall_fscore_support(zero_division=0)`` of one seed."""
    counts = confusion.to_numpy(dtype=float)
    hits = np.diag(counts)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * hits / (support + predicted), 0.0)
    return pd.DataFrame({
        "class": list(confusion.index), "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int), "predicted": predicted.astype(int),
    })


def score(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
          confidence: float) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Metrics, per-class table and confusion matrix (rows: true, columns: predicted)."""
    from sklearn.metrics import confusion_matrix

    n_classes = len(class_names)
    if probabilities.shape != (len(labels), n_classes):
        raise LfwcnnError(f"the model gives {probabilities.shape[1]} class scores, the dataset "
                          f"has {n_classes} classes")
    predicted = probabilities.argmax(axis=1)
    confusion = pd.DataFrame(
        confusion_matrix(labels, predicted, labels=np.arange(n_classes)),
        index=pd.Index(list(class_names), name="true"),
        columns=list(class_names),
    )
    correct = int((predicted == labels).sum())
    total = len(labels)
    low, high = binomial_interval(correct, total, confidence)
    metrics = {
        "test_images": total, "correct": correct, "accuracy": correct / total,
        "loss": cross_entropy(labels, probabilities),
        "accuracy_interval": {"confidence": confidence, "method": "clopper-pearson",
                              "low": low, "high": high},
        "classes": n_classes, "chance_accuracy": 1 / n_classes,
        "majority_accuracy": float(np.bincount(labels, minlength=n_classes).max() / total),
    }
    table = per_class(confusion)
    for average, weights in (("macro", None), ("weighted", table["support"])):
        metrics[f"{average}_avg"] = {key: float(np.average(table[key], weights=weights))
                                     for key in ("precision", "recall", "f1")}
    return metrics, table, confusion


def evaluate_model(*, dataset: Path, split_csv: Path, model_file: Path, info: Path | None = None,
                   metrics: Path, per_class: Path, confusion: Path, figure: Path,
                   predictions: Path, evaluate: Settings) -> None:
    """Step: score ``model_file`` on the test images of ``split_csv`` and write the metrics,
    the per-class scores, the confusion matrix (table and ``figure``) and every prediction;
    ``info``: the seed's train.json, whose seed, device and timings the metrics carry."""
    check_outputs({"metrics": metrics, "per_class": per_class, "confusion": confusion,
                   "figure": figure, "predictions": predictions},
                  {"dataset": dataset, "split_csv": split_csv, "model_file": model_file,
                   "info": info})
    train = None if info is None else read_json(info)
    train_info = {} if train is None else {key: train.get(key) for key in TRAIN_INFO_KEYS}
    data = load_dataset(dataset)
    _, test_idx = load_split(split_csv, data)
    probabilities = predict(model_file, data.images[test_idx])
    record, class_scores, matrix = score(
        data.labels[test_idx], probabilities, list(data.class_names), evaluate.confidence
    )
    record = {"seed": train_info.get("seed"), "split_seed": train_info.get("split_seed"),
              **record, "model": str(model_file), "split": str(split_csv), "train": train_info}
    write_text(per_class, class_scores.to_csv(index=False))
    write_text(confusion, matrix.to_csv())
    predicted, true = probabilities.argmax(axis=1), data.labels[test_idx]
    write_text(predictions, pd.DataFrame({
        "file": data.files[test_idx], "true": data.class_names[true],
        "predicted": data.class_names[predicted], "confidence": probabilities.max(axis=1).round(6),
        "correct": predicted == true,
    }).to_csv(index=False))
    title = f"test accuracy {record['accuracy']:.2%} ({record['correct']}/{len(test_idx)})"
    if record["seed"] is not None:
        title = f"seed {record['seed']}: {title}"
    plots.plot_confusion(matrix, title, figure)
    write_text(metrics, json.dumps(record, indent=2) + "\n")
    interval = record["accuracy_interval"]
    log.info("test accuracy %.4f (%d/%d), %.0f %% interval %.4f to %.4f", record["accuracy"],
             record["correct"], len(test_idx), 100 * evaluate.confidence, interval["low"],
             interval["high"])
