"""The figure steps (rules ``draw_training`` and ``draw_activations``): read a stage's
outputs, pool what spans seeds, and draw them with :mod:`lfwcnn.plots`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn import plots
from lfwcnn.activations import layer_files
from lfwcnn.atomic import write_text
from lfwcnn.claims import PAPER
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import per_class as class_scores
from lfwcnn.loading import load_npz, read_history, read_json
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.tables import read_confusion

log = logging.getLogger(__name__)


def pooled_confusion(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The sum of the seeds' confusion matrices: every test prediction of every seed."""
    if not paths:
        raise LfwcnnError("no confusion matrices given")
    matrices = [read_confusion(path) for path in paths]
    first = matrices[0]
    for path, matrix in zip(paths[1:], matrices[1:], strict=True):
        if list(matrix.index) != list(first.index):
            raise LfwcnnError(f"{path}: other classes than {paths[0]}")
    return sum(matrices[1:], first).rename_axis("true")


def paper_figure_numbers(layers: Sequence[str]) -> dict[str, str]:
    """conv1 -> Fig. 7, pool1 -> Fig. 8, ... conv3 -> Fig. 11, pool3 -> Fig. 12."""
    return {name: f"Fig. {number}" for number, name in enumerate(PAPER["layers"], start=7)
            if name in layers}


def draw_activations(
    *, record: Path, face: Path, maps: list[Path], per_image: Path, input_figure: Path,
    grids: list[Path], sparsity: Path, manifest: Path,
) -> None:
    """Step: the input image (``face``, described by ``record``), one grid per layer of
    ``maps`` into ``grids`` (both one file per layer, named after it), the sparsity plot of
    ``per_image``, and ``manifest`` (per layer: the shape, the tiles drawn, the blank maps)."""
    check_outputs({"input_figure": input_figure, **listed("grids", grids), "sparsity": sparsity,
                   "manifest": manifest},
                  {"record": record, "face": face, **listed("maps", maps),
                   "per_image": per_image})
    description = read_json(record)
    layers = [entry["layer"] for entry in description["layers"]]
    sources, targets = layer_files(maps, "maps"), layer_files(grids, "grids")
    for what, files in (("maps", sources), ("grids", targets)):
        if list(files) != layers:
            raise LfwcnnError(f"{what}: files for {', '.join(files) or 'no layer'}, but "
                              f"{record} lists {', '.join(layers)}")
    image = load_npz(face)["image"]
    verdict = "correct" if description.get("correct") else "wrong"
    title = (f"{description['file']}\n{image.shape[0]} x {image.shape[1]} pixels; predicted "
             f"{description['predicted']}\n({description['predicted_probability']:.0%}, "
             f"{verdict})")
    plots.plot_input_image(image, title, input_figure)
    figures = paper_figure_numbers(layers)
    drawn = [{**plots.plot_layer_grid(load_npz(sources[layer])["activations"], layer,
                                      targets[layer], figure=figures.get(layer)),
              "paper_figure": figures.get(layer)} for layer in layers]
    shares = load_npz(per_image)
    plots.plot_sparsity([str(name) for name in shares["layers"]], shares["zero_share"],
                        shares["blank_share"], sparsity,
                        image_position=description.get("test_position"))
    write_text(manifest, json.dumps({"image": description["file"], "layers": drawn,
                                     "input": input_figure.name, "sparsity": sparsity.name},
                                    indent=2) + "\n")
    log.info("grids of %s drawn for %s", ", ".join(layers), description["file"])


def draw_training(
    *, histories: list[Path], metrics: list[Path], confusions: list[Path], aggregate: Path,
    curves: Path, accuracy: Path, confusion: Path, confusion_table: Path, per_class: Path,
) -> None:
    """Step: curves, accuracy distribution, pooled confusion matrix and per-class table."""
    check_outputs({"curves": curves, "accuracy": accuracy, "confusion": confusion,
                   "confusion_table": confusion_table, "per_class": per_class},
                  {**listed("histories", histories), **listed("metrics", metrics),
                   **listed("confusions", confusions), "aggregate": aggregate})
    if len(histories) != len(metrics):
        raise LfwcnnError(f"{len(histories)} histories but {len(metrics)} metrics files")
    summary = read_json(aggregate)
    records = [read_json(path) for path in metrics]
    seeds = [record.get("seed", k) for k, record in enumerate(records)]
    runs = {seed: read_history(path) for seed, path in zip(seeds, histories, strict=True)}
    plots.plot_curves(runs, curves, paper_accuracy=summary.get("paper_accuracy"))
    rows = [{"seed": seed, "accuracy": float(record["accuracy"]),
             **{f"ci_{end}": (record.get("accuracy_interval") or {}).get(end)
                for end in ("low", "high")}} for seed, record in zip(seeds, records, strict=True)]
    plots.plot_accuracy_distribution(rows, summary, accuracy)
    pooled = pooled_confusion(confusions)
    write_text(confusion_table, pooled.to_csv())
    counts = pooled.to_numpy()
    correct, total = int(np.trace(counts)), int(counts.sum())
    plots.plot_confusion(pooled, f"{len(confusions)} seeds pooled: {correct}/{total} "
                         f"correct ({correct / max(total, 1):.1%})", confusion)
    write_text(per_class, class_scores(pooled).to_csv(index=False, float_format="%.4f"))
    log.info("training figures written: %s", ", ".join(
        map(str, (curves, accuracy, confusion, confusion_table, per_class))))
