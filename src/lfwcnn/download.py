"""Fetch and unpack the LFW archives: checksummed, retried, and never half-written.

A download lands in a temporary file beside its destination and is moved into place only after
its checksum matches, so a file at the destination is always a complete, verified archive.
pooch 1.9 was tried for this (issue 14) and cannot hold it: it overwrites a mismatching file,
retries a 4xx, has no total deadline and keeps an HTML page as the archive.
"""

from __future__ import annotations

import contextlib
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
from lfwcnn.config import default_settings
from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings
from lfwcnn.sources import HEAD_BYTES, archive_format, expected_digests, source_url

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


class _TransientError(Exception):
    """An attempt failed in a way another attempt may not; the message is the reason."""


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             md5: str | None = None, retries: int = 3, timeout: float = 60.0,
             deadline: float = 3600.0, backoff: float = 1.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` and verify it; reuse ``dest`` when it already verifies.

    ``retries`` is the number of attempts after the first, spaced ``backoff``, ``2 * backoff``,
    ... seconds apart. Only connection errors, timeouts, cut-off bodies and HTTP 5xx/429 are
    retried: a 4xx will not get better by asking again. ``timeout`` bounds each wait for data;
    ``deadline`` bounds all attempts together, so a server trickling a byte now and then cannot
    keep a download going forever. A body whose first bytes are not a gzip or tar archive (an
    HTML login page) fails at once. The config schema checks the numbers and digests.
    """
    dest = Path(dest)
    if not re.match(r"^https?://", url, flags=re.IGNORECASE):
        raise LfwcnnError(f"not an http(s) URL: {url!r}")
    if not backoff >= 0:
        raise LfwcnnError(f"backoff must be >= 0 seconds, got {backoff}")
    if dest.exists() or dest.is_symlink():
        return _reuse_existing(url, dest, sha256=sha256, md5=md5)
    log.info("downloading %s to %s", url, dest)
    ends, attempts, reason = time.monotonic() + deadline, retries + 1, ""
    with atomic_path(dest) as tmp:
        for attempt in range(1, attempts + 1):
            _check_deadline(url, deadline, ends, received=0)
            try:
                _fetch_once(url, tmp, timeout=timeout, deadline=deadline, ends=ends,
                            label=dest.name if progress else None)
                break
            except _TransientError as err:
                reason = str(err)
            if attempt < attempts:
                delay = min(backoff * 2 ** (attempt - 1), 60.0)  # at most a minute apart
                log.warning("attempt %d/%d for %s failed (%s); retrying in %.1f s",
                            attempt, attempts, url, reason, delay)
                time.sleep(max(0.0, min(delay, ends - time.monotonic())))
        else:
            raise LfwcnnError(f"download of {url} failed after {attempts} attempts: {reason}")
        if sha256 or md5:
            verify_checksum(tmp, sha256=sha256, md5=md5, source=url)
        else:
            log.warning("no checksum given for %s: %s is not verified", url, dest)
    return dest


def _reuse_existing(url: str, dest: Path, *, sha256: str | None, md5: str | None) -> Path:
    """Keep a file already at ``dest`` if it verifies; refuse otherwise, never overwrite it."""
    if not dest.is_file():
        raise LfwcnnError(f"download target {dest} exists and is not a file")
    if sha256 or md5:
        verify_checksum(dest, sha256=sha256, md5=md5, source=url,
                        error="existing file {path} does not match {source}: {mismatch}; "
                              "remove it or choose another destination")
        log.info("reusing existing %s: checksum matches %s", dest, url)
        return dest
    with open(dest, "rb") as existing:
        if archive_format(existing.read(HEAD_BYTES)) is None:
            raise LfwcnnError(f"existing file {dest} is not a .tgz or .tar archive; "
                              f"remove it to download {url} again")
    log.warning("reusing existing %s for %s without a checksum to verify it", dest, url)
    return dest


def _check_deadline(url: str, deadline: float, ends: float, received: int) -> None:
    """Fail once ``ends``, the monotonic time all attempts must have finished by, has passed."""
    if time.monotonic() >= ends:
        raise LfwcnnError(
            f"download of {url} did not finish within its deadline of "
            f"{deadline:g} s (data.download.deadline_s); {received} bytes received"
        )


def _fetch_once(url: str, target: Path, *, timeout: float, deadline: float, ends: float,
                label: str | None) -> None:
    """Stream ``url`` into ``target`` (truncating it); raise ``_TransientError`` if retryable.

    The raw bytes are read undecoded (a .tgz labelled ``Content-Encoding: gzip`` must not get
    unzipped; the count must match ``Content-Length``). Each read returns what has arrived, so
    the deadline is checked within a trickle; a wait for data is cut at ``timeout`` (or what
    was left of the deadline), so a download ends at most that long past its deadline.
    """
    received, total = 0, None
    wait = min(timeout, max(ends - time.monotonic(), 0.001))
    try:
        with requests.get(url, stream=True, timeout=wait) as response:
            status = response.status_code
            if not 200 <= status < 300:
                described = f"HTTP {status} {response.reason or ''}".rstrip()
                if status >= 500 or status == 429:  # server trouble: may pass
                    raise _TransientError(described)
                raise LfwcnnError(f"download of {url} failed: {described}")
            with contextlib.suppress(TypeError, ValueError):  # absent or nonsense: unknown
                total = int(response.headers.get("Content-Length"))
            head = b""
            with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=label,
                                                 disable=label is None) as bar:
                while chunk := response.raw.read1(CHUNK_SIZE, decode_content=False):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                        if len(head) == HEAD_BYTES:
                            _check_archive_head(url, response, head)
                    _check_deadline(url, deadline, ends, received)
            if len(head) < HEAD_BYTES:
                _check_archive_head(url, response, head)
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as err:
        _check_deadline(url, deadline, ends, received)
        raise _TransientError(f"timed out (no data for {wait:g} s)") from err
    except requests.exceptions.SSLError as err:
        raise LfwcnnError(f"download of {url} failed: TLS error: {err}") from err
    except requests.ConnectionError as err:
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))  # the system's words
        reason = match.group(1).strip() if match else type(err).__name__
        raise _TransientError(f"cannot connect: {reason}") from err
    except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
            ConnectionError) as err:
        raise _TransientError(_dropped(received, total)) from err
    except requests.RequestException as err:
        raise LfwcnnError(f"download of {url} failed: {type(err).__name__}: {err}") from err
    if total is not None and received != total:
        raise _TransientError(_dropped(received, total))


def _check_archive_head(url: str, response: requests.Response, head: bytes) -> None:
    """Refuse a body that is not a gzip or tar archive (an HTML login page), from its start;
    not retried: the same URL would send the same page again."""
    if archive_format(head) is None:
        kind = response.headers.get("Content-Type") or "no content type"
        raise LfwcnnError(
            f"download of {url} is not a .tgz or .tar archive: the server sent {kind} "
            f"starting {head[:40]!r}; nothing was kept"
        )


def _dropped(received: int, total: int | None) -> str:
    return f"connection dropped after {received} of {total if total is not None else '?'} bytes"


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """Hex sha256 and md5 of ``path``, in one chunked pass (archives are large)."""
    hashers = {name: hashlib.new(name) for name in ("sha256", "md5")}
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                for hasher in hashers.values():
                    hasher.update(chunk)
    except OSError as err:
        raise LfwcnnError(f"cannot read {path} to compute its checksum: {err.strerror}") from err
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def verify_checksum(path: str | os.PathLike, *, sha256: str | None = None,
                    md5: str | None = None, source: str | None = None,
                    error: str = "checksum mismatch for {source}: {mismatch}") -> dict[str, str]:
    """``path``'s digests; ``error`` naming ``source`` (or ``path``) and the first expected
    digest missed (``expected sha256 x, got y``) unless each given matches."""
    digests = file_digests(path)
    for name, value in (("sha256", sha256), ("md5", md5)):
        if value and digests[name] != value.lower():
            mismatch = f"expected {name} {value.lower()}, got {digests[name]}"
            raise LfwcnnError(error.format(path=path, source=source or path, mismatch=mismatch))
    return digests


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike,
                    limits: Settings | None = None) -> Path:
    """Unpack a .tgz/.tar into ``dest_dir``, capped by ``limits`` (``data.extract``, the
    config's if ``None``); return the one top folder (``lfw/``, ...) if that is all there is.

    LFW archives hold only folders and regular files, so that is all this accepts, checked
    before anything is written; files are created relative to their parent folder without
    following links, so nothing rests on tarfile's extraction filter (bypassable on Python 3.11
    before 3.11.13 and 3.12 before 3.12.11). A refused archive leaves nothing behind.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    limits = limits or default_settings().data.extract
    if not archive.is_file():
        raise LfwcnnError(f"archive {archive} does not exist")
    if dest_dir.is_dir() and not dest_dir.is_symlink() and not any(dest_dir.iterdir()):
        dest_dir.rmdir()  # an empty target, as workflow tools create them
    elif dest_dir.exists() or dest_dir.is_symlink():
        raise LfwcnnError(f"extraction target {dest_dir} already exists; remove it first")
    with atomic_dir(dest_dir) as tmp:
        try:
            _read_members(archive, limits)
            root_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                _read_members(archive, limits, root_fd)
            finally:
                os.close(root_fd)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise LfwcnnError(
                f"cannot extract {archive}: not a readable tar archive ({err})"
            ) from err
        except OSError as err:
            raise LfwcnnError(f"cannot extract {archive} into {dest_dir}: {err}") from err
    log.info("extracted %s to %s", archive, dest_dir)
    entries = [entry for entry in dest_dir.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest_dir


class _CappedStream:
    """The archive's decompressed tar stream, counted as tarfile reads it: what it yields
    counts, not what headers claim. Reading stops past the caps' total plus room for headers; a
    single read above ``max_member_bytes`` (tarfile reads a pax or GNU long-name header's data
    in one piece) is refused before it is made. Seeks go forward only, by reading."""

    def __init__(self, archive: Path, limits: Settings) -> None:
        self.archive, self.limits, self.position = archive, limits, 0
        # room for headers and padding: a few blocks per member on top of the members' bytes
        self.budget = limits.max_total_bytes + limits.max_members * 4 * tarfile.BLOCKSIZE
        self._file = open(archive, "rb")  # noqa: SIM115 - closed by close
        compressed = archive_format(self._file.read(HEAD_BYTES)) == "gzip"
        self._file.seek(0)
        self._raw = gzip.GzipFile(fileobj=self._file, mode="rb") if compressed else self._file

    def close(self) -> None:
        self._raw.close()
        self._file.close()

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.limits.max_member_bytes + tarfile.BLOCKSIZE:
            raise LfwcnnError(
                f"archive {self.archive}: a header at byte {self.position} of its unpacked "
                f"stream declares more than {self.limits.max_member_bytes} bytes "
                "(data.extract.max_member_bytes)"
            )
        data = self._raw.read(size)
        self.position += len(data)
        if self.position > self.budget:
            raise LfwcnnError(
                f"archive {self.archive} unpacks to more than {self.budget} bytes with its "
                f"headers (data.extract.max_total_bytes is {self.limits.max_total_bytes})"
            )
        return data

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self.position + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.position:
            raise tarfile.ReadError(f"cannot seek back to byte {target} of a compressed stream")
        while self.position < target and self.read(min(CHUNK_SIZE, target - self.position)):
            pass
        return self.position


def _read_members(archive: Path, limits: Settings, root_fd: int | None = None) -> None:
    """One pass over the members, read lazily so nothing piles up before the caps apply.
    Without ``root_fd`` (the first pass) refuse the archive for any member before a byte is
    written; with it, write below it, counting what really comes out. Every per-member check
    runs in both passes: the writer never relies on the first alone."""
    count, total = 0, 0
    kinds: dict[tuple[str, ...], str] = {}
    with (contextlib.closing(_CappedStream(archive, limits)) as stream,
          tarfile.open(fileobj=stream, mode="r:") as tar):
        while (member := tar.next()) is not None:
            tar.members.clear()  # tarfile keeps every header; a pass needs only the current one
            count += 1
            parts = _check_member(archive, member)
            _check_caps(archive, member, count=count, total=total + member.size, limits=limits)
            if root_fd is None:
                total += member.size
                _check_layout(archive, member, parts, kinds)
            elif member.isdir():
                os.close(_open_folder(root_fd, parts))
            else:
                total += _write_file(archive, tar, member, root_fd, parts, total, limits)
    if count == 0:
        raise LfwcnnError(f"archive {archive} is empty")


def _check_member(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """Refuse anything but a folder or regular file at a relative path; return its parts.
    Links are refused whatever they point at: LFW archives hold none, and refusing them needs
    no reasoning about where a chain of links resolves."""
    name, shown = member.name, _shown(member.name)
    if member.issym() or member.islnk():
        raise LfwcnnError(
            f"archive {archive} has a {'symbolic' if member.issym() else 'hard'} link, which LFW "
            f"archives never hold: {shown} -> {_shown(member.linkname)}"
        )
    if not (member.isdir() or (member.isreg() and not member.issparse())):
        raise LfwcnnError(f"archive {archive} has a member that is not a file or folder: {shown}")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise LfwcnnError(f"archive {archive} has a member with an absolute path: {shown}")
    if ".." in re.split(r"[/\\]", name):
        raise LfwcnnError(f"archive {archive} has a member outside its folder: {shown}")
    if "\0" in name:
        raise LfwcnnError(f"archive {archive} has a member name with a NUL byte: {shown}")
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _check_caps(
    archive: Path, member: tarfile.TarInfo, *, count: int, total: int, limits: Settings
) -> None:
    """Refuse a member past the member count, or whose declared size passes a byte cap."""
    if count > limits.max_members:
        raise LfwcnnError(
            f"archive {archive} has more than {limits.max_members} members "
            f"(data.extract.max_members), refused at {_shown(member.name)}"
        )
    _check_bytes(archive, member, member.size, total, limits)


def _check_bytes(archive: Path, member: tarfile.TarInfo, size: int, total: int,
                 limits: Settings) -> None:
    """Refuse a member whose bytes (declared, or written so far) or the archive's total so far
    pass a cap."""
    if size > limits.max_member_bytes:
        raise LfwcnnError(f"archive {archive}: member {_shown(member.name)} holds more than "
                          f"{limits.max_member_bytes} bytes (data.extract.max_member_bytes)")
    if total > limits.max_total_bytes:
        raise LfwcnnError(f"archive {archive} unpacks to more than {limits.max_total_bytes} bytes"
                          f" (data.extract.max_total_bytes), refused at {_shown(member.name)}")


def _check_layout(archive: Path, member: tarfile.TarInfo, parts: tuple[str, ...],
                  kinds: dict) -> None:
    """Refuse a file that appears twice, or a path that is both a file and a folder; ``kinds``
    maps every path seen so far (members and their parents) to "file" or "folder"."""
    for depth in range(1, len(parts)):
        if kinds.setdefault(parts[:depth], "folder") == "file":
            raise LfwcnnError(
                f"archive {archive} has a member inside a file: {_shown(member.name)}"
            )
    if not parts:
        return  # the archive's own root folder ("./")
    kind = "folder" if member.isdir() else "file"
    previous = kinds.get(parts)
    kinds[parts] = kind
    if previous == "file" or (previous is not None and kind == "file"):
        raise LfwcnnError(f"archive {archive} has a member twice: {_shown(member.name)}")


def _open_folder(root_fd: int, parts: Sequence[str]) -> int:
    """Open (creating as needed) the folder ``parts`` below ``root_fd``, never through a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, root_fd: int,
                parts: tuple[str, ...], written: int, limits: Settings) -> int:
    """Write one regular file as a new file (never through a link); return its byte count."""
    if not parts:
        raise LfwcnnError(f"archive {archive} has a file without a name: {_shown(member.name)}")
    parent = _open_folder(root_fd, parts[:-1])
    try:
        fd = os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=parent
        )
    finally:
        os.close(parent)
    size = 0
    with os.fdopen(fd, "wb") as out, tar.extractfile(member) as data:
        while chunk := data.read(CHUNK_SIZE):
            size += len(chunk)
            _check_bytes(archive, member, size, written + size, limits)
            out.write(chunk)
    return size


def _shown(name: str) -> str:
    """A member name as one printable line (quoted when it holds control characters)."""
    return name if name.isprintable() else repr(name)


def download_lfw(*, archive: Path, data: Settings) -> None:
    """Step: download the source's archive (a URL, or the variant's mirror), verified."""
    sha256, md5 = expected_digests(data.variant, data.source, data.sha256, data.md5)
    settings = data.download
    download(source_url(data.variant, data.source), archive, sha256=sha256, md5=md5,
             retries=settings.retries, timeout=settings.timeout_s, deadline=settings.deadline_s)
