"""The step of issue 15's views of what the network learned (claims C7 and C8),
:func:`view_network`, for a trained model and, as the control, the same network with its
untrained initial weights (the weights training with the same seed starts from):

* :func:`dissect_units`: network dissection on face parts (:mod:`lfwcnn.dissection`, masks
  from the landmarks of :func:`lfwcnn.landmarks.find_landmarks`), the C7 verdict;
* :func:`invert_layers`: the test faces reconstructed from every layer's activations
  (:mod:`lfwcnn.inversion`), PSNR and SSIM per layer, the C8 verdict;
* :func:`draw_filter_patterns`: the input that maximises each filter of a conv layer;
* :func:`draw_gradcam`: Grad-CAM of one test face per person (:mod:`lfwcnn.gradcam`).

One step, not four: each view takes a few seconds, less than starting TensorFlow, loading
the model and building its untrained twin, which the four so share (a change of any
``views`` key reruns all four, about half a minute on 2 CPU cores). Every output is a file
a person can open (CSV, JSON, npz, PNG); the report (:mod:`lfwcnn.report`,
:func:`lfwcnn.claims.verdict_c7` and ``verdict_c8``) reads the JSON.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn import plots
from lfwcnn.activations import layer_files, save_npz
from lfwcnn.atomic import atomic_path, write_text
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import load_model
from lfwcnn.landmarks import Landmarks, load_landmarks
from lfwcnn.model import FEATURE_LAYER, scale_pixels
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)

TOP_UNITS = 2  # top units of each C7 part shown with their top-activating faces
TOP_FACES = 4
SENSITIVITY = (0.75, 1.25)  # C7 also judged at these multiples of the IoU threshold


def write_json(path: Path, value: dict) -> None:
    import json

    write_text(path, json.dumps(value, indent=2, default=float) + "\n")


def write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def feature_layers(network) -> list[str]:
    """The conv and pooling layers of a model, in order (conv1, pool1, ...)."""
    names = [layer.name for layer in network.layers if FEATURE_LAYER.match(layer.name)]
    if not names:
        raise LfwcnnError(f"model {network.name} has no conv/pooling layer (conv1, pool1, ...)")
    return names


def dissect_units(nets: dict, data: Dataset, test_idx: np.ndarray, marks: Landmarks,
                  settings: Settings, *, units: Path, counts: Path, detectors: Path,
                  top_units: Path) -> None:
    """Every channel of every conv and pooling layer of both networks dissected on the test
    faces' part masks: ``units`` (CSV: network, layer, channel, region, iou, detector),
    ``counts`` (JSON: detectors per layer and region of each network, channels per layer,
    region shares and the IoU each can reach, top eye and mouth units, the C7 verdict),
    ``detectors`` (detectors per layer and part, trained vs untrained) and ``top_units`` (the
    top eye and mouth units' top-activating faces, region overlaid)."""
    from lfwcnn.dissection import (
        C7_PARTS,
        c7_verdict,
        detector_counts,
        dissect,
        layer_activations,
        max_iou,
        units_per_layer,
    )
    from lfwcnn.part_masks import part_masks, region_shares

    masks = part_masks(marks.points[test_idx], data.images.shape[1], grow=settings.grow)
    faces = scale_pixels(data.images[test_idx])
    tables, acts = {}, {}
    for name, net in nets.items():
        acts[name] = layer_activations(net, feature_layers(net), faces)
        tables[name] = dissect(acts[name], masks, quantile=settings.quantile,
                               iou_threshold=settings.iou_threshold)
    per_layer = units_per_layer(tables["trained"])
    first = next(iter(per_layer))

    def verdict_at(threshold: float) -> dict:
        found = {name: detector_counts(table.assign(detector=table["iou"] > threshold))
                 for name, table in tables.items()}
        return {"found": found, **c7_verdict(found["trained"], found["untrained"], first=first,
                                             units=per_layer)}

    verdict = verdict_at(settings.iou_threshold)
    found = verdict.pop("found")
    # C7 is fragile near the threshold: the verdict at a quarter below and above it
    sensitivity = {}
    for factor in SENSITIVITY:
        threshold = round(settings.iou_threshold * factor, 6)
        other = verdict_at(threshold)
        sensitivity[str(threshold)] = {"holds": other["holds"], "counts": other["counts"]}
    shares = region_shares(masks)
    trained = tables["trained"]
    top = []
    for part in C7_PARTS:
        top += trained[trained["region"] == part].nlargest(TOP_UNITS, "iou").to_dict("records")
    write_csv(units, pd.concat([t.assign(network=name) for name, t in tables.items()])[
        ["network", "layer", "channel", "region", "iou", "detector"]])
    write_json(counts, {
        "quantile": settings.quantile, "iou_threshold": settings.iou_threshold,
        "grow": settings.grow, "test_faces": len(test_idx),
        "detected_faces": int(marks.detected[test_idx].sum()),
        "units": per_layer,
        "counts": {name: {layer: {region: int(n) for region, n in row.items()}
                          for layer, row in table.to_dict(orient="index").items()}
                   for name, table in found.items()},
        "best_iou": {name: table.groupby("region", sort=False)["iou"].max().to_dict()
                     for name, table in tables.items()},
        "region_shares": shares,
        "max_iou": {region: max_iou(settings.quantile, share) for region, share in shares.items()},
        "top_units": [{key: (value.item() if hasattr(value, "item") else value)
                       for key, value in row.items()} for row in top],
        "c7": verdict,
        "c7_at_other_thresholds": sensitivity,
    })
    plots.plot_detector_counts(found, settings.iou_threshold, detectors)
    plots.plot_top_units(data.images[test_idx], top, acts["trained"], masks, settings.quantile,
                         TOP_FACES, top_units)
    log.info("C7 %s: detectors (eyes, mouth) trained %s, untrained %s",
             "holds" if verdict["holds"] else "does not hold",
             [c["trained"] for c in verdict["counts"].values()],
             [c["untrained"] for c in verdict["counts"].values()])


def invert_layers(nets: dict, data: Dataset, test_idx: np.ndarray, settings: Settings, *,
                  reconstructions: Path, scores: Path, summary: Path, figure: Path) -> None:
    """The first ``settings.faces`` test faces reconstructed from each conv and pooling layer
    of both networks: ``reconstructions`` (npz: faces, layers, and ``<network>_<layer>``
    (n, H, W, 3) in [0, 1]), ``scores`` (CSV: network, layer, image, psnr, ssim), ``summary``
    (JSON: mean PSNR and SSIM per layer, the C8 verdict) and ``figure`` (side by side)."""
    from lfwcnn.inversion import c8_verdict, invert_layer, reconstruction_scores

    chosen = test_idx[: settings.faces]
    faces = scale_pixels(data.images[chosen])
    arrays: dict[str, np.ndarray] = {}
    tables, means = [], {}
    for name, net in nets.items():
        layers = feature_layers(net)
        recon = {layer: invert_layer(net, layer, faces, steps=settings.steps,
                                     learning_rate=settings.learning_rate,
                                     tv_weight=settings.tv_weight, seed=settings.seed)
                 for layer in layers}
        arrays.update({f"{name}_{layer}": images for layer, images in recon.items()})
        table = reconstruction_scores(faces, recon).assign(network=name)
        tables.append(table)
        means[name] = table.groupby("layer", sort=False)[["psnr", "ssim"]].mean()
    verdict = c8_verdict(means["trained"]["ssim"].to_dict(), means["untrained"]["ssim"].to_dict(),
                         threshold=settings.ssim_threshold)
    save_npz(reconstructions, faces=faces, files=data.files[chosen], layers=np.array(layers),
             **arrays)
    write_csv(scores, pd.concat(tables)[["network", "layer", "image", "psnr", "ssim"]])
    write_json(summary, {
        "faces": [str(f) for f in data.files[chosen]], "steps": settings.steps,
        "tv_weight": settings.tv_weight, "ssim_threshold": settings.ssim_threshold,
        "layers": {name: [{"layer": layer, "psnr": float(row["psnr"]), "ssim": float(row["ssim"])}
                          for layer, row in table.iterrows()] for name, table in means.items()},
        "c8": verdict,
    })
    plots.plot_reconstructions(faces, {name: {layer: arrays[f"{name}_{layer}"]
                                              for layer in layers} for name in nets},
                               tables, figure)
    log.info("C8 %s: mean SSIM per layer (trained) %s", "holds" if verdict["holds"] else
             "does not hold", {k: round(v, 3) for k, v in means["trained"]["ssim"].items()})


def draw_filter_patterns(network, settings: Settings, grids: dict[str, Path]) -> None:
    """For each conv layer of ``grids`` (layer -> file), a grid of the inputs that maximise
    each of its filters (gradient ascent from a neutral grey image)."""
    from lfwcnn.inversion import filter_patterns

    for layer, path in grids.items():
        patterns = filter_patterns(network, layer, steps=settings.steps,
                                   step_size=settings.step_size, seed=settings.seed)
        plots.plot_patterns(patterns, layer, path)


def draw_gradcam(network, data: Dataset, test_idx: np.ndarray, per_person: int, *,
                 figure: Path, table: Path) -> None:
    """Grad-CAM (last conv layer, for the predicted person) of the first ``per_person`` test
    faces of each person, overlaid on the faces in ``figure``, with the true and the
    predicted person (also in ``table``, CSV)."""
    from lfwcnn.gradcam import gradcam, last_conv_layer

    chosen = [int(i) for label in range(data.n_classes)
              for i in test_idx[data.labels[test_idx] == label][:per_person]]
    faces = scale_pixels(data.images[chosen])
    predicted = np.asarray(network(faces, training=False)).argmax(axis=1)
    layer = last_conv_layer(network)
    cams = gradcam(network, faces, predicted, layer=layer)
    names = [str(name) for name in data.class_names]
    rows = pd.DataFrame({"file": data.files[chosen],
                         "true": [names[data.labels[i]] for i in chosen],
                         "predicted": [names[p] for p in predicted], "layer": layer})
    rows["correct"] = rows["true"] == rows["predicted"]
    write_csv(table, rows)
    plots.plot_gradcam(data.images[chosen], cams, rows, figure)


def view_network(*, network: Path, dataset: Path, split: Path, landmarks: Path, units: Path,
                 dissection: Path, detectors: Path, top_units: Path, reconstructions: Path,
                 inversion_scores: Path, inversion: Path, reconstruction_grid: Path,
                 patterns: list[Path], gradcam: Path, gradcam_faces: Path, model: Settings,
                 views: Settings, seed: int) -> None:
    """Step: the four views of the network ``network`` (trained with ``seed``) on the test
    faces of ``dataset`` and ``split``: the dissection (``units``, ``dissection``, ``detectors``,
    ``top_units``), the inversion (``reconstructions``, ``inversion_scores``, ``inversion``,
    ``reconstruction_grid``), the filter patterns (one grid of ``patterns`` per conv layer,
    named after it: ``conv1.png``) and Grad-CAM (``gradcam``, ``gradcam_faces``)."""
    from lfwcnn.dissection import untrained_model

    grids = layer_files(patterns, "patterns")
    check_outputs({"units": units, "dissection": dissection, "detectors": detectors,
                   "top_units": top_units, "reconstructions": reconstructions,
                   "inversion_scores": inversion_scores, "inversion": inversion,
                   "reconstruction_grid": reconstruction_grid, **listed("patterns", patterns),
                   "gradcam": gradcam, "gradcam_faces": gradcam_faces},
                  {"network": network, "dataset": dataset, "split": split,
                   "landmarks": landmarks})
    data = load_dataset(dataset)
    _, test_idx = load_split(split, data)
    if not len(test_idx):
        raise LfwcnnError(f"{split}: no test faces")
    marks = load_landmarks(landmarks)
    if list(map(str, marks.files)) != list(map(str, data.files)):
        raise LfwcnnError(f"{landmarks}: its faces are not those of {dataset} (run "
                          "find_landmarks again)")
    trained = load_model(network, data.images)
    nets = {"trained": trained,
            "untrained": untrained_model(data.n_classes, data.images.shape[1:], model, seed)}
    timed = Stopwatch()
    with timed("dissection"):
        dissect_units(nets, data, test_idx, marks, views.dissection, units=units,
                      counts=dissection, detectors=detectors, top_units=top_units)
    with timed("inversion"):
        invert_layers(nets, data, test_idx, views.inversion, reconstructions=reconstructions,
                      scores=inversion_scores, summary=inversion, figure=reconstruction_grid)
    with timed("filter patterns"):
        draw_filter_patterns(trained, views.filter_patterns, grids)
    with timed("Grad-CAM"):
        draw_gradcam(trained, data, test_idx, views.gradcam.per_person, figure=gradcam,
                     table=gradcam_faces)
    log.info("seconds: %s", timed)


class Stopwatch:
    """Wall seconds of each named part of a step, for its log."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds}" for name, seconds in self.seconds.items())
