"""What a training run leaves to be read: its per-epoch history (history.csv, also part of
each snapshot, so a resumed run's history holds every epoch) and train.json."""

from __future__ import annotations

import csv
import platform
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lfwcnn.tables import table_text

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds")
# Keras names the per-epoch metrics on validation_data "val_*"; here that data is the test set.
KERAS_LOGS = {"loss": "loss", "accuracy": "accuracy",
              "test_loss": "val_loss", "test_accuracy": "val_accuracy"}


def history_row(epoch: int, logs: Mapping, seconds: float) -> dict:
    """One row of the history from the logs Keras hands an epoch's end."""
    return {"epoch": epoch, "seconds": round(seconds, 4),
            **{column: float(logs[key]) for column, key in KERAS_LOGS.items()}}


def history_csv(rows: list[dict]) -> str:
    return table_text(HISTORY_COLUMNS, [[row[key] for key in HISTORY_COLUMNS] for row in rows])


def read_history_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: int(value) if key == "epoch" else float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


def timings(history: list[dict], initial_epoch: int, seconds: float, cpu_seconds: float) -> dict:
    """Wall and CPU time of this process; per-epoch seconds count its own epochs only."""
    timed = [row["seconds"] for row in history[initial_epoch:]]
    return {
        "resumed_from_epoch": initial_epoch,
        "seconds": round(seconds, 3),
        "seconds_per_epoch": round(float(np.mean(timed)), 4) if timed else None,
        "cpu_seconds": round(cpu_seconds, 3),  # all threads; beside "seconds" it shows load
        "final": {key: history[-1][key] for key in KERAS_LOGS},
    }


def time_left(history: list[dict], epochs: int) -> float:
    """Seconds the epochs still to run should take at the mean pace of those in ``history``
    (a resumed run's earlier epochs included: they are part of its history)."""
    if not history:
        return float("nan")
    return float(np.mean([row["seconds"] for row in history])) * max(epochs - len(history), 0)


def duration(seconds: float) -> str:
    """``47 s``, ``5 min 43 s``, ``2 h 05 min``: read at a glance in a log or a table."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def software() -> dict:
    """The versions that decide the numbers, beside the device they ran on."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}
