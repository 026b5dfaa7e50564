"""Filter, crop and resize LFW into the arrays the paper's CNN is trained on.

The pixels and their order reproduce scikit-learn's ``fetch_lfw_people(min_faces_per_person,
slice_, resize, color=True)``: the same Pillow crop and bicubic resize, person folders and
files in sorted order, then one ``RandomState(42)`` shuffle. A split by index of these arrays
is therefore the split a scikit-learn script with the same ``random_state`` would draw.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lfwcnn.atomic import write_text
from lfwcnn.dataset import Dataset, save_dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_json
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings
from lfwcnn.sources import LFW_SIDE
from lfwcnn.tables import check_name, table_text

log = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg")
MANIFEST_COLUMNS = ("file", "person", "label", "sha256")
SKLEARN_SHUFFLE_SEED = 42  # fetch_lfw_people shuffles its output with RandomState(42)
CHUNK = 64  # images per task handed to a worker process
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Listing:
    """The JPEG files per person folder, and what was skipped while listing."""

    people: dict[str, list[str]]
    ignored: list[str] = field(default_factory=list)


def list_people(root: str | os.PathLike) -> Listing:
    """List ``<root>/<Person>/*.jpg`` in sorted order; anything that is not a JPEG is ignored.

    Hidden files (``.DS_Store``, ``._x.jpg`` from macOS) and files with other suffixes are
    counted in ``ignored`` rather than failing the run; a person folder without a single
    JPEG is an error, since it usually means a broken copy.
    """
    root = Path(root)
    if not root.is_dir():
        raise LfwcnnError(f"LFW folder {root} does not exist or is not a folder")
    people: dict[str, list[str]] = {}
    ignored: list[str] = []
    for person in sorted(os.listdir(root)):
        folder = root / person
        if not folder.is_dir() or person.startswith("."):
            ignored.append(person)
            continue
        check_name(person, root)
        files = []
        for name in sorted(os.listdir(folder)):
            is_jpeg = name.lower().endswith(JPEG_SUFFIXES) and not name.startswith(".")
            if is_jpeg and (folder / name).is_file():
                check_name(name, folder)
                files.append(name)
            else:
                ignored.append(f"{person}/{name}")
        if not files:
            raise LfwcnnError(f"person folder {folder} holds no JPEG images")
        people[person] = files
    if not people:
        raise LfwcnnError(f"LFW folder {root} holds no person folders")
    return Listing(people, ignored)


def class_order(people: Sequence[str]) -> list[str]:
    """Sort people as scikit-learn's ``target_names`` (names with spaces), so labels agree."""
    return sorted(people, key=lambda person: person.replace("_", " "))


def load_face(
    path: Path, crop_rows: tuple[int, int], crop_cols: tuple[int, int], size: int
) -> tuple[np.ndarray, str]:
    """Crop and resize one image as scikit-learn does; also return the file's sha256.

    The size comes from the header, before any pixel is decoded: an image of another frame
    would be cropped off-centre, and a header claiming 60000x60000 in a small file (a
    decompression bomb) is refused before it can take the memory it claims.
    """
    raw = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                check_frame(path, image.size)
                box = (crop_cols[0], crop_rows[0], crop_cols[1], crop_rows[1])
                face = image.convert("RGB").crop(box).resize((size, size),
                                                            Image.Resampling.BICUBIC)
                pixels = np.asarray(face, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LfwcnnError(f"{path}: its header claims more than {Image.MAX_IMAGE_PIXELS} "
                          f"pixels, LFW images are {LFW_SIDE}x{LFW_SIDE} (a decompression "
                          "bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise LfwcnnError(f"{path}: not a readable JPEG image ({err})") from None
    return pixels, hashlib.sha256(raw).hexdigest()


def check_frame(path: Path, size: tuple[int, int]) -> None:
    """The crop box refers to LFW's 250x250 frame; in any other it would cut elsewhere."""
    if size != (LFW_SIDE, LFW_SIDE):
        raise LfwcnnError(f"{path}: image is {size[0]}x{size[1]}, LFW images are "
                          f"{LFW_SIDE}x{LFW_SIDE} (the crop box refers to that frame)")


def _load_chunk(args: tuple[list[Path], tuple[int, int], tuple[int, int], int]):
    paths, crop_rows, crop_cols, size = args
    faces, digests = zip(*(load_face(p, crop_rows, crop_cols, size) for p in paths), strict=True)
    return np.stack(faces), list(digests)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker ends when the step that started it is killed.

    On Linux the kernel sends SIGKILL when the worker's parent exits (``PR_SET_PDEATHSIG``;
    under a forkserver the parent is the server, which exits when the step does). Elsewhere
    a thread polls the step's pid. Either way a killed step leaves no worker decoding on.
    """
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("prctl is Linux's")
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if not _alive(parent):  # killed before the line above took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while _alive(parent):
        time.sleep(1)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user: the pid was reused
        return False
    return True


def load_faces(
    paths: Sequence[Path],
    crop_rows: tuple[int, int],
    crop_cols: tuple[int, int],
    size: int,
    workers: int,
) -> tuple[np.ndarray, list[str]]:
    """Decode all images, in chunks over ``workers`` processes; JPEG decoding is CPU-bound."""
    tasks = [(list(paths[i : i + CHUNK]), crop_rows, crop_cols, size)
             for i in range(0, len(paths), CHUNK)]
    progress = tqdm(total=len(paths), unit="img", desc="prepare", disable=None)
    faces, digests = [], []
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        for chunk_faces, chunk_digests in pool.map(_load_chunk, tasks):
            faces.append(chunk_faces)
            digests.extend(chunk_digests)
            progress.update(len(chunk_digests))
    progress.close()
    return np.concatenate(faces), digests


@dataclass(frozen=True)
class Prepared:
    data: Dataset
    sha256: list[str]
    summary: dict


def prepare(root: str | os.PathLike, data: Settings, *, workers: int) -> Prepared:
    """Keep people with at least ``data.min_images_per_person`` JPEGs, crop, resize, shuffle.

    ``data`` is the config's data section (checked by the schema: the crop lies in LFW's
    250x250 frame, sizes are positive).
    """
    min_images_per_person = data.min_images_per_person
    crop_rows, crop_cols = tuple(data.crop.rows), tuple(data.crop.cols)
    image_size = data.image_size
    listing = list_people(root)
    kept = {p: f for p, f in listing.people.items() if len(f) >= min_images_per_person}
    if len(kept) < 2:
        raise LfwcnnError(
            f"only {len(kept)} people in {root} have at least {min_images_per_person} images; "
            "a classifier needs 2 or more"
        )
    classes = class_order(kept)
    label_of = {person: i for i, person in enumerate(classes)}
    files = [f"{person}/{name}" for person, names in kept.items() for name in names]
    labels = np.array([label_of[f.split("/", 1)[0]] for f in files], dtype=np.int64)

    faces, digests = load_faces(
        [Path(root, f) for f in files], tuple(crop_rows), tuple(crop_cols), image_size, workers
    )
    order = np.arange(len(files))
    np.random.RandomState(SKLEARN_SHUFFLE_SEED).shuffle(order)
    data = Dataset(
        images=faces[order],
        labels=labels[order],
        class_names=np.array(classes),
        files=np.array(files)[order],
    )
    summary = {
        "people": len(classes),
        "images": len(files),
        "images_per_person": {p: len(kept[p]) for p in sorted(kept, key=lambda p: -len(kept[p]))},
        "people_in_source": len(listing.people),
        "images_in_source": sum(len(f) for f in listing.people.values()),
        "ignored_files": len(listing.ignored),
        "ignored_examples": listing.ignored[:10],
        "min_images_per_person": min_images_per_person,
        "crop": {"rows": list(crop_rows), "cols": list(crop_cols)},
        "image_size": image_size,
    }
    return Prepared(data, [digests[i] for i in order], summary)


def write_outputs(
    prepared: Prepared,
    *,
    npz: str | os.PathLike,
    manifest: str | os.PathLike,
    summary: str | os.PathLike,
    extra_summary: dict | None = None,
) -> None:
    """Write the arrays, a manifest a person can read, and the JSON summary."""
    data = prepared.data
    rows = [
        (file, data.class_names[label], label, digest)
        for file, label, digest in zip(data.files, data.labels, prepared.sha256, strict=True)
    ]
    save_dataset(npz, data)
    write_text(manifest, table_text(MANIFEST_COLUMNS, rows))
    write_text(summary, json.dumps({**(extra_summary or {}), **prepared.summary}, indent=2) + "\n")


def prepare_dataset(
    *,
    images: Path,
    npz: Path,
    manifest: Path,
    summary: Path,
    data: Settings,
    record: Path | None = None,
    threads: int = 1,
) -> None:
    """Step: the arrays, manifest and summary of the people in ``images`` (``threads``
    processes decode the JPEGs); ``record``, the obtain step's source.json, is copied into
    the summary for provenance."""
    check_outputs({"npz": npz, "manifest": manifest, "summary": summary},
                  {"images": images, "record": record})
    source = {"source": read_json(record)} if record else {}
    prepared = prepare(images, data, workers=threads)
    write_outputs(prepared, npz=npz, manifest=manifest, summary=summary, extra_summary=source)
    log.info(
        "%d people, %d images kept; %d non-JPEG files ignored",
        prepared.summary["people"], prepared.summary["images"], prepared.summary["ignored_files"],
    )
