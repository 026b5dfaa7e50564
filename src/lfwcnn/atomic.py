"""Write outputs all-or-nothing: a failed step must never leave a half-written file behind.

Every output is written to a temporary beside it, ``.<name>.<host>-<pid>.<random>.part``, and
renamed into place at the end; a failure removes it and is one line naming the final file. A
step killed outright (``kill -9``, a lost node) cannot clean up, so the next writer of the same
output removes the temporaries of dead processes on this host; never those of a live process
(two runs at once) or of another host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lfwcnn.errors import LfwcnnError

log = logging.getLogger(__name__)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", socket.gethostname()) or "host"


def _temp_pattern(final: Path) -> re.Pattern:
    return re.compile(
        rf"\.{re.escape(final.name)}\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.\w+\.part(\..*)?"
    )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's live process
    return True


def _remove(path: Path) -> bool:
    """Remove a file or a folder tree, as much of it as can be; whether it is gone."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    return not (path.exists() or path.is_symlink())


def remove_dead_temporaries(final: str | os.PathLike) -> list[Path]:
    """Remove the temporaries beside ``final`` whose writer (on this host) has died.

    Only names of our own form for this very output are considered; a temporary whose
    process still runs, or which was made on another host, stays. Returns what was removed.
    """
    final = Path(final)
    pattern, host, removed = _temp_pattern(final), _host(), []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = pattern.fullmatch(path.name)
        if match and match["host"] == host and not process_alive(int(match["pid"])) \
                and _remove(path):
            removed.append(path)
            log.info("removed %s, left by a step that was killed while writing %s", path, final)
    return removed


def _write_error(final: Path, err: OSError, tmp: Path | None) -> LfwcnnError:
    """One line naming the final file, not its temporary, and the system's reason; and the
    file the system named too when that is neither (a folder it could not make, an input)."""
    culprit = None if err.filename is None else Path(err.filename)
    ours = culprit is None or culprit == final or _temp_pattern(final).fullmatch(culprit.name) \
        or (tmp is not None and tmp in culprit.parents)
    detail = "" if ours else f"{culprit}: "
    return LfwcnnError(f"{final}: cannot write ({detail}{err.strerror or err})")


@contextlib.contextmanager
def scratch_dir(
    final: str | os.PathLike, *, folder: bool = True, suffix: str = ""
) -> Iterator[Path]:
    """A temporary folder (or empty file) beside ``final``, so ``os.replace`` from it is
    atomic, named like every temporary here and removed at the end whatever happens. An
    ``OSError`` (disk full, permission denied) becomes one line naming ``final``."""
    final, tmp = Path(final), None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(final)
        names = {"prefix": f".{final.name}.{_host()}-{os.getpid()}.", "suffix": ".part" + suffix,
                 "dir": final.parent}
        if folder:
            tmp = Path(tempfile.mkdtemp(**names))
        else:
            fd, name = tempfile.mkstemp(**names)
            os.close(fd)
            tmp = Path(name)
            mask = os.umask(0)
            os.umask(mask)
            tmp.chmod(0o666 & ~mask)  # mkstemp makes 0600; outputs should read like any file
        yield tmp
    except OSError as err:
        raise _write_error(final, err, tmp) from None
    finally:
        if tmp is not None:
            _remove(tmp)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only if the block succeeds.

    ``suffix`` keeps extensions that writers insist on (``np.savez`` appends ``.npz`` otherwise).
    """
    with scratch_dir(final, folder=False, suffix=suffix) as tmp:
        yield tmp
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: filled in a temporary sibling, renamed at the end."""
    final = Path(final)
    with scratch_dir(final) as tmp:
        yield tmp
        if final.exists() or final.is_symlink():
            raise LfwcnnError(f"{final} appeared while it was being written")
        os.replace(tmp, final)


def write_text(final: str | os.PathLike, text: str) -> None:
    """Write a small text file (JSON, CSV) atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
