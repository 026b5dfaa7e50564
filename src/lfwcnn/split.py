"""The paper's random 0.75/0.25 train/test split, drawn by scikit-learn so scripts agree.

It permutes rows by their number (and, stratified, labels) only, so splitting row indices gives
the partition a script calling ``train_test_split`` on scikit-learn's LFW arrays gets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from lfwcnn.dataset import load_dataset, save_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)


def split_indices(labels: np.ndarray, *, test_fraction: float, seed: int,
                  stratify: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices in the order ``train_test_split`` draws them; ``test_fraction``
    is a share of the rows (the schema keeps it strictly between 0 and 1)."""
    try:
        return tuple(train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                      random_state=seed, stratify=labels if stratify else None))
    except ValueError as err:  # too few rows, or a class too small to stratify
        raise LfwcnnError(f"cannot split {len(labels)} images: {err}") from None


def split_dataset(*, dataset: Path, split_csv: Path, split: Settings, seed: int) -> None:
    """Step: draw the split of ``seed`` and write it as a ``file,subset`` table."""
    check_outputs({"split_csv": split_csv}, {"dataset": dataset})
    data = load_dataset(dataset)
    train, test = split_indices(data.labels, test_fraction=split.test_fraction, seed=seed,
                                stratify=split.stratify)
    save_split(split_csv, data.files, train, test)
    log.info("seed %d: %d train, %d test images", seed, len(train), len(test))

