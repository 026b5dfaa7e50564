"""The figure steps: read a stage's outputs, pool what spans seeds, draw them with lfwcnn.plots.

* ``training``: Fig. 5's curves, each seed's test accuracy against the paper's, the confusion
  matrix of all seeds' test predictions pooled, with per-class scores;
* ``activations``: Fig. 6, the test image, Figs. 7-12, one grid per conv and pooling layer,
  and the sparsity of each layer over the test set (claim C4).

The drawing itself lives in :mod:`lfwcnn.plots`; this module stays the entry point the
workflow calls, one command per stage whose outputs it draws::

    python -m lfwcnn.figures training --histories ... --metrics ... --confusions ... \\
        --aggregate results/eval/funneled/aggregate.json --out-dir results/figures/funneled
    python -m lfwcnn.figures activations --dir results/activations/funneled/seed0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn import plots
from lfwcnn.atomic import write_text
from lfwcnn.cli import run
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import per_class
from lfwcnn.loading import load_npz, read_history, read_json
from lfwcnn.model import FEATURE_LAYER, POOL
from lfwcnn.ownership import check_outputs, in_folder, listed
from lfwcnn.tables import read_confusion

log = logging.getLogger(__name__)

TRAINING_OUTPUTS = ("curves.png", "accuracy.png", "confusion.csv", "confusion.png", "per_class.csv")


def pooled_confusion(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The sum of the seeds' confusion matrices: every test prediction of every seed."""
    if not paths:
        raise LfwcnnError("no confusion matrices given")
    matrices = [read_confusion(path) for path in paths]
    first = matrices[0]
    for path, matrix in zip(paths[1:], matrices[1:], strict=True):
        if list(matrix.index) != list(first.index):
            raise LfwcnnError(f"{path}: other classes than {paths[0]}")
    total = sum(matrix.to_numpy() for matrix in matrices)
    return pd.DataFrame(total, index=pd.Index(first.index, name="true"), columns=first.columns)


def paper_figure_numbers(layers: Sequence[str]) -> dict[str, str]:
    """conv1 -> Fig. 7, pool1 -> Fig. 8, ... conv3 -> Fig. 11, pool3 -> Fig. 12."""
    numbers = {}
    for name in layers:
        kind, block = FEATURE_LAYER.fullmatch(name).groups()
        number = 7 + 2 * (int(block) - 1) + (kind == POOL)
        if number <= 12:
            numbers[name] = f"Fig. {number}"
    return numbers


def draw_activations(folder: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     per_row: int = plots.TILES_PER_ROW) -> dict:
    """Draw the input image, one grid per layer and the sparsity plot of an activations folder.

    Writes ``input.png``, ``<layer>.png``, ``sparsity.png`` and ``grids.json`` (per layer: the
    shape, the number of tiles drawn and of blank maps) into ``out_dir`` (default
    ``<folder>/figures``); returns the ``grids.json`` content.
    """
    folder = Path(folder)
    out = Path(out_dir) if out_dir else folder / "figures"
    record = read_json(folder / "image.json")
    image = load_npz(folder / "image.npz")["image"]
    verdict = "correct" if record.get("correct") else "wrong"
    title = (f"{record['file']}\n{image.shape[0]} x {image.shape[1]} pixels; predicted "
             f"{record['predicted']}\n({record['predicted_probability']:.0%}, {verdict})")
    plots.plot_input_image(image, title, out / "input.png")
    layers = [entry["layer"] for entry in record["layers"]]
    figures = paper_figure_numbers(layers)
    grids = []
    for layer in layers:
        maps = load_npz(folder / f"{layer}.npz")["activations"]
        grid = plots.plot_layer_grid(maps, layer, out / f"{layer}.png",
                                     figure=figures.get(layer), per_row=per_row)
        grid["paper_figure"] = figures.get(layer)
        grids.append(grid)
    sparsity = load_npz(folder / "sparsity.npz")
    plots.plot_sparsity([str(name) for name in sparsity["layers"]], sparsity["zero_share"],
                        sparsity["blank_share"], out / "sparsity.png",
                        image_position=record.get("test_position"))
    manifest = {"image": record["file"], "layers": grids, "input": "input.png",
                "sparsity": "sparsity.png"}
    write_text(out / "grids.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def draw_training(*, histories: Sequence[str], metrics: Sequence[str],
                  confusions: Sequence[str], aggregate: str, out_dir: str | os.PathLike) -> None:
    """Curves, accuracy distribution, pooled confusion matrix and per-class table."""
    if len(histories) != len(metrics):
        raise LfwcnnError(f"{len(histories)} histories but {len(metrics)} metrics files")
    out = Path(out_dir)
    summary = read_json(aggregate)
    records = [read_json(path) for path in metrics]
    seeds = [record.get("seed", k) for k, record in enumerate(records)]
    curves = {seed: read_history(path) for seed, path in zip(seeds, histories, strict=True)}
    plots.plot_curves(curves, out / "curves.png", paper_accuracy=summary.get("paper_accuracy"))
    rows = []
    for seed, record in zip(seeds, records, strict=True):
        interval = record.get("accuracy_interval") or {}
        rows.append({"seed": seed, "accuracy": float(record["accuracy"]),
                     "ci_low": interval.get("low"), "ci_high": interval.get("high")})
    plots.plot_accuracy_distribution(rows, summary, out / "accuracy.png")
    confusion = pooled_confusion(confusions)
    write_text(out / "confusion.csv", confusion.to_csv())
    counts = confusion.to_numpy()
    correct, total = int(np.trace(counts)), int(counts.sum())
    plots.plot_confusion(confusion, f"{len(confusions)} seeds pooled: {correct}/{total} "
                         f"correct ({correct / max(total, 1):.1%})", out / "confusion.png")
    write_text(out / "per_class.csv",
               per_class(confusion).to_csv(index=False, float_format="%.4f"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("training", help="curves, accuracy, confusion matrix")
    training.add_argument("--histories", nargs="+", required=True, help="history.csv per seed")
    training.add_argument("--metrics", nargs="+", required=True,
                          help="metrics.json per seed, in the order of --histories")
    training.add_argument("--confusions", nargs="+", required=True, help="confusion.csv per seed")
    training.add_argument("--aggregate", required=True, help="aggregate.json")
    training.add_argument("--out-dir", required=True)
    activations = commands.add_parser("activations", help="input image, layer grids, sparsity")
    activations.add_argument("--dir", required=True, help="output folder of lfwcnn.activations")
    activations.add_argument("--out-dir", help="default: <dir>/figures")
    activations.add_argument("--per-row", type=int, default=plots.TILES_PER_ROW)
    args = parser.parse_args(argv)
    if args.command == "training":
        check_outputs(in_folder("--out-dir", args.out_dir, TRAINING_OUTPUTS),
                      {**listed("--histories", args.histories),
                       **listed("--metrics", args.metrics),
                       **listed("--confusions", args.confusions), "--aggregate": args.aggregate})
        draw_training(histories=args.histories, metrics=args.metrics,
                      confusions=args.confusions, aggregate=args.aggregate,
                      out_dir=args.out_dir)
        log.info("training figures written to %s", args.out_dir)
    else:
        manifest = draw_activations(args.dir, args.out_dir, args.per_row)
        log.info("grids of %s drawn for %s", ", ".join(g["layer"] for g in manifest["layers"]),
                 manifest["image"])


if __name__ == "__main__":
    raise SystemExit(run(main))
