"""Put an LFW source in place for the prepare step: a folder is linked, an archive unpacked.

Either way the result is ``images/`` holding ``<Person>/`` folders, and a ``source.json``
that records where the images came from (variant, location, archive checksums, and whether
the images are only an approximation of the variant), so the report, the sweep table and the
ablation can say exactly which LFW a number was measured on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from lfwcnn.atomic import scratch_dir, write_text
from lfwcnn.cli import run
from lfwcnn.download import (
    DEFAULT_LIMITS,
    ExtractLimits,
    compare_digests,
    extract_archive,
    file_digests,
)
from lfwcnn.errors import LfwcnnError
from lfwcnn.sources import VARIANTS, archive_for, classify_source

log = logging.getLogger(__name__)

# files a hand-made LFW folder may carry to say what it is (the first one found is read)
NOTE_FILES = ("SOURCE.txt", "README.txt", "README.md", "README")
APPROXIMATION = re.compile(r"\bapproximation\b", re.IGNORECASE)


def folder_note(folder: Path) -> dict:
    """What a folder says about itself: the first line of its note, and whether it calls the
    images an approximation (e.g. the ``*_approx`` folders rebuilt from web thumbnails)."""
    for name in NOTE_FILES:
        candidate = folder / name
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            return {
                "note_file": str(candidate.resolve()),
                "note": text.splitlines()[0] if text else "",
                "approximate": bool(APPROXIMATION.search(text[:2000])),
            }
    return {"note_file": None, "note": None, "approximate": False}


def link_folder(folder: Path, images: Path) -> None:
    """Link rather than copy: LFW is 13,233 files, and the user's copy must stay untouched."""
    images.parent.mkdir(parents=True, exist_ok=True)
    images.symlink_to(folder.resolve(), target_is_directory=True)


def unpack_archive(archive: Path, images: Path, limits: ExtractLimits = DEFAULT_LIMITS) -> None:
    """Extract beside ``images`` and move the archive's person-folder root into place."""
    with scratch_dir(images) as scratch:
        root = extract_archive(archive, scratch / "tree", limits)
        os.replace(root, images)


def obtain(
    source: str,
    *,
    variant: str,
    images: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> dict:
    """Make ``images`` the LFW root of ``source`` (a folder or a local archive); describe it.

    ``limits`` caps what an archive may unpack to (``data.extract``).
    """
    if variant not in VARIANTS:
        raise LfwcnnError(f"unknown LFW variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    images = Path(images)
    if images.exists() or images.is_symlink():
        raise LfwcnnError(f"{images} already exists; remove it to obtain LFW again")
    kind = classify_source(source)
    record = {"variant": variant, "source": source, "kind": kind}
    if kind == "folder":
        link_folder(Path(source), images)
        record["path"] = str(Path(source).resolve())
        record.update(folder_note(Path(source)))
    elif kind == "archive":
        digests = file_digests(source)
        mismatch = compare_digests(digests, sha256=sha256, md5=md5)
        if mismatch:
            raise LfwcnnError(f"checksum mismatch for {source}: {mismatch}")
        published = archive_for(variant)
        record.update(
            digests,
            checksum_verified=bool(sha256 or md5),
            # whether these are the exact bytes of the variant's published archive
            matches_published=digests["md5"] == published.md5,
            # the published archives are the real variant; any other archive is unverified,
            # not known to be an approximation, so it is labelled by matches_published only
            approximate=False,
        )
        unpack_archive(Path(source), images, limits)
    else:
        raise LfwcnnError(f"LFW source {source} is a URL: download it first (lfwcnn.download)")
    people = [p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")]
    record["people_folders"] = len(people)
    return record


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="local archive or extracted folder")
    parser.add_argument("--origin", help="where the archive was downloaded from, for the record")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--sha256")
    parser.add_argument("--md5")
    parser.add_argument("--images", required=True, help="folder (or link) to create")
    parser.add_argument("--record", required=True, help="source.json to write")
    for flag in ("max-total-bytes", "max-members", "max-member-bytes"):
        default = getattr(DEFAULT_LIMITS, flag.replace("-", "_"))
        parser.add_argument(
            f"--{flag}", type=int, default=default, help=f"archive cap (default {default})"
        )
    args = parser.parse_args(argv)
    limits = ExtractLimits(args.max_total_bytes, args.max_members, args.max_member_bytes)
    record = obtain(
        args.source,
        variant=args.variant,
        images=args.images,
        sha256=args.sha256,
        md5=args.md5,
        limits=limits,
    )
    if args.origin:
        record["origin"] = args.origin
    write_text(args.record, json.dumps(record, indent=2) + "\n")
    log.info("LFW %s from %s: %d person folders", args.variant, args.source,
             record["people_folders"])


if __name__ == "__main__":
    raise SystemExit(run(main))
