"""Where LFW comes from: the published archives per variant, and what kind a given source is.

The checksums pin the exact bytes the paper's numbers depend on (md5 from the LFW site, sha256
from scikit-learn's loader); the deep-funneled archive is only published with an md5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lfwcnn.errors import LfwcnnError


@dataclass(frozen=True)
class Archive:
    """One published LFW archive; a digest is ``None`` where none was published."""

    url: str
    sha256: str | None
    md5: str | None


ARCHIVES: dict[str, Archive] = {
    "original": Archive(  # lfw.tgz
        url="https://ndownloader.figshare.com/files/5976018",
        sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
        md5="a17d05bd522c52d84eca14327a23d494",
    ),
    "funneled": Archive(  # lfw-funneled.tgz
        url="https://ndownloader.figshare.com/files/5976015",
        sha256="b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a",
        md5="1b42dfed7d15c9b2dd63d5e5840c86ad",
    ),
    "deepfunneled": Archive(
        url="http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
        sha256=None,
        md5="68331da3eb755a505a502b5aacb3c201",
    ),
}

LFW_SIDE = 250  # every LFW image is 250x250; crop boxes are given in that frame
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tgz", ".tar.gz", ".tar")
HEAD_BYTES = 257 + len(b"ustar")  # enough of a file's start for archive_format


def archive_format(head: bytes) -> str | None:
    """``"gzip"`` or ``"tar"`` from a file's first ``HEAD_BYTES``, else ``None`` (an HTML
    login page): a gzip stream, or a tar whose first header says "ustar" (POSIX and GNU)."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "tar" if head[257:HEAD_BYTES] == b"ustar" else None


def classify_source(source: str) -> str:
    """Say whether ``source`` is a ``"url"``, a local ``"archive"`` or an extracted ``"folder"``,
    up front, so that a wrong path fails with its name before any download or training."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
    if match:
        if match.group(1).lower() in ("http", "https"):
            return "url"
        raise LfwcnnError(f"unsupported URL scheme {match.group(1)!r} in LFW source {source!r}")
    path = Path(source).expanduser()
    if path.is_dir():
        if not any(not child.name.startswith(".") for child in path.iterdir()):
            raise LfwcnnError(f"LFW source folder {source} is empty")
        return "folder"
    if path.is_file():
        if path.name.lower().endswith(ARCHIVE_SUFFIXES):
            return "archive"
        raise LfwcnnError(f"LFW source {source} is neither a folder nor an archive "
                          f"({', '.join(ARCHIVE_SUFFIXES)})")
    raise LfwcnnError(f"LFW source {source} does not exist")


def source_url(variant: str, source: str | None) -> str:
    """Where a source is downloaded from: its own URL, or the variant's known mirror."""
    return ARCHIVES[variant].url if source is None else source


def expected_digests(variant: str, source: str | None, sha256: str | None,
                     md5: str | None) -> tuple[str | None, str | None]:
    """The configured checksums, else the variant's published ones when its mirror is used
    (another URL or a local archive without checksums stays unverified)."""
    if sha256 or md5 or source is not None:
        return sha256, md5
    return ARCHIVES[variant].sha256, ARCHIVES[variant].md5
