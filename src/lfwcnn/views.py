"""The step of issue 15's views of what the network learned (claims C7 and C8),
:func:`view_network`, for a trained model and, as the control, the same network with its
untrained initial weights (the weights training with the same seed starts from):

* network dissection on face parts (:func:`dissect_network`, :func:`write_dissection`;
  :mod:`lfwcnn.dissection`, masks from the landmarks of
  :func:`lfwcnn.landmarks.find_landmarks`), the C7 verdict;
* the test faces reconstructed from every layer's activations (:func:`write_inversion`;
  :mod:`lfwcnn.inversion`), PSNR and SSIM per layer, the C8 verdict;
* the input that maximises each filter of a conv layer (:mod:`lfwcnn.inversion`);
* Grad-CAM of one test face per person (:func:`gradcam_faces_of`; :mod:`lfwcnn.gradcam`).

One step, not four: each view takes a few seconds, less than starting TensorFlow, loading
the model and building its untrained twin, which the four so share (a change of any
``views`` key reruns all four, about half a minute on 2 CPU cores). Every output is a file
a person can open (CSV, JSON, npz, PNG); the report (:mod:`lfwcnn.report`,
:func:`lfwcnn.claims.verdict_c7` and ``verdict_c8``) reads the JSON.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn import plots
from lfwcnn.activations import layer_files, save_npz
from lfwcnn.atomic import write_text
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import load_model
from lfwcnn.landmarks import load_landmarks
from lfwcnn.model import feature_layers, initial_model, scale_pixels
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
    write_text(path, table.to_csv(index=False, float_format="%.6g"))


def dissect_network(network, faces: np.ndarray, masks: dict[str, np.ndarray],
                    settings: Settings) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The activations of ``network``'s conv and pooling layers for ``faces`` (uint8, as in
    the dataset) and their dissection table (:func:`lfwcnn.dissection.dissect`)."""
    from lfwcnn.dissection import dissect, layer_activations

    acts = layer_activations(network, feature_layers(network), faces)
    return acts, dissect(acts, masks, quantile=settings.quantile,
                         iou_threshold=settings.iou_threshold)


def write_dissection(tables: dict[str, pd.DataFrame], acts: dict[str, np.ndarray],
                     faces: np.ndarray, masks: dict[str, np.ndarray], detected: np.ndarray,
                     settings: Settings, *, units: Path, counts: Path, detectors: Path,
                     top_units: Path) -> None:
    """From both networks' dissection ``tables`` and the trained network's ``acts`` of the
    test ``faces``: ``units`` (CSV: network, layer, channel, region, iou, detector), ``counts``
    (JSON: detectors per layer and region of each network, channels per layer, region shares
    and the IoU each can reach, top eye and mouth units, the C7 verdict), ``detectors``
    (detectors per layer and part, trained vs untrained) and ``top_units`` (the top eye and
    mouth units' top-activating faces, region overlaid)."""
    from lfwcnn.dissection import (
        C7_PARTS,
        c7_verdict,
        detector_counts,
        max_iou,
        units_per_layer,
    )
    from lfwcnn.part_masks import region_shares

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
        "grow": settings.grow, "test_faces": len(faces), "detected_faces": int(detected.sum()),
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
    plots.plot_top_units(faces, top, acts, masks, settings.quantile, TOP_FACES, top_units)
    log.info("C7: eye and mouth detectors trained %s, untrained %s; more than untrained: %s, "
             "more per unit after %s: %s", [c["trained"] for c in verdict["counts"].values()],
             [c["untrained"] for c in verdict["counts"].values()],
             verdict["more_than_untrained"], first, verdict["more_in_deeper_layers"])


def write_inversion(faces: np.ndarray, files: np.ndarray,
                    recon: dict[str, dict[str, np.ndarray]], settings: Settings, *,
                    reconstructions: Path, scores: Path, summary: Path, figure: Path) -> None:
    """From the reconstructions ``recon`` (network -> layer -> (n, H, W, 3) in [0, 1]) of the
    test ``faces``: ``reconstructions`` (npz: faces, files, layers, and ``<network>_<layer>``),
    ``scores`` (CSV: network, layer, image, psnr, ssim), ``summary`` (JSON: mean PSNR and SSIM
    per layer, the C8 verdict) and ``figure`` (side by side)."""
    from lfwcnn.inversion import c8_verdict, reconstruction_scores

    tables = [reconstruction_scores(faces, layers).assign(network=name)
              for name, layers in recon.items()]
    means = {table["network"].iloc[0]: table.groupby("layer", sort=False)[["psnr", "ssim"]].mean()
             for table in tables}
    verdict = c8_verdict(means["trained"]["ssim"].to_dict(), means["untrained"]["ssim"].to_dict(),
                         threshold=settings.ssim_threshold)
    save_npz(reconstructions, faces=faces, files=files, layers=np.array(list(recon["trained"])),
             **{f"{name}_{layer}": images for name, layers in recon.items()
                for layer, images in layers.items()})
    write_csv(scores, pd.concat(tables)[["network", "layer", "image", "psnr", "ssim"]])
    write_json(summary, {
        "faces": [str(f) for f in files], "steps": settings.steps,
        "tv_weight": settings.tv_weight, "ssim_threshold": settings.ssim_threshold,
        "layers": {name: [{"layer": layer, "psnr": float(row["psnr"]), "ssim": float(row["ssim"])}
                          for layer, row in table.iterrows()] for name, table in means.items()},
        "c8": verdict,
    })
    plots.plot_reconstructions(faces, recon, tables, figure)
    log.info("C8 %s: mean SSIM per layer (trained) %s", "holds" if verdict["holds"] else
             "does not hold", {k: round(v, 3) for k, v in means["trained"]["ssim"].items()})


def gradcam_faces_of(network, data: Dataset, test_idx: np.ndarray, per_person: int
                     ) -> tuple[list[int], np.ndarray, pd.DataFrame]:
    """Grad-CAM (last conv layer, for the predicted person) of the first ``per_person`` test
    faces of each person: their indices, maps and a table (file, true and predicted person,
    layer, correct)."""
    from lfwcnn.gradcam import gradcam, last_conv_layer

    chosen = [int(i) for label in range(data.n_classes)
              for i in test_idx[data.labels[test_idx] == label][:per_person]]
    faces = scale_pixels(data.images[chosen])
    predicted = np.asarray(network(faces, training=False)).argmax(axis=1)
    layer = last_conv_layer(network)
    names = [str(name) for name in data.class_names]
    rows = pd.DataFrame({"file": data.files[chosen],
                         "true": [names[data.labels[i]] for i in chosen],
                         "predicted": [names[p] for p in predicted], "layer": layer})
    rows["correct"] = rows["true"] == rows["predicted"]
    return chosen, gradcam(network, faces, predicted, layer=layer), rows


def view_network(*, network: Path, dataset: Path, split: Path, landmarks: Path, units: Path,
                 dissection: Path, detectors: Path, top_units: Path, reconstructions: Path,
                 inversion_scores: Path, inversion: Path, reconstruction_grid: Path,
                 patterns: list[Path], gradcam: Path, gradcam_faces: Path, model: Settings,
                 views: Settings, seed: int, threads: int = 1) -> None:
    """Step: the four views of the network ``network`` (trained with ``seed``) and of its
    untrained twin on the test faces of ``dataset`` and ``split``: the dissection (``units``,
    ``dissection``, ``detectors``, ``top_units``), the inversion (``reconstructions``,
    ``inversion_scores``, ``inversion``, ``reconstruction_grid``), the filter patterns (one
    grid of ``patterns`` per conv layer, named after it: ``conv1.png``) and Grad-CAM
    (``gradcam``, ``gradcam_faces``).

    Their independent parts (each network's dissection, each network and layer's inversion,
    each layer's patterns, the Grad-CAM) run on ``threads`` threads (TensorFlow's ops release
    the GIL; each part's result does not depend on the others, so the files are the same for
    any number); the files are written in this thread."""
    from lfwcnn.inversion import filter_patterns, invert_layer
    from lfwcnn.part_masks import part_masks

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
    if not feature_layers(trained):
        raise LfwcnnError(f"{network}: the model has no conv/pooling layer (conv1, pool1, ...)")
    nets = {"trained": trained,
            "untrained": initial_model(data.n_classes, data.images.shape[1:], model, seed)}
    masks = part_masks(marks.points[test_idx], data.images.shape[1], grow=views.dissection.grow)
    faces = data.images[test_idx]
    inverted = test_idx[: views.inversion.faces]
    inverted_faces = scale_pixels(data.images[inverted])
    invert = {key: getattr(views.inversion, key)
              for key in ("steps", "learning_rate", "tv_weight", "seed")}
    ascend = {key: getattr(views.filter_patterns, key) for key in ("steps", "step_size", "seed")}
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:  # the longest parts first (the deepest layer's patterns: the most filters), the
        # files written in the order the parts finish, so that the writing overlaps the rest
        dissected = {name: pool.submit(dissect_network, net, faces, masks, views.dissection)
                     for name, net in nets.items()}
        ascended = {layer: pool.submit(filter_patterns, trained, layer, **ascend)
                    for layer in reversed(grids)}
        cams = pool.submit(gradcam_faces_of, trained, data, test_idx, views.gradcam.per_person)
        recon = {name: {layer: pool.submit(invert_layer, net, layer, inverted_faces, **invert)
                        for layer in feature_layers(net)}
                 for name, net in nets.items()}
        results = {name: part.result() for name, part in dissected.items()}
        write_dissection({name: table for name, (_, table) in results.items()},
                         results["trained"][0], faces, masks,
                         marks.detected[test_idx], views.dissection, units=units,
                         counts=dissection, detectors=detectors, top_units=top_units)
        del results
        for layer, path in grids.items():
            plots.plot_patterns(ascended[layer].result(), layer, path)
        chosen, maps, rows = cams.result()
        write_csv(gradcam_faces, rows)
        plots.plot_gradcam(data.images[chosen], maps, rows, gradcam)
        write_inversion(inverted_faces, data.files[inverted],
                        {name: {layer: part.result() for layer, part in layers.items()}
                         for name, layers in recon.items()},
                        views.inversion, reconstructions=reconstructions,
                        scores=inversion_scores, summary=inversion, figure=reconstruction_grid)
    finally:
        pool.shutdown(cancel_futures=True)
