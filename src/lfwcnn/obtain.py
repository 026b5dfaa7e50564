"""Put an LFW source in place for the prepare step: a folder is linked, an archive unpacked.

Either way the result is ``images/`` holding ``<Person>/`` folders, and a ``source.json``
recording where the images came from (variant, location, archive checksums, whether they only
approximate the variant), so a report can say exactly which LFW a number was measured on.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from lfwcnn.atomic import scratch_dir, write_text
from lfwcnn.download import extract_archive, verify_checksum
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings
from lfwcnn.sources import ARCHIVES, classify_source, expected_digests, source_url

log = logging.getLogger(__name__)

def folder_note(folder: Path) -> dict:
    """What a folder says about itself in its first note file: the note's first line, and
    whether it calls the images an approximation (the ``*_approx`` folders of thumbnails)."""
    for name in ("SOURCE.txt", "README.txt", "README.md", "README"):
        candidate = folder / name
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            return {
                "note_file": str(candidate.resolve()),
                "note": text.splitlines()[0] if text else "",
                "approximate": bool(re.search(r"\bapproximation\b", text[:2000], re.IGNORECASE)),
            }
    return {"note_file": None, "note": None, "approximate": False}


def obtain(source: str, *, variant: str, images: str | os.PathLike, sha256: str | None = None,
           md5: str | None = None, limits: Settings | None = None) -> dict:
    """Make ``images`` the LFW root of ``source`` (a folder or a local archive); describe it.
    ``limits`` caps what an archive may unpack to (``data.extract``)."""
    images = Path(images)
    if images.exists() or images.is_symlink():
        raise LfwcnnError(f"{images} already exists; remove it to obtain LFW again")
    kind = classify_source(source)
    record = {"variant": variant, "source": source, "kind": kind}
    if kind == "folder":
        # linked, not copied: LFW is 13,233 files, and the user's copy must stay untouched
        folder = Path(source).expanduser()
        images.parent.mkdir(parents=True, exist_ok=True)
        images.symlink_to(folder.resolve(), target_is_directory=True)
        record["path"] = str(folder.resolve())
        record.update(folder_note(folder))
    else:  # a local archive: obtain_lfw passes a URL's download, never the URL
        digests = verify_checksum(source, sha256=sha256, md5=md5)
        record.update(
            digests,
            checksum_verified=bool(sha256 or md5),
            # whether these are the exact bytes of the variant's published archive
            matches_published=digests["md5"] == ARCHIVES[variant].md5,
            # the published archives are the real variant; any other archive is unverified,
            # not known to be an approximation, so it is labelled by matches_published only
            approximate=False,
        )
        with scratch_dir(images) as scratch:  # the archive's person-folder root moved in place
            os.replace(extract_archive(source, scratch / "tree", limits), images)
    people = [p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")]
    record["people_folders"] = len(people)
    return record


def obtain_lfw(*, images: Path, record: Path, data: Settings, archive: Path | None = None) -> None:
    """Step: make ``images`` the LFW root of ``data.source`` (or of ``archive``, downloaded
    from it) and record where the images came from."""
    check_outputs({"record": record}, {"archive": archive, "images": images})
    kind = "url" if data.source is None else classify_source(data.source)
    if kind != "folder" and archive is None:
        raise LfwcnnError(f"LFW source {data.source or data.variant}: the archive is missing")
    sha256, md5 = expected_digests(data.variant, data.source, data.sha256, data.md5)
    entry = obtain(data.source if kind == "folder" else str(archive), variant=data.variant,
                   images=images, sha256=sha256, md5=md5, limits=data.extract)
    if kind == "url":
        entry["origin"] = source_url(data.variant, data.source)
    write_text(record, json.dumps(entry, indent=2) + "\n")
    log.info("LFW %s from %s: %d person folders", data.variant, entry["source"],
             entry["people_folders"])
