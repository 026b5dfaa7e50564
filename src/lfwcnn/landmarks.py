"""68 facial landmarks per face of a prepared dataset, in the frame of its crop (issue 15, C7).

dlib's frontal face detector (HOG + linear SVM) finds the face on the ORIGINAL 250x250 LFW
image, dlib's 68-point shape predictor (Kazemi and Sullivan's ensemble of regression trees)
places the points in it, and the points are mapped into the prepared crop frame (the
``data.crop`` rows/cols box resized to ``data.image_size``, as :mod:`lfwcnn.prepare` crops).
Where the detector finds no face, the predictor is run in LFW's centre box
(:data:`LFW_CENTRE_BOX`: LFW's images are centred on a face found by Viola-Jones), and the
face is recorded as not ``detected``. Where it finds several, the one nearest the centre of
the image is taken (LFW's subject is the centred face).

Software and model, and their terms:

- dlib, from the ``dlib-bin`` wheel (binary builds of dlib 20.0.1): Boost Software License
  1.0 (the wheel's ``LICENSE.txt``), which permits any use, commercial included.
- The model file ``shape_predictor_68_face_landmarks.dat`` comes with the
  ``face-recognition-models`` package (0.3.0, by Adam Geitgey); nothing is downloaded at run
  time. The package's metadata says MIT, its ``LICENSE`` file is CC0 1.0, and its README says
  the models "were created by Davis King and are licensed in the public domain or under CC0
  1.0 Universal". But this model was trained by Davis King on the iBUG 300-W dataset
  (C. Sagonas, G. Tzimiropoulos, S. Zafeiriou, M. Pantic, "300 Faces in-the-Wild Challenge",
  ICCV workshops 2013: LFPW, HELEN, AFW and IBUG faces annotated with 68 points), and the
  300-W dataset's licence excludes commercial use. dlib's model page (dlib-models README)
  says so, and asks, at the request of one of the dataset's creators, that the trained model
  not be used in a commercial product. This pipeline uses it for research only; anyone
  reusing the landmarks commercially must train their own predictor on data that allows it.

The points are a fixed set of 68 (the iBUG/Multi-PIE markup): jaw 0-16, right brow 17-21,
left brow 22-26, nose 27-35, right eye 36-41, left eye 42-47, mouth 48-67 ("right" and "left"
are the person's own; :mod:`lfwcnn.part_masks` groups them).
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lfwcnn.atomic import atomic_path
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import load_npz
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)

N_POINTS = 68
LFW_SIDE = 250
# The fallback face box (left, top, right, bottom) in LFW's 250x250 frame: centre (129, 136)
# and side 104 are the medians of the boxes dlib's detector (upsample 0) finds on every third
# of the 2,370 deep-funneled images of the people with at least 30 images (789 boxes).
LFW_CENTRE_BOX = (77, 84, 181, 188)
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CHUNK = 32  # images per task handed to a worker process
ARRAYS = ("points", "detected", "files")


@dataclass(frozen=True)
class Landmarks:
    """``points`` float32 (n, 68, 2) as (x, y) = (column, row) in the crop frame (pixel
    centres at integers; may lie outside ``[0, size)``, e.g. the chin); ``detected`` bool (n,):
    dlib's detector found the face (else the centre box was used); ``files`` as the dataset's."""

    points: np.ndarray
    detected: np.ndarray
    files: np.ndarray


def predictor_path() -> Path:
    """The 68-point model file that ``face-recognition-models`` installs (found without
    importing the package, whose ``__init__`` needs the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LfwcnnError("the face-recognition-models package is not installed "
                          "(pip install face-recognition-models==0.3.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise LfwcnnError(f"{path}: the 68-point landmark model is missing")
    return path


def to_crop_frame(points: np.ndarray, crop_rows: tuple[int, int], crop_cols: tuple[int, int],
                  size: int) -> np.ndarray:
    """Map (x, y) pixel coordinates of the 250x250 image into the crop resized to ``size``.

    Pillow's resize maps output pixel centre ``j`` to input ``(j + 0.5) * scale - 0.5``, so
    an input coordinate ``u`` (relative to the crop's first pixel) lands at
    ``(u + 0.5) / scale - 0.5``.
    """
    points = np.asarray(points, dtype=np.float64)
    offset = np.array([crop_cols[0], crop_rows[0]], dtype=np.float64)
    scale = np.array([(crop_cols[1] - crop_cols[0]) / size,
                      (crop_rows[1] - crop_rows[0]) / size])
    return ((points - offset + 0.5) / scale - 0.5).astype(np.float32)


class _Finder:
    """dlib's detector and predictor, loaded once per process."""

    def __init__(self, upsample: int):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))
        self.upsample = upsample
        self.dlib = dlib

    def find(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """68 (x, y) points in the image's own frame, and whether a face was detected."""
        rects = list(self.detector(image, self.upsample))
        if rects:
            centre = np.array(image.shape[1::-1]) / 2
            rect = min(rects, key=lambda r: float(np.hypot(*(
                np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2]) - centre))))
        else:
            rect = self.dlib.rectangle(*LFW_CENTRE_BOX)
        shape = self.predictor(image, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return points, bool(rects)


_FINDER: _Finder | None = None


def _init_worker(upsample: int) -> None:
    global _FINDER
    _FINDER = _Finder(upsample)


def read_lfw_image(path: Path) -> np.ndarray:
    """One 250x250 LFW image as uint8 RGB; anything else is one line naming the file."""
    try:
        with Image.open(path) as image:
            if image.size != (LFW_SIDE, LFW_SIDE):
                raise LfwcnnError(f"{path}: image is {image.size[0]}x{image.size[1]}, LFW images "
                                  f"are {LFW_SIDE}x{LFW_SIDE} (the crop box refers to that frame)")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError) as err:
        raise LfwcnnError(f"{path}: not a readable image ({err})") from None


def _find_chunk(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    assert _FINDER is not None, "worker not initialised"
    found = [_FINDER.find(read_lfw_image(p)) for p in paths]
    return np.stack([f[0] for f in found]), np.array([f[1] for f in found], dtype=bool)


def find_landmarks_in(paths: Sequence[Path], *, workers: int, upsample: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """68 points (float64 (n, 68, 2), the images' own frame) and ``detected`` (n,) for LFW
    images, in the order given, over ``workers`` processes (1: in this process)."""
    chunks = [list(paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    if not chunks:
        return np.zeros((0, N_POINTS, 2)), np.zeros(0, dtype=bool)
    if workers <= 1:
        _init_worker(upsample)
        results = [_find_chunk(chunk) for chunk in chunks]
    else:
        # fork, as lfwcnn.prepare's pool on Linux: a forkserver or spawned worker re-imports
        # the __main__ script, which for a Snakemake job is the step's script (it would run
        # the step again). dlib holds the GIL, so threads would not run in parallel.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(upsample,),
                                 mp_context=multiprocessing.get_context(method)) as pool:
            results = list(pool.map(_find_chunk, chunks))  # map keeps the order
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def compute_landmarks(files: Sequence[str], root: str | os.PathLike, *,
                      crop_rows: tuple[int, int], crop_cols: tuple[int, int], size: int,
                      workers: int = 1, upsample: int = 0) -> Landmarks:
    """Landmarks of the LFW images ``root/<file>`` in the crop frame of a prepared dataset
    (``crop_rows``/``crop_cols`` of the 250x250 image resized to ``size``), in ``files``'
    order. Deterministic: dlib's detector and predictor have no randomness."""
    root = Path(root)
    paths = [root / str(f) for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise LfwcnnError(f"{missing[0]}: no such image ({len(missing)} of the dataset's "
                          f"{len(paths)} files are missing from {root})")
    raw, detected = find_landmarks_in(paths, workers=workers, upsample=upsample)
    points = to_crop_frame(raw, tuple(crop_rows), tuple(crop_cols), size)
    log.info("landmarks: a face detected in %d of %d images", int(detected.sum()), len(paths))
    return Landmarks(points=points, detected=detected, files=np.array([str(f) for f in files]))


def dataset_landmarks(dataset: str | os.PathLike, images: str | os.PathLike, data: Settings, *,
                      workers: int = 1, upsample: int = 0) -> Landmarks:
    """Landmarks for every face of a prepared ``dataset`` .npz whose images came from the
    LFW folder ``images``; ``data`` is the config's data section it was prepared with."""
    from lfwcnn.dataset import load_dataset

    prepared = load_dataset(dataset)
    size = prepared.images.shape[1]
    if size != data.image_size:
        raise LfwcnnError(f"{dataset}: images are {size}x{size} but data.image_size is "
                          f"{data.image_size}")
    return compute_landmarks(prepared.files, images, crop_rows=tuple(data.crop.rows),
                             crop_cols=tuple(data.crop.cols), size=size, workers=workers,
                             upsample=upsample)


def save_landmarks(path: str | os.PathLike, landmarks: Landmarks) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{name: getattr(landmarks, name) for name in ARRAYS})


def load_landmarks(path: str | os.PathLike) -> Landmarks:
    arrays = load_npz(path, ARRAYS, what="landmarks file")
    landmarks = Landmarks(points=arrays["points"].astype(np.float32),
                          detected=arrays["detected"].astype(bool), files=arrays["files"])
    n = len(landmarks.files)
    if landmarks.points.shape != (n, N_POINTS, 2) or landmarks.detected.shape != (n,):
        raise LfwcnnError(f"{path}: points {landmarks.points.shape} and detected "
                          f"{landmarks.detected.shape} do not fit {n} files")
    return landmarks


def find_landmarks(*, dataset: Path, images: Path, landmarks: Path, data: Settings,
                   views: Settings, threads: int = 1) -> None:
    """Step: the landmarks of every face of ``dataset`` (prepared from the LFW folder
    ``images`` with the config section ``data``) written to ``landmarks`` (.npz: points,
    detected, files), over ``threads`` worker processes."""
    check_outputs({"landmarks": landmarks}, {"dataset": dataset, "images": images})
    save_landmarks(landmarks, dataset_landmarks(dataset, images, data, workers=threads,
                                                upsample=views.landmarks.upsample))
