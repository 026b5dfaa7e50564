"""The prepared dataset on disk: one ``.npz`` of plain arrays plus a split CSV, read and
checked here by every later step, so a file that does not fit is caught with the file named."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from lfwcnn.atomic import atomic_path, write_text
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import load_npz
from lfwcnn.tables import read_rows, table_text

ARRAYS = ("images", "labels", "class_names", "files")


@dataclass(frozen=True)
class Dataset:
    """Faces as uint8 (N, H, W, 3), integer labels indexing ``class_names``, source file per face
    (``Person/Person_0001.jpg``), in scikit-learn's ``fetch_lfw_people`` order."""

    images: np.ndarray
    labels: np.ndarray
    class_names: np.ndarray
    files: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def save_dataset(path: str | os.PathLike, data: Dataset) -> None:
    """Write the arrays uncompressed (fast to load; DVC compresses nothing anyway)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{name: getattr(data, name) for name in ARRAYS})


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Load and check a prepared ``.npz``; a wrong shape or label is a one-line error."""
    data = Dataset(**load_npz(path, ARRAYS, what="prepared dataset"))
    images, labels = data.images, data.labels
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise LfwcnnError(f"{path}: images must be uint8 (N, H, W, 3), "
                          f"got {images.dtype} {images.shape}")
    n = len(images)
    if labels.shape != (n,) or data.files.shape != (n,):
        raise LfwcnnError(f"{path}: {n} images but labels {labels.shape} "
                          f"and files {data.files.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise LfwcnnError(f"{path}: labels must be integers, got {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= data.n_classes):
        raise LfwcnnError(f"{path}: labels must lie in 0..{data.n_classes - 1}, "
                          f"found {labels.min()}..{labels.max()}")
    return data


def save_split(path: str | os.PathLike, files: np.ndarray, train: np.ndarray, test: np.ndarray):
    """Write ``file,subset`` rows: train rows first, then test, each in the drawn order."""
    rows = [(files[i], "train") for i in train] + [(files[i], "test") for i in test]
    write_text(path, table_text(("file", "subset"), rows))


def load_split(path: str | os.PathLike, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, test) indices into ``data`` in the order the split file lists them."""
    index = {str(name): i for i, name in enumerate(data.files)}
    subsets: dict[str, list[int]] = {"train": [], "test": []}
    for line, row in enumerate(read_rows(path, "split", ("file", "subset")), start=2):
        if row["file"] not in index:
            raise LfwcnnError(f"{path}:{line}: {row['file']} is not in the dataset")
        if row["subset"] not in subsets:
            raise LfwcnnError(f"{path}:{line}: unknown subset {row['subset']!r}")
        subsets[row["subset"]].append(index[row["file"]])
    for name, indices in subsets.items():
        if not indices:
            raise LfwcnnError(f"{path}: the {name} subset is empty")
    return np.array(subsets["train"]), np.array(subsets["test"])
