"""Filter, crop and resize LFW into the arrays the paper's CNN is trained on.

Pixels and order are those of scikit-learn's ``fetch_lfw_people(..., color=True)`` (same crop,
bicubic resize, sorted folders and files, one ``RandomState(42)`` shuffle), so a split by index
is the split a scikit-learn script with the same ``random_state`` would draw.
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
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lfwcnn.atomic import process_alive, write_text
from lfwcnn.dataset import Dataset, save_dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_json
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings
from lfwcnn.sources import LFW_SIDE
from lfwcnn.tables import check_name, table_text

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def list_people(root: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The JPEGs of each ``<root>/<Person>/`` in sorted order, and the rest (hidden files such
    as macOS' ``._x.jpg``, other suffixes); a person folder without a JPEG is a broken copy."""
    if not root.is_dir():
        raise LfwcnnError(f"LFW folder {root} does not exist or is not a folder")
    people, ignored = {}, []
    for person in sorted(os.listdir(root)):
        folder = root / person
        if not folder.is_dir() or person.startswith("."):
            ignored.append(person)
            continue
        check_name(person, root)
        files = []
        for name in sorted(os.listdir(folder)):
            is_jpeg = name.lower().endswith((".jpg", ".jpeg")) and not name.startswith(".")
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
    return people, ignored


def load_face(path: Path, box: tuple[int, int, int, int], size: int) -> tuple[np.ndarray, str]:
    """Crop and resize one image as scikit-learn does, and its file's sha256. The header is checked
    first: the crop box refers to LFW's frame, and a decompression bomb takes no memory."""
    raw = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                if image.size != (LFW_SIDE, LFW_SIDE):
                    raise LfwcnnError(f"{path}: image is {image.size[0]}x{image.size[1]}, LFW "
                                      f"images are {LFW_SIDE}x{LFW_SIDE} (the crop box refers "
                                      "to that frame)")
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


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker ends with the step (on Linux the kernel kills it when its parent,
    the step or the forkserver that exits with it, exits; elsewhere a thread polls the step)."""
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("prctl is Linux's")
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if not process_alive(parent):  # killed before the line above took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while process_alive(parent):
        time.sleep(1)
    os._exit(1)


def load_faces(paths: Sequence[Path], box: tuple[int, int, int, int], size: int,
               workers: int) -> tuple[np.ndarray, list[str]]:
    """Decode all images, in chunks over ``workers`` processes; JPEG decoding is CPU-bound."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        loaded = pool.map(partial(load_face, box=box, size=size), paths, chunksize=64)
        faces, digests = zip(*tqdm(loaded, total=len(paths), unit="img", desc="prepare",
                                   disable=None), strict=True)
    return np.stack(faces), list(digests)


class Prepared(NamedTuple):
    data: Dataset
    sha256: list[str]
    summary: dict


def prepare(root: str | os.PathLike, data: Settings, *, workers: int) -> Prepared:
    """Keep people with at least ``data.min_images_per_person`` JPEGs, crop, resize, shuffle."""
    people, ignored = list_people(Path(root))
    least, (rows, cols) = data.min_images_per_person, (data.crop.rows, data.crop.cols)
    kept = {p: f for p, f in people.items() if len(f) >= least}
    if len(kept) < 2:
        raise LfwcnnError(f"only {len(kept)} people in {root} have at least {least} images; "
                          "a classifier needs 2 or more")
    # sorted as scikit-learn's target_names (names with spaces), so labels agree
    classes = sorted(kept, key=lambda person: person.replace("_", " "))
    label_of = {person: i for i, person in enumerate(classes)}
    files = [f"{person}/{name}" for person, names in kept.items() for name in names]
    labels = np.array([label_of[f.split("/", 1)[0]] for f in files], dtype=np.int64)
    box = (cols[0], rows[0], cols[1], rows[1])
    faces, digests = load_faces([Path(root, f) for f in files], box, data.image_size, workers)
    order = np.arange(len(files))
    np.random.RandomState(42).shuffle(order)  # as fetch_lfw_people shuffles its output
    dataset = Dataset(images=faces[order], labels=labels[order], class_names=np.array(classes),
                      files=np.array(files)[order])
    summary = {
        "people": len(classes), "images": len(files),
        "images_per_person": {p: len(kept[p]) for p in sorted(kept, key=lambda p: -len(kept[p]))},
        "people_in_source": len(people), "images_in_source": sum(map(len, people.values())),
        "ignored_files": len(ignored), "ignored_examples": ignored[:10],
        "min_images_per_person": least, "crop": {"rows": list(rows), "cols": list(cols)},
        "image_size": data.image_size,
    }
    return Prepared(dataset, [digests[i] for i in order], summary)


def prepare_dataset(*, images: Path, npz: Path, manifest: Path, summary: Path, data: Settings,
                    record: Path | None = None, threads: int = 1) -> None:
    """Step: the arrays, a manifest and the JSON summary of the people in ``images``; ``record``
    (the obtain step's source.json) is copied into the summary for provenance."""
    check_outputs({"npz": npz, "manifest": manifest, "summary": summary},
                  {"images": images, "record": record})
    source = {"source": read_json(record)} if record else {}
    prepared = prepare(images, data, workers=threads)
    found = prepared.data
    save_dataset(npz, found)
    write_text(manifest, table_text(("file", "person", "label", "sha256"), [
        (file, found.class_names[label], label, digest)
        for file, label, digest in zip(found.files, found.labels, prepared.sha256, strict=True)]))
    write_text(summary, json.dumps({**source, **prepared.summary}, indent=2) + "\n")
    log.info("%d people, %d images kept; %d non-JPEG files ignored", prepared.summary["people"],
             prepared.summary["images"], prepared.summary["ignored_files"])
