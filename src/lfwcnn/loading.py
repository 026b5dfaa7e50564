"""Read the package's files with one line naming the file on any failure, where a damaged file
makes NumPy, zipfile, h5py or Keras raise almost any exception, often on many lines."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn.errors import LfwcnnError
from lfwcnn.run_record import KERAS_LOGS


def reason(err: BaseException) -> str:
    """The library's message on one line (OSError: its strerror), type name when empty."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    text = " ".join(text.split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."  # 300 characters at most


def _check_zip(path: str | os.PathLike, what: str) -> None:
    """Both formats are zip archives: say so plainly for anything else (an HTML page, an empty
    or truncated download), where NumPy would talk of pickles and Keras of a missing file."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    if start not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip's first member, or an empty zip
        problem = "not a zip archive" if start else "empty file"
        raise LfwcnnError(f"{path}: not a {what} ({problem})")


def load_npz(
    path: str | os.PathLike, names: Sequence[str] | None = None, *, what: str = ".npz file"
) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or only ``names``, all required), read into memory; pickled
    objects stay refused: an ``.npz`` is data, never code."""
    try:
        _check_zip(path, what)
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in names or () if name not in npz.files]
            if missing:
                raise LfwcnnError(f"{path}: not a {what}, arrays missing: {missing}")
            return {name: npz[name] for name in (names or npz.files)}
    except LfwcnnError:
        raise
    except Exception as err:  # a damaged file raises any type: name the file
        raise LfwcnnError(f"{path}: cannot read as {what} ({reason(err)})") from None


def load_keras_model(path: str | os.PathLike):
    """A ``.keras`` model, loaded in Keras's safe mode (no Lambda layers: no code runs)."""
    import keras

    if not Path(path).is_file():
        raise LfwcnnError(f"{path}: no such model file")
    try:
        _check_zip(path, ".keras model")
        return keras.models.load_model(path)
    except LfwcnnError:
        raise
    except Exception as err:  # Keras refuses a file with any type: name it
        raise LfwcnnError(f"{path}: Keras cannot load this model ({reason(err)})") from None


def read_json(path: str | os.PathLike) -> dict:
    """A JSON record written by a step: an object, or one line naming the file."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read ({err})") from None
    if not isinstance(record, dict):
        raise LfwcnnError(f"{path}: not a JSON object but a {type(record).__name__}")
    return record


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A training history CSV, checked for the columns the curves and the report need."""
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read the training history ({err})") from None
    missing = {"epoch", *KERAS_LOGS} - set(history.columns)  # all but "seconds"
    if missing:
        raise LfwcnnError(f"{path}: history lacks the columns {sorted(missing)}")
    if history.empty:
        raise LfwcnnError(f"{path}: the training history has no epochs")
    return history
