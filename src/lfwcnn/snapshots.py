"""The backup of each finished epoch, and resuming from it only when it is of this very run.

A snapshot is a folder per finished epoch (``epoch-NNNN``: weights with optimizer state, the
history so far, the run's fingerprint) and a pointer file ``latest`` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lfwcnn.atomic import atomic_dir, write_text
from lfwcnn.dataset import Dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import reason
from lfwcnn.ownership import LATEST, SNAPSHOT, BackupDir, prune_snapshots, remove_snapshot
from lfwcnn.run_record import history_csv, read_history_csv
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)

# Settings a resumed run may change: more epochs continue a shorter run; the device only
# decides where the same computation runs (a job killed on a GPU node may resume on a CPU one);
# per_gpu only how many trainings share a GPU, each the same computation as alone.
RESUMABLE = ("epochs", "device", "per_gpu")  # of the train section


class Snapshot(NamedTuple):
    epoch: int  # epochs finished
    weights: Path
    history: list[dict]


def data_fingerprint(*arrays: np.ndarray) -> str:
    """Identify the arrays and split a backup was made from; a backup of other data is stale."""
    digest = hashlib.sha256()  # array by array: no second copy of the images in memory
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def resume_fingerprint(data: Dataset, train_idx: np.ndarray, test_idx: np.ndarray, *, seed: int,
                       model: Settings, train: Settings) -> dict:
    """What a snapshot must match to be resumed: data, split, seed and every setting but
    :data:`RESUMABLE`, so that a key added to the config can never be missed."""
    return {"data": data_fingerprint(data.images, data.labels, train_idx, test_idx),
            "seed": seed, "model": model.as_dict(),
            "train": {k: v for k, v in train.as_dict().items() if k not in RESUMABLE}}


def save_snapshot(backup: BackupDir, model, epoch: int, history: list[dict], fingerprint: dict,
                  *, epochs: int) -> None:
    """Write one epoch's state into its own folder, then point ``latest`` at it, each atomically:
    unlike Keras' BackupAndRestore, a kill never pairs one epoch's weights with another's number.
    ``epochs`` (the target), host and pid are for ``python -m lfwcnn progress``, not resuming."""
    name = f"epoch-{epoch:04d}"
    remove_snapshot(backup, name)  # written by a killed run that had not moved the pointer
    with atomic_dir(backup.path / name) as tmp:
        model.save_weights(tmp / "state.weights.h5")  # weights and optimizer state
        (tmp / "history.csv").write_text(history_csv(history), encoding="utf-8")
        state = {"epoch": epoch, "epochs": epochs, "host": socket.gethostname(),
                 "pid": os.getpid(), "fingerprint": fingerprint}
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    write_text(backup.path / LATEST, name + "\n")
    prune_snapshots(backup, keep=name)


def read_latest(backup_dir: Path) -> tuple[Path, dict, list[dict]] | None:
    """The folder, state and history of the snapshot ``latest`` names; None without one."""
    pointer = backup_dir / LATEST
    if not pointer.is_file():
        return None
    folder = backup_dir / pointer.read_text(encoding="utf-8").strip()
    try:
        if not SNAPSHOT.fullmatch(folder.name) or folder.parent != backup_dir:
            raise ValueError(f"{pointer} names no snapshot of this folder")
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        return folder, state, read_history_csv(folder / "history.csv")
    except (OSError, ValueError, KeyError) as err:
        raise LfwcnnError(f"backup {folder} is unreadable ({err}); delete {backup_dir} to start "
                          "over") from None


def load_snapshot(backup_dir: Path, fingerprint: dict, epochs: int) -> Snapshot | None:
    """The last snapshot, if it was made by this very run (same data, seed and settings)."""
    latest = read_latest(backup_dir)
    if latest is None:
        return None
    folder, state, history = latest
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring backup in %s: it was made with other data or settings", backup_dir)
        return None
    if state["epoch"] > epochs or len(history) != state["epoch"]:
        log.warning("ignoring backup in %s: epoch %s does not fit %d epochs",
                    backup_dir, state["epoch"], epochs)
        return None
    return Snapshot(state["epoch"], folder / "state.weights.h5", history)


def resume(model, backup_dir: Path, fingerprint: dict, epochs: int) -> list[dict]:
    """Load the last snapshot of this run into the compiled ``model``; its history, or []."""
    snapshot = load_snapshot(backup_dir, fingerprint, epochs)
    if snapshot is None:
        return []
    model.optimizer.build(model.trainable_variables)  # so its state can be loaded
    try:
        model.load_weights(snapshot.weights)
    except Exception as err:  # noqa: BLE001 - whatever Keras says, one line
        raise LfwcnnError(f"backup {snapshot.weights} is unreadable ({reason(err)}); "
                          f"delete {backup_dir} to start over") from None
    log.info("resuming from %s after epoch %d", backup_dir, snapshot.epoch)
    return list(snapshot.history)
