"""Write outputs all-or-nothing: a failed step must never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only if the block succeeds.

    The temporary lives in the same folder so the final ``os.replace`` is atomic. ``suffix``
    keeps extensions that writers insist on (``np.savez`` appends ``.npz`` otherwise).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs should read like any file
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: filled in a temporary sibling, renamed at the end."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield tmp_path
        if final.exists() or final.is_symlink():
            raise FileExistsError(f"{final} appeared while it was being written")
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(final: str | os.PathLike, text: str) -> None:
    """Write a small text file (JSON, CSV) atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
