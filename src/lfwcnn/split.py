"""The paper's random 0.75/0.25 train/test split, drawn by scikit-learn so scripts agree.

``train_test_split`` permutes rows using only the number of rows (and, when stratified, the
labels), so splitting the row indices of the prepared arrays gives exactly the partition a
script calling ``train_test_split(X, y, test_size, random_state=seed)`` on scikit-learn's
LFW arrays would get; on the 2370 faces of 34 people that is 1777 train and 593 test.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from lfwcnn.cli import run
from lfwcnn.dataset import load_dataset, save_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs

log = logging.getLogger(__name__)


def check_test_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise LfwcnnError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")


def split_indices(
    labels: np.ndarray, *, test_fraction: float, seed: int, stratify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, test) row indices in the order ``train_test_split`` draws them."""
    check_test_fraction(test_fraction)
    if seed < 0:
        raise LfwcnnError(f"split seed must be non-negative, got {seed}")
    try:
        train, test = train_test_split(
            np.arange(len(labels)),
            test_size=test_fraction,
            random_state=seed,
            stratify=labels if stratify else None,
        )
    except ValueError as err:  # too few rows, or a class too small to stratify
        raise LfwcnnError(f"cannot split {len(labels)} images: {err}") from None
    return train, test


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset.npz")
    parser.add_argument("--out", required=True, help="split CSV to write (file,subset)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--stratify", action="store_true")
    args = parser.parse_args(argv)
    check_test_fraction(args.test_fraction)  # before the (large) dataset is read
    check_outputs({"--out": args.out}, {"--dataset": args.dataset})
    data = load_dataset(args.dataset)
    train, test = split_indices(
        data.labels, test_fraction=args.test_fraction, seed=args.seed, stratify=args.stratify
    )
    save_split(args.out, data.files, train, test)
    log.info("seed %d: %d train, %d test images", args.seed, len(train), len(test))


if __name__ == "__main__":
    raise SystemExit(run(main))
