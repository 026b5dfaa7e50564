"""Small synthetic datasets, settings and command lines for the training and evaluation tests.

The faces are tiny (16x16) and each class has its own colour and stripe pattern under noise,
so a two-block CNN learns them in a few epochs on a CPU: a test can tell a working pipeline
from one that predicts at chance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import yaml

from lfwcnn.config import default_settings
from lfwcnn.dataset import Dataset, save_dataset, save_split
from lfwcnn.settings import Settings

SIDE = 16
# Two conv-pool blocks fit 16x16 images: 16 -> 14 -> 7 -> 5 -> 2.
TINY_ARCH = {"filters": [4, 8], "kernel_size": 3, "pool_size": 2, "dense_units": [16, 8],
             "dropout_rate": 0.5, "dropout_placement": "last"}
TINY_TRAIN = {"batch_size": 16, "device": "cpu"}


def tiny_config(*, epochs: int = 3, model: dict | None = None, **train) -> dict:
    """A config overlay: the tiny architecture, ``epochs`` epochs of batch 16 on the CPU."""
    return {"model": {**TINY_ARCH, **(model or {})},
            "train": {**TINY_TRAIN, "epochs": epochs, **train}}


def tiny_settings(*, epochs: int = 3, model: dict | None = None, **train) -> Settings:
    """The checked, frozen config of :func:`tiny_config` (its ``.model`` and ``.train``)."""
    return default_settings(tiny_config(epochs=epochs, model=model, **train))


def model_settings(**model) -> Settings:
    """The ``model`` section of config.yaml with ``model`` keys changed, checked and frozen."""
    return default_settings({"model": model}).model


def tf_env() -> dict[str, str]:
    """Environment for child processes: quiet TensorFlow, no GPU surprises, src importable."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return env


def make_dataset(n_classes: int = 4, per_class: int = 24, side: int = SIDE,
                 seed: int = 0) -> Dataset:
    """Learnable faces: a class-specific mean colour and stripe orientation, plus noise."""
    rng = np.random.default_rng(seed)
    images, labels, files = [], [], []
    rows = np.arange(side)[:, None] * np.ones((1, side))
    for label in range(n_classes):
        colour = rng.uniform(40, 215, size=3)
        stripes = np.sin((rows if label % 2 else rows.T) * (1 + label) * 0.8) * 40
        for k in range(per_class):
            noise = rng.normal(0, 20, size=(side, side, 3))
            face = colour + stripes[..., None] + noise
            images.append(np.clip(face, 0, 255).astype(np.uint8))
            labels.append(label)
            files.append(f"Person_{label}/Person_{label}_{k + 1:04d}.jpg")
    order = rng.permutation(len(images))
    return Dataset(
        images=np.stack(images)[order],
        labels=np.array(labels, dtype=np.int64)[order],
        class_names=np.array([f"Person_{i}" for i in range(n_classes)]),
        files=np.array(files)[order],
    )


def split_in_quarters(data: Dataset, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 0.75/0.25 split of row indices, as the split step draws one."""
    order = np.random.default_rng(seed).permutation(len(data.labels))
    cut = len(order) * 3 // 4
    return order[:cut], order[cut:]


def write_synthetic(folder: Path, **kwargs) -> tuple[Path, Path]:
    """Write ``dataset.npz`` and ``split.csv`` into ``folder``; return their paths."""
    data = make_dataset(**kwargs)
    train, test = split_in_quarters(data)
    npz, split = folder / "dataset.npz", folder / "split.csv"
    save_dataset(npz, data)
    save_split(split, data.files, train, test)
    return npz, split


def write_config(path: Path, overlay: dict) -> Path:
    """Write the config overlay ``overlay`` (as ``--configfile`` takes it) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(overlay), encoding="utf-8")
    return path


def train_argv(npz: Path, split: Path, out: Path, /, *, configfile: Path, seed: int = 0,
               **options) -> list[str]:
    """``python -m lfwcnn train_model`` arguments writing into ``out``, the config in
    ``configfile`` (:func:`tiny_config`); ``options`` override any value (None: leave out)."""
    values = {
        "dataset": npz, "split_csv": split, "seed": seed, "split_seed": 0, "threads": 1,
        "backup": out / "backup", "model_file": out / "model.keras",
        "history": out / "history.csv", "info": out / "train.json", **options,
    }
    return ["train_model", *(f"{name}={value}" for name, value in values.items()
                             if value is not None), "--configfile", str(configfile)]


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def model_weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(path).get_weights()]


def write_small_run(folder: Path, *, side: int = SIDE, **model) -> dict:
    """A tiny untrained paper-shaped model (``model``: its settings) of 3 people x 8 faces,
    with its dataset and quarter split, saved in ``folder`` as a run's steps read them."""
    from lfwcnn.model import build_model

    data = make_dataset(n_classes=3, per_class=8, side=side)
    train, test = split_in_quarters(data)
    save_dataset(folder / "dataset.npz", data)
    save_split(folder / "split.csv", data.files, train, test)
    network = build_model(3, (side, side, 3), model_settings(**model))
    network.save(folder / "model.keras")
    return {"folder": folder, "data": data, "train": train, "test": test, "model": network}
