"""Claims C4 and C6: what every conv and pooling layer makes of a test face, and how sparse it is.

Besides the activations of one chosen test image (Figs. 6-12, one ``.npz`` per layer), the
share of exactly-zero activations and of blank (all-zero) feature maps is measured over the
whole test set: one image cannot carry the paper's "deeper layers are sparser". The step is
:func:`export_activations` (rule ``export_activations``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn.atomic import atomic_path, write_text
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import load_model
from lfwcnn.model import BATCH_SIZE, feature_layers, layer_outputs, scale_pixels
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Choice:
    index: int  # row in the dataset arrays
    test_position: int  # position in the split file's test subset
    rule: str  # why this image


def choose_image(data: Dataset, test_idx: np.ndarray, *, image: str | None = None,
                 person: str | None = None) -> Choice:
    """Pick the test image: ``image`` by file name, else ``person``'s first, else the first
    (first in the split file's order).

    ``image`` is a path relative to the LFW root (``Person/Person_0001.jpg``) or just the file
    name. The paper's image is "an example from the test data which the network is not trained
    on", so a named image from the training subset is an error, not a silent substitute.
    """
    files = [str(name) for name in data.files]
    names = [str(name) for name in data.class_names]
    if person is not None:
        # the folder's own name first: a folder may hold spaces ("Poe, Carol")
        wanted = person if person in names else person.strip().replace(" ", "_")
        if wanted not in names:
            raise LfwcnnError(f"activations.person {person!r} is not one of the {len(names)} "
                              "people in the dataset (names are spelt as the LFW folders, e.g. "
                              "George_W_Bush)")
        label = names.index(wanted)
    if image is not None:
        row = next((i for i, name in enumerate(files) if image in (name, name.rsplit("/")[-1])),
                   None)
        if row is None:
            raise LfwcnnError(f"activations.image {image!r} is not an image of the dataset")
        where = np.flatnonzero(test_idx == row)
        if not where.size:
            raise LfwcnnError(f"activations.image {image!r} is in the training subset of this "
                              "split; choose an image of the test subset (the paper's image is "
                              "a test image)")
        if person is not None and data.labels[row] != label:
            raise LfwcnnError(f"activations.image {image!r} shows {names[data.labels[row]]}, "
                              f"not activations.person {person!r}")
        return Choice(int(row), int(where[0]), f"the configured image {files[row]}")
    if person is not None:
        positions = np.flatnonzero(data.labels[test_idx] == label)
        if not positions.size:
            raise LfwcnnError(f"activations.person {person!r} has no image in the test subset "
                              "of this split")
        position = int(positions[0])
        return Choice(int(test_idx[position]), position,
                      f"the first test image of {wanted} in the split file")
    return Choice(int(test_idx[0]), 0, "the first test image in the split file")


def image_sparsity(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image of a (N, H, W, C) batch: share of zero activations, share of blank maps.

    A value counts as zero only if it is exactly 0, as ReLU leaves it (and max pooling of
    ReLU outputs keeps it); a map is blank when all of its H x W values are zero.
    """
    zero = maps == 0
    return zero.mean(axis=(1, 2, 3)), zero.all(axis=(1, 2)).mean(axis=1)


@dataclass(frozen=True)
class Sparsity:
    layers: list[str]
    shapes: list[tuple[int, int, int]]
    zero_share: np.ndarray  # (images, layers)
    blank_share: np.ndarray  # (images, layers)
    never_active: list[int]  # per layer: maps that are blank in every image


def measure_sparsity(extractor, names: Sequence[str], images: np.ndarray,
                     batch_size: int = BATCH_SIZE) -> Sparsity:
    """Both sparsity measures for every image and layer, without holding all maps at once."""
    zero_parts, blank_parts, active_parts = [], [], []
    for outputs in layer_outputs(extractor, images, batch_size):
        shares = [image_sparsity(out) for out in outputs]
        zero_parts.append(np.stack([zero for zero, _ in shares], axis=1))
        blank_parts.append(np.stack([blank for _, blank in shares], axis=1))
        active_parts.append([(out != 0).any(axis=(0, 1, 2)) for out in outputs])
    return Sparsity(
        layers=list(names),
        shapes=[tuple(int(s) for s in out.shape[1:]) for out in outputs],
        zero_share=np.concatenate(zero_parts),
        blank_share=np.concatenate(blank_parts),
        never_active=[int((~np.any(active, axis=0)).sum())
                      for active in zip(*active_parts, strict=True)],
    )


def sparsity_rows(sparsity: Sparsity, image_position: int) -> list[dict]:
    """One row per layer, its keys the columns of the sparsity table; ``image_position``: the
    chosen image's row in the measures."""
    rows = []
    for k, (name, shape) in enumerate(zip(sparsity.layers, sparsity.shapes, strict=True)):
        row = {"layer": name, "height": shape[0], "width": shape[1], "channels": shape[2],
               "images": int(len(sparsity.zero_share))}
        for measure in ("zero_share", "blank_share"):
            values = getattr(sparsity, measure)[:, k]
            row.update({
                f"{measure}_mean": float(values.mean()),
                f"{measure}_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                f"{measure}_min": float(values.min()),
                f"{measure}_max": float(values.max()),
            })
        row["never_active_maps"] = sparsity.never_active[k]
        row["image_zero_share"] = float(sparsity.zero_share[image_position, k])
        row["image_blank_maps"] = int(round(sparsity.blank_share[image_position, k] * shape[2]))
        rows.append(row)
    return rows


def save_npz(path: Path, **arrays) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def layer_files(paths: Sequence[Path], what: str) -> dict[str, Path]:
    """One file per layer, named after it (``conv1.npz``): layer name -> path, in order."""
    files = {Path(path).stem: Path(path) for path in paths}
    if len(files) != len(paths):
        raise LfwcnnError(f"{what}: two files for one layer ({', '.join(map(str, paths))})")
    return files


def export_activations(*, model: Path, dataset: Path, split: Path, layers: list[Path],
                       image: Path, record: Path, per_image: Path, table: Path, summary: Path,
                       activations: Settings, seed: int) -> None:
    """Step: for the configured test image, ``image`` (the uint8 face), ``record`` (which face,
    why, what the model predicts) and one file per layer in ``layers``, named after it
    (``activations`` float32 (H, W, C), ``layer``, ``image_file``); over the test set,
    ``per_image`` (sparsity per image and layer), ``table`` and ``summary`` (per layer: mean,
    spread and extremes across test images)."""
    import keras

    layer_paths = layer_files(layers, "layers")
    check_outputs({**listed("layers", layers), "image": image, "record": record,
                   "per_image": per_image, "table": table, "summary": summary},
                  {"model": model, "dataset": dataset, "split": split})
    data = load_dataset(dataset)
    _, test_idx = load_split(split, data)
    start = time.perf_counter()
    provenance = {"seed": seed, "model": str(model), "split": str(split)}
    choice = choose_image(data, test_idx, image=activations.image, person=activations.person)
    network = load_model(model, data.images)
    names = list(layer_paths)
    present = feature_layers(network)
    missing = [name for name in names if name not in present]
    if missing:
        raise LfwcnnError(f"the model has no conv/pooling layer {', '.join(missing)}; it has "
                          f"{', '.join(present) or 'none'}")
    # one model from the input to every layer's output, sharing the trained weights
    extractor = keras.Model(network.inputs[0],
                            [network.get_layer(name).output for name in names],
                            name="feature_maps")
    face = data.images[choice.index]
    file = str(data.files[choice.index])
    maps = next(layer_outputs(extractor, face[None]))
    for name, layer_maps in zip(names, maps, strict=True):
        save_npz(layer_paths[name], activations=layer_maps[0], layer=np.array(name),
                 image_file=np.array(file))
    save_npz(image, image=face, image_file=np.array(file))
    probabilities = np.asarray(network(scale_pixels(face[None]), training=False))[0]
    predicted = int(probabilities.argmax())

    sparsity = measure_sparsity(extractor, names, data.images[test_idx])
    rows = sparsity_rows(sparsity, choice.test_position)
    save_npz(per_image, layers=np.array(names),
             zero_share=sparsity.zero_share.astype(np.float32),
             blank_share=sparsity.blank_share.astype(np.float32),
             files=data.files[test_idx])
    write_text(table, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    label = int(data.labels[choice.index])
    chosen = {
        "file": file, "person": str(data.class_names[label]), "label": label,
        "dataset_index": choice.index, "test_position": choice.test_position,
        "chosen_by": choice.rule, "predicted": str(data.class_names[predicted]),
        "predicted_probability": float(probabilities[predicted]), "correct": predicted == label,
        "layers": [{"layer": row["layer"], "shape": [row["height"], row["width"], row["channels"]],
                    "zero_share": row["image_zero_share"],
                    "blank_maps": row["image_blank_maps"]} for row in rows],
        **provenance,
    }
    write_text(record, json.dumps(chosen, indent=2) + "\n")
    write_text(summary, json.dumps({
        "test_images": int(len(test_idx)), "layers": rows,
        "image": {"file": file, "person": chosen["person"]},
        "definitions": {
            "zero_share": "share of the activations of a layer that are exactly 0",
            "blank_share": "share of the feature maps of a layer that are 0 everywhere",
            "never_active_maps": "feature maps that are blank for every test image",
        },
        "seconds": round(time.perf_counter() - start, 3), **provenance,
    }, indent=2) + "\n")
    for row in rows:
        log.info("%s %dx%dx%d: %.1f %% zero activations, %.1f %% blank maps (mean over %d "
                 "test images)", row["layer"], row["height"], row["width"], row["channels"],
                 100 * row["zero_share_mean"], 100 * row["blank_share_mean"], row["images"])
