"""Fetch and unpack the LFW archives: checksummed, retried, and never half-written.

A download lands in a temporary file beside its destination and is moved into place only after
its checksum matches, so a file at the destination is always a complete, verified archive.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import re
import tarfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from lfwcnn.atomic import atomic_dir, atomic_path
from lfwcnn.cli import run
from lfwcnn.errors import LfwcnnError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
MAX_BACKOFF_S = 60.0
_HEX_LENGTHS = {"sha256": 64, "md5": 32}


class _TransientError(Exception):
    """An attempt failed in a way another attempt may not; the message is the reason."""


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and verify it; reuse ``dest`` when it already verifies.

    ``retries`` is the number of attempts after the first (so ``retries + 1`` in all), spaced
    ``backoff``, ``2 * backoff``, ... seconds apart. Only connection errors, timeouts, cut-off
    bodies and HTTP 5xx/429 are retried: a 4xx will not get better by asking again.
    """
    dest = Path(dest)
    _check_download_args(
        url, sha256=sha256, md5=md5, retries=retries, timeout=timeout, backoff=backoff
    )
    if dest.exists() or dest.is_symlink():
        return _reuse_existing(url, dest, sha256=sha256, md5=md5)
    log.info("downloading %s to %s", url, dest)
    with atomic_path(dest) as tmp:
        _fetch_with_retries(
            url,
            tmp,
            attempts=retries + 1,
            timeout=timeout,
            backoff=backoff,
            label=dest.name if progress else None,
        )
        if sha256 is None and md5 is None:
            log.warning("no checksum given for %s: %s is not verified", url, dest)
        else:
            mismatch = checksum_mismatch(tmp, sha256=sha256, md5=md5)
            if mismatch:
                raise LfwcnnError(f"checksum mismatch for {url}: {mismatch}")
    return dest


def _check_download_args(
    url: str, *, sha256: str | None, md5: str | None, retries: int, timeout: float, backoff: float
) -> None:
    """Reject bad arguments before touching the network, naming the value at fault."""
    if not re.match(r"^https?://", url, flags=re.IGNORECASE):
        raise LfwcnnError(f"not an http(s) URL: {url!r}")
    if retries < 0:
        raise LfwcnnError(f"retries must be >= 0, got {retries}")
    if not backoff >= 0:
        raise LfwcnnError(f"backoff must be >= 0 seconds, got {backoff}")
    if not timeout > 0:
        raise LfwcnnError(f"timeout must be > 0 seconds, got {timeout}")
    for name, digest in (("sha256", sha256), ("md5", md5)):
        if digest is not None and not re.fullmatch(f"[0-9a-fA-F]{{{_HEX_LENGTHS[name]}}}", digest):
            raise LfwcnnError(f"{name} must be {_HEX_LENGTHS[name]} hex digits, got {digest!r}")


def _reuse_existing(url: str, dest: Path, *, sha256: str | None, md5: str | None) -> Path:
    """Keep a file already at ``dest`` if it verifies; refuse otherwise, never overwrite it."""
    if not dest.is_file():
        raise LfwcnnError(f"download target {dest} exists and is not a file")
    if sha256 is None and md5 is None:
        log.warning("reusing existing %s for %s without a checksum to verify it", dest, url)
        return dest
    mismatch = checksum_mismatch(dest, sha256=sha256, md5=md5)
    if mismatch:
        raise LfwcnnError(
            f"existing file {dest} does not match {url}: {mismatch}; "
            "remove it or choose another destination"
        )
    log.info("reusing existing %s: checksum matches %s", dest, url)
    return dest


def _fetch_with_retries(
    url: str, target: Path, *, attempts: int, timeout: float, backoff: float, label: str | None
) -> None:
    """Run up to ``attempts`` fetches with exponential backoff; one error line if all fail."""
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, target, timeout=timeout, label=label)
            return
        except _TransientError as err:
            reason = str(err)
        if attempt < attempts:
            delay = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
            log.warning(
                "attempt %d/%d for %s failed (%s); retrying in %.1f s",
                attempt,
                attempts,
                url,
                reason,
                delay,
            )
            time.sleep(delay)
    raise LfwcnnError(f"download of {url} failed after {attempts} attempts: {reason}")


def _fetch_once(url: str, target: Path, *, timeout: float, label: str | None) -> None:
    """Stream ``url`` into ``target`` (truncating it); raise ``_TransientError`` if retryable.

    ``label`` names the progress bar; ``None`` hides it.

    The raw bytes are read undecoded: a server that labels a .tgz ``Content-Encoding: gzip``
    must not get it silently unzipped, and the byte count must match ``Content-Length``.
    """
    received, total = 0, None
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            _check_status(url, response)
            total = _content_length(response)
            with open(target, "wb") as out, _progress_bar(total, label) as bar:
                for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as err:
        raise _TransientError(f"timed out (no data for {timeout:g} s)") from err
    except requests.exceptions.SSLError as err:
        raise LfwcnnError(f"download of {url} failed: TLS error: {err}") from err
    except requests.ConnectionError as err:
        raise _TransientError(f"cannot connect: {_os_reason(err)}") from err
    except (
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        ConnectionError,
    ) as err:
        raise _TransientError(_dropped(received, total)) from err
    except requests.RequestException as err:
        raise LfwcnnError(f"download of {url} failed: {type(err).__name__}: {err}") from err
    if total is not None and received != total:
        raise _TransientError(_dropped(received, total))


def _dropped(received: int, total: int | None) -> str:
    """The reason for a body cut short, with how far it got."""
    return f"connection dropped after {received} of {total if total is not None else '?'} bytes"


def _os_reason(err: Exception) -> str:
    """The operating system's words (``Connection refused``) buried in a requests error."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
    return match.group(1).strip() if match else type(err).__name__


def _check_status(url: str, response: requests.Response) -> None:
    """Retry server trouble (5xx, 429); fail at once on anything else that is not a success."""
    status = response.status_code
    if 200 <= status < 300:
        return
    described = f"HTTP {status} {response.reason or ''}".rstrip()
    if status >= 500 or status == 429:
        raise _TransientError(described)
    raise LfwcnnError(f"download of {url} failed: {described}")


def _content_length(response: requests.Response) -> int | None:
    """The announced size, or ``None`` when the server does not say (or says nonsense)."""
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _progress_bar(total: int | None, label: str | None) -> tqdm:
    """A byte-count bar on stderr labelled with the file name; ``label=None`` turns it off."""
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=label is None,
    )


def file_digests(
    path: str | os.PathLike, algorithms: Sequence[str] = ("sha256", "md5")
) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm, computed in one chunked pass.

    One pass matters: LFW archives are hundreds of megabytes and are checked with two digests.
    """
    hashers = {name: hashlib.new(name) for name in algorithms}
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                for hasher in hashers.values():
                    hasher.update(chunk)
    except OSError as err:
        raise LfwcnnError(f"cannot read {path} to compute its checksum: {err.strerror}") from err
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def compare_digests(
    actual: dict[str, str], *, sha256: str | None = None, md5: str | None = None
) -> str | None:
    """Describe the first expected digest that ``actual`` misses (``expected sha256 x, got y``)."""
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    for name, value in expected.items():
        if actual[name] != value:
            return f"expected {name} {value}, got {actual[name]}"
    return None


def checksum_mismatch(
    path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None
) -> str | None:
    """Read ``path`` once and describe the first digest that differs, if any."""
    if not (sha256 or md5):
        raise ValueError("checksum_mismatch needs sha256 or md5")
    return compare_digests(file_digests(path), sha256=sha256, md5=md5)


def verify_checksum(
    path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None
) -> None:
    """Raise ``LfwcnnError`` naming ``path`` unless it matches every digest given."""
    mismatch = checksum_mismatch(path, sha256=sha256, md5=md5)
    if mismatch:
        raise LfwcnnError(f"checksum mismatch for {path}: {mismatch}")


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a .tgz/.tar into ``dest_dir``; return the folder that holds the person folders.

    Every member is checked before anything is written (no absolute paths, no ``..``, no links
    leading out), and the tree is filled in a temporary sibling, so a refused or corrupt
    archive leaves nothing behind. LFW archives wrap everything in one top folder (``lfw/``,
    ``lfw_funneled/``, ...): when there is exactly one, that inner folder is returned.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise LfwcnnError(f"archive {archive} does not exist")
    _clear_empty_target(dest_dir)
    with atomic_dir(dest_dir) as tmp:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                if not members:
                    raise LfwcnnError(f"archive {archive} is empty")
                for member in members:
                    _check_member(archive, member)
                tar.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as err:
            raise LfwcnnError(f"archive {archive} has an unsafe member: {err}") from err
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise LfwcnnError(
                f"cannot extract {archive}: not a readable tar archive ({err})"
            ) from err
        except OSError as err:
            raise LfwcnnError(f"cannot extract {archive} into {dest_dir}: {err}") from err
    log.info("extracted %s to %s", archive, dest_dir)
    return _single_top_folder(dest_dir)


def _clear_empty_target(dest_dir: Path) -> None:
    """Accept an empty target folder (workflow tools create them); refuse to overwrite others."""
    if dest_dir.is_dir() and not dest_dir.is_symlink() and not any(dest_dir.iterdir()):
        dest_dir.rmdir()
    elif dest_dir.exists() or dest_dir.is_symlink():
        raise LfwcnnError(f"extraction target {dest_dir} already exists; remove it first")


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member that would land, or link, outside the extraction folder."""
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise LfwcnnError(f"archive {archive} has a member with an absolute path: {name}")
    if _escapes(name):
        raise LfwcnnError(f"archive {archive} has a member outside its folder: {name}")
    if member.issym():
        target = member.linkname
        if os.path.isabs(target) or _escapes(os.path.join(os.path.dirname(name), target)):
            raise LfwcnnError(
                f"archive {archive} has a link pointing outside its folder: {name} -> {target}"
            )
    elif member.islnk():
        if os.path.isabs(member.linkname) or _escapes(member.linkname):
            raise LfwcnnError(
                f"archive {archive} has a link pointing outside its folder: "
                f"{name} -> {member.linkname}"
            )
    elif not (member.isfile() or member.isdir()):
        raise LfwcnnError(f"archive {archive} has a member that is not a file or folder: {name}")


def _escapes(relative: str) -> bool:
    """Whether a relative archive path climbs above the archive root once normalised."""
    normalised = os.path.normpath(relative.replace("\\", "/"))
    return normalised == ".." or normalised.startswith("../")


def _single_top_folder(dest_dir: Path) -> Path:
    """The one top-level folder if that is all there is (ignoring dot-files), else ``dest_dir``."""
    entries = [entry for entry in dest_dir.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest_dir


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m lfwcnn.download --url URL --out PATH [--sha256 X] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m lfwcnn.download",
        description="Download a file, verify its checksum, and move it into place.",
    )
    parser.add_argument("--url", required=True, help="http(s) URL to fetch")
    parser.add_argument("--out", required=True, type=Path, help="destination file")
    parser.add_argument("--sha256", help="expected SHA-256 hex digest")
    parser.add_argument("--md5", help="expected MD5 hex digest")
    parser.add_argument(
        "--retries", type=int, default=3, help="attempts after the first (default 3)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per connect/read (default 60)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    path = download(
        args.url,
        args.out,
        sha256=args.sha256,
        md5=args.md5,
        retries=args.retries,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    log.info("ready: %s", path)


if __name__ == "__main__":
    raise SystemExit(run(main))
