"""Fetch and unpack the LFW archives: checksummed, retried, and never half-written.

A download lands in a temporary file beside its destination and is moved into place only after
its checksum matches, so a file at the destination is always a complete, verified archive.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from lfwcnn.atomic import atomic_dir, atomic_path
from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings
from lfwcnn.sources import HEAD_BYTES, archive_format, expected_digests, source_url

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
    deadline: float = 3600.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and verify it; reuse ``dest`` when it already verifies.

    ``retries`` is the number of attempts after the first (so ``retries + 1`` in all), spaced
    ``backoff``, ``2 * backoff``, ... seconds apart. Only connection errors, timeouts, cut-off
    bodies and HTTP 5xx/429 are retried: a 4xx will not get better by asking again.
    ``timeout`` bounds each wait for data; ``deadline`` bounds all attempts together, so a
    server trickling a byte now and then cannot keep a download going forever. A body whose
    first bytes are not a gzip or tar archive (an HTML login page) fails at once.
    """
    dest = Path(dest)
    _check_download_args(
        url,
        sha256=sha256,
        md5=md5,
        retries=retries,
        timeout=timeout,
        deadline=deadline,
        backoff=backoff,
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
            deadline=_Deadline(url, deadline),
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
    url: str,
    *,
    sha256: str | None,
    md5: str | None,
    retries: int,
    timeout: float,
    deadline: float,
    backoff: float,
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
    if not deadline > 0:
        raise LfwcnnError(f"deadline must be > 0 seconds, got {deadline}")
    for name, digest in (("sha256", sha256), ("md5", md5)):
        if digest is not None and not re.fullmatch(f"[0-9a-fA-F]{{{_HEX_LENGTHS[name]}}}", digest):
            raise LfwcnnError(f"{name} must be {_HEX_LENGTHS[name]} hex digits, got {digest!r}")


def _reuse_existing(url: str, dest: Path, *, sha256: str | None, md5: str | None) -> Path:
    """Keep a file already at ``dest`` if it verifies; refuse otherwise, never overwrite it."""
    if not dest.is_file():
        raise LfwcnnError(f"download target {dest} exists and is not a file")
    if sha256 is None and md5 is None:
        with open(dest, "rb") as existing:
            if archive_format(existing.read(HEAD_BYTES)) is None:
                raise LfwcnnError(
                    f"existing file {dest} is not a .tgz or .tar archive; "
                    f"remove it to download {url} again"
                )
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


class _Deadline:
    """The moment all attempts at one download must have finished by, and its one-line error."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, received: int) -> None:
        """Stop the download once the deadline has passed, saying how far it got."""
        if self.left() <= 0:
            raise LfwcnnError(
                f"download of {self.url} did not finish within its deadline of "
                f"{self.seconds:g} s (data.download.deadline_s); {received} bytes received"
            )


def _fetch_with_retries(
    url: str,
    target: Path,
    *,
    attempts: int,
    timeout: float,
    deadline: _Deadline,
    backoff: float,
    label: str | None,
) -> None:
    """Run up to ``attempts`` fetches with exponential backoff; one error line if all fail."""
    reason = ""
    for attempt in range(1, attempts + 1):
        deadline.check(received=0)
        try:
            _fetch_once(url, target, timeout=timeout, deadline=deadline, label=label)
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
            time.sleep(max(0.0, min(delay, deadline.left())))
    raise LfwcnnError(f"download of {url} failed after {attempts} attempts: {reason}")


def _fetch_once(
    url: str, target: Path, *, timeout: float, deadline: _Deadline, label: str | None
) -> None:
    """Stream ``url`` into ``target`` (truncating it); raise ``_TransientError`` if retryable.

    ``label`` names the progress bar; ``None`` hides it.

    The raw bytes are read undecoded: a server that labels a .tgz ``Content-Encoding: gzip``
    must not get it silently unzipped, and the byte count must match ``Content-Length``.
    Each read returns what has arrived (``read1``), so the deadline is checked between the
    bytes of a trickle; a wait for data is cut at ``timeout`` (or at what was left of the
    deadline when the attempt began), so a download ends at most that long past its deadline.
    """
    received, total = 0, None
    wait = min(timeout, max(deadline.left(), 0.001))
    try:
        with requests.get(url, stream=True, timeout=wait) as response:
            _check_status(url, response)
            total = _content_length(response)
            head = b""
            with open(target, "wb") as out, _progress_bar(total, label) as bar:
                while chunk := response.raw.read1(CHUNK_SIZE, decode_content=False):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                        if len(head) == HEAD_BYTES:
                            _check_archive_head(url, response, head)
                    deadline.check(received)
            if len(head) < HEAD_BYTES:
                _check_archive_head(url, response, head)
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as err:
        deadline.check(received)
        raise _TransientError(f"timed out (no data for {wait:g} s)") from err
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


def _check_archive_head(url: str, response: requests.Response, head: bytes) -> None:
    """Refuse a body that is not a gzip or tar archive (an HTML login page), from its start.

    Not retried: the same URL would send the same page again. The partial file is removed
    by the caller's temporary file, so the next run downloads afresh.
    """
    if archive_format(head) is None:
        kind = response.headers.get("Content-Type") or "no content type"
        raise LfwcnnError(
            f"download of {url} is not a .tgz or .tar archive: the server sent {kind} "
            f"starting {head[:40]!r}; nothing was kept"
        )


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


@dataclass(frozen=True)
class ExtractLimits:
    """Caps on what one archive may unpack to, so that a size bomb stops early.

    The defaults are far above the published LFW archives (lfw.tgz: about 19,000 members,
    under 200 MB unpacked, no image above 1 MB). ``data.extract`` in the config sets them.
    """

    max_total_bytes: int = 4 << 30
    max_members: int = 100_000
    max_member_bytes: int = 64 << 20

    def check(self) -> None:
        """Refuse caps that are not positive integers, naming the one at fault."""
        for name in ("max_total_bytes", "max_members", "max_member_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LfwcnnError(f"data.extract.{name} must be an integer >= 1, got {value!r}")


DEFAULT_LIMITS = ExtractLimits()


def extract_archive(
    archive: str | os.PathLike,
    dest_dir: str | os.PathLike,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> Path:
    """Unpack a .tgz/.tar into ``dest_dir``; return the folder that holds the person folders.

    LFW archives hold only folders and regular files, so that is all this accepts: a first
    pass checks every member (type, path, count, declared size) before anything is written;
    a second pass writes the files itself, each created relative to its parent folder
    without following links, counting the bytes that really come out of the decompressed
    stream. The guarantee thus does not rest on tarfile's extraction filter (bypassable on
    Python 3.11 before 3.11.13 and 3.12 before 3.12.11). The tree is filled in a temporary
    sibling, so a refused or corrupt archive leaves nothing behind. LFW archives wrap
    everything in one top folder (``lfw/``, ``lfw_funneled/``, ...): when there is exactly
    one, that inner folder is returned.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    limits.check()
    if not archive.is_file():
        raise LfwcnnError(f"archive {archive} does not exist")
    _clear_empty_target(dest_dir)
    with atomic_dir(dest_dir) as tmp:
        try:
            _scan_archive(archive, limits)
            _unpack_members(archive, tmp, limits)
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


class _CappedStream:
    """The archive's decompressed tar stream, counted as tarfile reads it.

    What the gzip stream really yields is what counts, not what headers claim: reading stops
    once it passes the caps' total plus room for headers, and a single read above
    ``max_member_bytes`` (tarfile reads a pax or GNU long-name header's data in one piece)
    is refused before it is made. Seeks go forward only (reading and discarding), which is
    all a sequential pass needs.
    """

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive = archive
        self.limits = limits
        # room for headers and padding: a few blocks per member on top of the members' bytes
        self.budget = limits.max_total_bytes + limits.max_members * 4 * tarfile.BLOCKSIZE
        self.position = 0
        self._file = open(archive, "rb")  # noqa: SIM115 - closed by __exit__
        compressed = archive_format(self._file.read(HEAD_BYTES)) == "gzip"
        self._file.seek(0)
        self._raw = gzip.GzipFile(fileobj=self._file, mode="rb") if compressed else self._file

    def __enter__(self) -> _CappedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
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


@contextlib.contextmanager
def _open_tar(archive: Path, limits: ExtractLimits) -> Iterator[tarfile.TarFile]:
    """The archive as a sequential tar reader over its capped, decompressed stream."""
    with _CappedStream(archive, limits) as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
        yield tar


def _each_member(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members in order, read lazily, so that nothing piles up before the caps apply."""
    while (member := tar.next()) is not None:
        tar.members.clear()  # tarfile keeps every header; a pass needs only the current one
        yield member


def _scan_archive(archive: Path, limits: ExtractLimits) -> None:
    """First pass: refuse the archive for any member, before a single byte is written."""
    count, declared = 0, 0
    kinds: dict[tuple[str, ...], str] = {}
    with _open_tar(archive, limits) as tar:
        for member in _each_member(tar):
            count += 1
            parts = _check_member(archive, member)
            _check_caps(archive, member, count=count, total=declared + member.size, limits=limits)
            declared += member.size
            _check_layout(archive, member, parts, kinds)
    if count == 0:
        raise LfwcnnError(f"archive {archive} is empty")


def _unpack_members(archive: Path, root: Path, limits: ExtractLimits) -> None:
    """Second pass: write folders and files under ``root``, counting what really comes out.

    Every per-member check of the first pass runs again: the writer never relies on it alone.
    """
    count, written = 0, 0
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with _open_tar(archive, limits) as tar:
            for member in _each_member(tar):
                count += 1
                parts = _check_member(archive, member)
                _check_caps(
                    archive, member, count=count, total=written + member.size, limits=limits
                )
                if member.isdir():
                    os.close(_open_folder(root_fd, parts))
                else:
                    written += _write_file(archive, tar, member, root_fd, parts, written, limits)
    finally:
        os.close(root_fd)


def _check_member(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """Refuse anything but a folder or regular file at a relative path; return its parts.

    Links of either kind, devices, FIFOs and sparse files are refused whatever they point at:
    LFW archives hold none, and refusing them outright needs no reasoning about where a chain
    of links would resolve.
    """
    name = _shown(member.name)
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise LfwcnnError(
            f"archive {archive} has a {kind} link, which LFW archives never hold: "
            f"{name} -> {_shown(member.linkname)}"
        )
    if not (member.isdir() or (member.isreg() and not member.issparse())):
        raise LfwcnnError(f"archive {archive} has a member that is not a file or folder: {name}")
    return _member_parts(archive, member.name)


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of a member name, refusing absolute paths and ``..`` anywhere."""
    shown = _shown(name)
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise LfwcnnError(f"archive {archive} has a member with an absolute path: {shown}")
    if ".." in re.split(r"[/\\]", name):
        raise LfwcnnError(f"archive {archive} has a member outside its folder: {shown}")
    if "\0" in name:
        raise LfwcnnError(f"archive {archive} has a member name with a NUL byte: {shown}")
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _check_caps(
    archive: Path, member: tarfile.TarInfo, *, count: int, total: int, limits: ExtractLimits
) -> None:
    """Refuse a member past the member count, or whose declared size passes a byte cap."""
    if count > limits.max_members:
        raise LfwcnnError(
            f"archive {archive} has more than {limits.max_members} members "
            f"(data.extract.max_members), refused at {_shown(member.name)}"
        )
    if member.size > limits.max_member_bytes:
        raise _over_member_cap(archive, member, limits)
    if total > limits.max_total_bytes:
        raise _over_total_cap(archive, member, limits)


def _over_member_cap(archive: Path, member: tarfile.TarInfo, limits: ExtractLimits) -> LfwcnnError:
    return LfwcnnError(
        f"archive {archive}: member {_shown(member.name)} holds more than "
        f"{limits.max_member_bytes} bytes (data.extract.max_member_bytes)"
    )


def _over_total_cap(archive: Path, member: tarfile.TarInfo, limits: ExtractLimits) -> LfwcnnError:
    return LfwcnnError(
        f"archive {archive} unpacks to more than {limits.max_total_bytes} bytes "
        f"(data.extract.max_total_bytes), refused at {_shown(member.name)}"
    )


def _check_layout(
    archive: Path, member: tarfile.TarInfo, parts: tuple[str, ...], kinds: dict
) -> None:
    """Refuse a file that appears twice, or a path that is both a file and a folder.

    ``kinds`` maps every path seen so far (members and their parent folders) to ``"file"``
    or ``"folder"``.
    """
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


def _write_file(
    archive: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root_fd: int,
    parts: tuple[str, ...],
    written: int,
    limits: ExtractLimits,
) -> int:
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
            if size > limits.max_member_bytes:
                raise _over_member_cap(archive, member, limits)
            if written + size > limits.max_total_bytes:
                raise _over_total_cap(archive, member, limits)
            out.write(chunk)
    return size


def _single_top_folder(dest_dir: Path) -> Path:
    """The one top-level folder if that is all there is (ignoring dot-files), else ``dest_dir``."""
    entries = [entry for entry in dest_dir.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest_dir


def _shown(name: str) -> str:
    """A member name as one printable line (quoted when it holds control characters)."""
    return name if name.isprintable() else repr(name)


def download_lfw(*, archive: Path, data: Settings) -> None:
    """Step: download the source's archive (a URL, or the variant's mirror), verified."""
    sha256, md5 = expected_digests(data.variant, data.source, data.sha256, data.md5)
    settings = data.download
    download(source_url(data.variant, data.source), archive, sha256=sha256, md5=md5,
             retries=settings.retries, timeout=settings.timeout_s, deadline=settings.deadline_s)
