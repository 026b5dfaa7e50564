"""The backup of each finished epoch, and resuming from it only when it is of this very run.

A snapshot is one folder per finished epoch (``epoch-NNNN``: the weights with the optimizer
state, the history so far, and the run's fingerprint) and a pointer file ``latest`` naming
it. What the step may remove in the backup folder is decided by :mod:`lfwcnn.ownership`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfwcnn.atomic import atomic_dir, write_text
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import reason
from lfwcnn.ownership import LATEST, SNAPSHOT, BackupDir, prune_snapshots, remove_snapshot
from lfwcnn.run_record import history_csv, read_history_csv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    epoch: int  # epochs finished
    weights: Path
    history: list[dict]


def data_fingerprint(*arrays: np.ndarray) -> str:
    """Identify the arrays and split a backup was made from; a backup of other data is stale."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_snapshot(backup: BackupDir, model, epoch: int, history: list[dict], fingerprint: dict):
    """Write one finished epoch's state into its own folder, then point ``latest`` at it.

    Folder and pointer are each replaced atomically, so a kill at any instant leaves the
    previous complete snapshot or the new one, never a weights file of one epoch beside the
    epoch number of another (the gap Keras' BackupAndRestore leaves between its two files).
    Only the step's own snapshot folders are ever removed (:mod:`lfwcnn.ownership`).
    """
    name = f"epoch-{epoch:04d}"
    remove_snapshot(backup, name)  # written by a killed run that had not moved the pointer
    with atomic_dir(backup.path / name) as tmp:
        model.save_weights(tmp / "state.weights.h5")  # weights and optimizer state
        (tmp / "history.csv").write_text(history_csv(history), encoding="utf-8")
        state = {"epoch": epoch, "fingerprint": fingerprint}
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    write_text(backup.path / LATEST, name + "\n")
    prune_snapshots(backup, keep=name)


def load_snapshot(backup_dir: Path, fingerprint: dict, epochs: int) -> Snapshot | None:
    """The last snapshot, if it was made by this very run (same data, seed and settings)."""
    pointer = backup_dir / LATEST
    if not pointer.is_file():
        return None
    folder = backup_dir / pointer.read_text(encoding="utf-8").strip()
    try:
        if not SNAPSHOT.fullmatch(folder.name) or folder.parent != backup_dir:
            raise ValueError(f"{pointer} names no snapshot of this folder")
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        history = read_history_csv(folder / "history.csv")
    except (OSError, ValueError, KeyError) as err:
        raise LfwcnnError(
            f"backup {folder} is unreadable ({err}); delete {backup_dir} to start over"
        ) from None
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
