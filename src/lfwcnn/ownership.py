"""What a step may replace or remove: its own outputs and what it made, never a user's files.

Checked before any work starts, each refusal one line: an output is not an input, another
output or a folder (:func:`check_outputs`). The training backup folder is removed after
success, so it may not hold or lie in an input or output, nor be a non-empty folder without
the step's marker file (:func:`claim_backup_dir` marks what it creates or adopts); inside it
only the step's own snapshots, pointer and temporaries are ever removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lfwcnn.errors import LfwcnnError

log = logging.getLogger(__name__)

MARKER = ".lfwcnn-backup"
OWNER = "lfwcnn.train"
LATEST = "latest"  # in the backup folder: names the snapshot of the last finished epoch
SNAPSHOT = re.compile(r"epoch-\d{4,}")
# what lfwcnn.atomic leaves of a killed write of a snapshot or of the pointer
TEMPORARY = re.compile(r"\.(epoch-\d{4,}|latest)\..+\.part")

Paths = Mapping[str, str | os.PathLike | None]


def resolved(path: str | os.PathLike) -> Path:
    """The absolute path with every symbolic link followed, existing or not."""
    return Path(os.path.abspath(path)).resolve()


def check_outputs(outputs: Paths, inputs: Paths | None = None) -> None:
    """Refuse an output that would replace an input or another output, or that is a folder.
    Keys are the step's parameter names (``model_file``); ``None`` values are skipped."""
    seen: dict[Path, str] = {}
    for label, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(resolved(path), label)
    for label, path in outputs.items():
        if path is None:
            continue
        target = resolved(path)
        if target.is_dir():
            raise LfwcnnError(f"{label} {path} is a folder; an output must be a file path")
        if target in seen:
            raise LfwcnnError(f"{label} {path} is also {seen[target]}; writing it would "
                              "replace that file")
        seen[target] = label


@dataclass(frozen=True)
class BackupDir:
    path: Path  # resolved
    created: bool  # made by the step (so removed with it), or an empty folder it adopted


def check_backup_dir(path: str | os.PathLike, others: Paths | None = None) -> None:
    """Refuse a backup folder whose removal would take anything the step did not make;
    ``others`` (the step's inputs and outputs by label) may not be, lie in or hold it."""
    folder = resolved(path)
    for label, other in (others or {}).items():
        if other is None:
            continue
        target = resolved(other)
        if target == folder or folder in target.parents:
            raise LfwcnnError(f"backup {path} holds {label} {other}; the backup folder "
                              "is removed after training, so give it a folder of its own")
        if target in folder.parents:
            raise LfwcnnError(f"backup {path} lies inside {label} {other}")
    if folder.exists() and not folder.is_dir():
        raise LfwcnnError(f"backup {path} exists and is not a folder")
    if folder.is_dir() and not (folder / MARKER).is_file() and any(folder.iterdir()):
        raise LfwcnnError(f"backup {path} holds files that {OWNER} did not make (it has "
                          f"no {MARKER}) and is removed after training: move them away or give "
                          "a new or empty folder")


def claim_backup_dir(path: str | os.PathLike) -> BackupDir:
    """Check the folder, then create or adopt it and mark it as this step's own."""
    check_backup_dir(path)
    folder = resolved(path)
    marker = folder / MARKER
    if marker.is_file():
        return BackupDir(folder, _created(marker))
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"owner": OWNER, "created": created}) + "\n", encoding="utf-8")
    return BackupDir(folder, created)


def _created(marker: Path) -> bool:
    """Whether the step made the folder; unreadable (killed mid-write) counts as adopted."""
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("created") is True
    except (OSError, ValueError, AttributeError):
        return False


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)


def remove_snapshot(backup: BackupDir, name: str) -> None:
    """Remove one of the step's snapshot folders, if it is there."""
    if SNAPSHOT.fullmatch(name):
        _remove(backup.path / name)


def prune_snapshots(backup: BackupDir, keep: str | None = None) -> None:
    """Remove the step's snapshot folders other than ``keep``; nothing else is touched."""
    for entry in backup.path.iterdir():
        if entry.name != keep:
            remove_snapshot(backup, entry.name)


def release_backup_dir(backup: BackupDir) -> None:
    """After success: remove what the step made in the folder, and the folder if it made it
    (a file someone else put there meanwhile stays, and so does the folder around it)."""
    if not (backup.path / MARKER).is_file():
        return
    prune_snapshots(backup)
    for entry in backup.path.iterdir():
        if entry.name == LATEST or TEMPORARY.fullmatch(entry.name):
            _remove(entry)
    (backup.path / MARKER).unlink()
    if backup.created:
        try:
            backup.path.rmdir()
        except OSError:
            log.warning("kept %s: it holds files that %s did not make", backup.path, OWNER)


def listed(name: str, paths: Sequence[str | os.PathLike] | None) -> dict[str, str | os.PathLike]:
    """A parameter holding several paths, as :func:`check_outputs` takes them: one label each."""
    return {f"{name} #{k + 1}": path for k, path in enumerate(paths or [])}
