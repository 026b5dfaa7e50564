"""The paper's figures, redrawn from this pipeline's outputs (matplotlib, Agg backend).

* Fig. 5, training curves: accuracy and loss per epoch, training and test, each seed drawn
  thinly and the mean over seeds boldly;
* the test accuracy of every seed against the paper's 83.47 %, with the intervals of
  ``lfwcnn.aggregate``;
* the confusion matrix of all seeds' test predictions pooled, with per-class scores;
* Fig. 6, the test image, and Figs. 7-12, every channel of every conv and pooling layer as
  a 2D image, one grid per layer;
* the sparsity of each layer over the whole test set (claim C4).

Two commands, one per stage whose outputs they draw::

    python -m lfwcnn.figures training --histories ... --metrics ... --confusions ... \\
        --aggregate results/eval/funneled/aggregate.json --out-dir results/figures/funneled
    python -m lfwcnn.figures activations --dir results/activations/funneled/seed0
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a cluster node or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lfwcnn import loading  # noqa: E402
from lfwcnn.atomic import atomic_path, write_text  # noqa: E402
from lfwcnn.cli import run  # noqa: E402
from lfwcnn.errors import LfwcnnError  # noqa: E402
from lfwcnn.model import FEATURE_LAYER, POOL  # noqa: E402
from lfwcnn.ownership import check_outputs, in_folder, listed  # noqa: E402

log = logging.getLogger(__name__)

TILES_PER_ROW = 16  # as the paper's grids: 32 maps of conv1 make two rows
TRAIN_COLOUR, TEST_COLOUR, PAPER_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"
DPI = 110
TRAINING_OUTPUTS = ("curves.png", "accuracy.png", "confusion.csv", "confusion.png", "per_class.csv")


def save_figure(fig, path: str | os.PathLike) -> None:
    """PNG without a timestamp in its metadata, written atomically; the figure is closed."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


# ----------------------------------------------------------------------------- Fig. 5


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A training history CSV, checked for the columns the curves need."""
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read the training history ({err})") from None
    missing = {"epoch", "loss", "accuracy", "test_loss", "test_accuracy"} - set(history.columns)
    if missing:
        raise LfwcnnError(f"{path}: history lacks the columns {sorted(missing)}")
    if history.empty:
        raise LfwcnnError(f"{path}: the training history has no epochs")
    return history


def mean_curves(histories: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean over seeds per epoch, of the epochs every seed has."""
    frames = [h.set_index("epoch") for h in histories.values()]
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index)
    stacked = np.stack([f.loc[common, ["loss", "accuracy", "test_loss", "test_accuracy"]]
                        .to_numpy(dtype=float) for f in frames])
    mean = pd.DataFrame(stacked.mean(axis=0), index=common,
                        columns=["loss", "accuracy", "test_loss", "test_accuracy"])
    return mean.reset_index()


def plot_curves(histories: Mapping[int, pd.DataFrame], path: str | os.PathLike, *,
                paper_accuracy: float | None = None) -> None:
    """Fig. 5: accuracy (left) and loss (right) per epoch; seeds thin, their mean bold."""
    if not histories:
        raise LfwcnnError("no training histories to draw")
    mean = mean_curves(histories)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("accuracy", "test_accuracy", "accuracy"), ("loss", "test_loss", "loss"))
    for ax, (train_key, test_key, label) in zip(axes, panels, strict=True):
        for history in histories.values():
            ax.plot(history["epoch"], history[train_key], color=TRAIN_COLOUR, lw=0.7, alpha=0.35)
            ax.plot(history["epoch"], history[test_key], color=TEST_COLOUR, lw=0.7, alpha=0.35)
        n = len(histories)
        ax.plot(mean["epoch"], mean[train_key], color=TRAIN_COLOUR, lw=2.4,
                label=f"training, mean of {n} seed{'s' * (n > 1)}")
        ax.plot(mean["epoch"], mean[test_key], color=TEST_COLOUR, lw=2.4,
                label=f"test, mean of {n} seed{'s' * (n > 1)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if paper_accuracy is not None:
        axes[0].axhline(paper_accuracy, color=PAPER_COLOUR, ls="--", lw=1.2,
                        label=f"paper's test accuracy {paper_accuracy:.2%}")
    axes[0].set_title("Accuracy (thin lines: single seeds)")
    axes[1].set_title("Loss (categorical cross-entropy)")
    axes[0].legend(loc="lower right", fontsize=8)
    axes[1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------- accuracy


def plot_accuracy_distribution(seeds: Sequence[dict], summary: dict,
                               path: str | os.PathLike) -> None:
    """Each seed's test accuracy with its binomial interval, the mean with its t-interval,
    the band where one further run should fall, and the paper's accuracy as a red line.

    ``seeds``: dicts with ``seed``, ``accuracy`` and optional ``ci_low``/``ci_high``;
    ``summary``: the ``aggregate.json`` of :mod:`lfwcnn.aggregate`, whose intervals are
    already clipped to [0, 1].
    """
    if not seeds:
        raise LfwcnnError("no per-seed accuracies to draw")
    seeds = sorted(seeds, key=lambda row: row["accuracy"])
    n = len(seeds)
    height = 2.0 + 0.3 * (n + 1)
    fig, ax = plt.subplots(figsize=(8, height))
    level = f"{summary.get('confidence', 0.95):.0%}"

    def span(low, high, y, **style):
        ax.plot([100 * low, 100 * high], [y, y], **style)

    single = summary.get("prediction_interval")
    if single:
        ax.axvspan(100 * single["low"], 100 * single["high"], color="0.9",
                   zorder=0, label=f"{level} range of one further run")
    points = [100 * summary["paper_accuracy"], 100 * summary["mean"]]
    for y, row in enumerate(seeds, start=1):
        low, high = row.get("ci_low"), row.get("ci_high")
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
            span(low, high, y, color=TRAIN_COLOUR, lw=1.5)
            points += [100 * low, 100 * high]
        ax.plot(100 * row["accuracy"], y, "o", color=TRAIN_COLOUR, ms=6)
        points.append(100 * row["accuracy"])
    interval = summary.get("interval")
    if interval:
        span(interval["low"], interval["high"], 0, color="black", lw=3)
        points += [100 * interval["low"], 100 * interval["high"]]
    mean = summary["mean"]
    ax.plot(100 * mean, 0, "D", color="black", ms=8,
            label=f"mean {mean:.2%}" + (f", {level} interval {interval['low']:.2%} to "
                                         f"{interval['high']:.2%}" if interval else ""))
    paper = summary["paper_accuracy"]
    ax.axvline(100 * paper, color=PAPER_COLOUR, lw=2, label=f"paper {paper:.2%}")
    lo, hi = max(0.0, min(points)), min(100.0, max(points))
    pad = max(2.0, 0.08 * (hi - lo))
    ax.set_xlim(max(0.0, lo - pad), min(100.0, hi + pad) + 0.5)
    ax.set_yticks(range(n + 1), ["mean"] + [f"seed {row['seed']}" for row in seeds])
    ax.set_ylim(-0.7, n + 0.7)
    ax.set_xlabel(f"test accuracy (%); bars: {level} intervals")
    verdict = summary.get("verdict", "undefined")
    ax.set_title(f"Test accuracy over {n} seed{'s' * (n > 1)}: the paper's value lies "
                 f"{verdict} the interval" if verdict != "undefined"
                 else f"Test accuracy over {n} seed{'s' * (n > 1)}: no interval")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))  # room for the legend's two rows
    save_figure(fig, path)


# ----------------------------------------------------------------------------- confusion


def read_confusion(path: str | os.PathLike) -> pd.DataFrame:
    """A confusion matrix CSV (first column: true class); names stay strings, counts ints.

    Read with the csv module: ``pandas.read_csv`` would turn a person named ``NA`` into NaN
    and ``1984`` into a number, and rename a class that repeats the index header.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle, strict=True))
    except csv.Error as err:
        raise LfwcnnError(f"{path}: cannot read the confusion matrix ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LfwcnnError(f"{path}: cannot read the confusion matrix ({err})") from None
    if not table or len(table[0]) < 2:
        raise LfwcnnError(f"{path}: not a confusion matrix (no header of class names)")
    header, rows = table[0], table[1:]
    names = header[1:]
    if [row[0] for row in rows if row] != names or any(len(row) != len(header) for row in rows):
        raise LfwcnnError(f"{path}: rows and columns of a confusion matrix must name the same "
                          "classes in the same order")
    try:
        counts = np.array([[int(value) for value in row[1:]] for row in rows], dtype=np.int64)
    except ValueError as err:
        raise LfwcnnError(f"{path}: a count is not an integer ({err})") from None
    return pd.DataFrame(counts, index=pd.Index(names, name=header[0] or "true"), columns=names)


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


def per_class(confusion: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1, support and predictions per class of a confusion matrix."""
    counts = confusion.to_numpy(dtype=float)
    hits = np.diag(counts)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return pd.DataFrame({
        "class": list(confusion.index), "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int), "predicted": predicted.astype(int),
    })


# ----------------------------------------------------------------------------- Figs. 6-12


def normalize_channels(maps: np.ndarray) -> np.ndarray:
    """Scale each channel of (H, W, C) to [0, 1] by its own range; a flat channel becomes 0.

    Per-channel scaling, as the paper's grids, shows each filter's pattern however weak; a
    blank map (all zero) stays uniformly dark, which is how the paper's blank maps look.
    """
    maps = np.asarray(maps, dtype=np.float64)
    low = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def channel_mosaic(maps: np.ndarray, per_row: int = TILES_PER_ROW, gap: int = 1):
    """Tile the C channels of (H, W, C) into a grid: one tile per channel, row-major.

    Returns ``(mosaic, rows, cols)``; ``mosaic`` holds each normalised channel at its tile
    and NaN in the gaps between tiles and in the unused tiles of the last row.
    """
    if maps.ndim != 3:
        raise LfwcnnError(f"a layer's activations must be (height, width, channels), got "
                          f"{maps.shape}")
    if per_row < 1:
        raise LfwcnnError(f"tiles per row must be at least 1, got {per_row}")
    height, width, channels = maps.shape
    cols = min(per_row, channels)
    rows = math.ceil(channels / cols)
    mosaic = np.full((rows * height + (rows - 1) * gap, cols * width + (cols - 1) * gap),
                     np.nan)
    scaled = normalize_channels(maps)
    for c in range(channels):
        r, k = divmod(c, cols)
        top, left = r * (height + gap), k * (width + gap)
        mosaic[top:top + height, left:left + width] = scaled[:, :, c]
    return mosaic, rows, cols


def blank_maps(maps: np.ndarray) -> int:
    return int((maps == 0).all(axis=(0, 1)).sum())


def plot_layer_grid(maps: np.ndarray, layer: str, path: str | os.PathLike, *,
                    figure: str | None = None, per_row: int = TILES_PER_ROW) -> dict:
    """Figs. 7-12: every channel of one layer as a 2D image, titled with name and shape."""
    mosaic, rows, cols = channel_mosaic(maps, per_row)
    height, width, channels = maps.shape
    blank = blank_maps(maps)
    inches_per_pixel = 11.0 / mosaic.shape[1]
    fig_height = max(1.6, mosaic.shape[0] * inches_per_pixel + 0.7)
    fig, ax = plt.subplots(figsize=(11.0, fig_height))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # gaps between tiles
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    title = f"{layer}: {height} x {width} x {channels} ({channels} maps, {blank} blank)"
    if figure:
        title = f"{title} - as the paper's {figure}"
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.45 / fig_height)
    save_figure(fig, path)
    return {"layer": layer, "file": Path(path).name, "shape": [height, width, channels],
            "tiles": channels, "rows": rows, "cols": cols, "blank_maps": blank}


def plot_input_image(image: np.ndarray, title: str, path: str | os.PathLike) -> None:
    """Fig. 6: the test image the activations are drawn for, at its 64x64 resolution."""
    fig, ax = plt.subplots(figsize=(3.2, 3.6))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, parse_math=False)  # names may hold "$"
    fig.tight_layout()
    save_figure(fig, path)


def plot_sparsity(layers: Sequence[str], zero_share: np.ndarray, blank_share: np.ndarray,
                  path: str | os.PathLike, *, image_position: int | None = None) -> None:
    """Claim C4: per layer, the distribution over test images of both sparsity measures."""
    zero_share, blank_share = np.asarray(zero_share), np.asarray(blank_share)
    if zero_share.shape != blank_share.shape or zero_share.shape[1:] != (len(layers),):
        raise LfwcnnError(f"sparsity arrays {zero_share.shape} and {blank_share.shape} do not "
                          f"match {len(layers)} layers")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    positions = np.arange(1, len(layers) + 1)
    panels = ((zero_share, "zero activations (% of all values)"),
              (blank_share, "blank feature maps (% of maps)"))
    for ax, (values, label) in zip(axes, panels, strict=True):
        ax.boxplot(100 * values, positions=positions, widths=0.55, showfliers=False,
                   medianprops={"color": "0.3"})
        ax.plot(positions, 100 * values.mean(axis=0), "o-", color=TRAIN_COLOUR,
                label="mean over test images")
        if image_position is not None:
            ax.plot(positions, 100 * values[image_position], "x", color=PAPER_COLOUR, ms=8,
                    label="the drawn test image")
        ax.set_xticks(positions, list(layers))
        ax.set_ylabel("%")
        ax.set_ylim(-3, 103)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Sparsity per layer over {len(zero_share)} test images "
                 "(boxes: quartiles, whiskers: 1.5 IQR)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------- commands


def paper_figure_numbers(layers: Sequence[str]) -> dict[str, str]:
    """conv1 -> Fig. 7, pool1 -> Fig. 8, ... conv3 -> Fig. 11, pool3 -> Fig. 12."""
    numbers = {}
    for name in layers:
        kind, block = FEATURE_LAYER.fullmatch(name).groups()
        number = 7 + 2 * (int(block) - 1) + (kind == POOL)
        if number <= 12:
            numbers[name] = f"Fig. {number}"
    return numbers


def load_npz(path: Path) -> dict[str, np.ndarray]:
    return loading.load_npz(path)


def draw_activations(folder: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     per_row: int = TILES_PER_ROW) -> dict:
    """Draw the input image, one grid per layer and the sparsity plot of an activations folder.

    Writes ``input.png``, ``<layer>.png``, ``sparsity.png`` and ``grids.json`` (per layer: the
    shape, the number of tiles drawn and of blank maps) into ``out_dir`` (default
    ``<folder>/figures``); returns the ``grids.json`` content.
    """
    folder = Path(folder)
    out = Path(out_dir) if out_dir else folder / "figures"
    try:
        record = json.loads((folder / "image.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{folder / 'image.json'}: cannot read ({err})") from None
    image = load_npz(folder / "image.npz")["image"]
    verdict = "correct" if record.get("correct") else "wrong"
    plot_input_image(image, f"{record['file']}\n{image.shape[0]} x {image.shape[1]} pixels; "
                     f"predicted {record['predicted']}\n"
                     f"({record['predicted_probability']:.0%}, {verdict})", out / "input.png")
    layers = [entry["layer"] for entry in record["layers"]]
    figures = paper_figure_numbers(layers)
    grids = []
    for layer in layers:
        maps = load_npz(folder / f"{layer}.npz")["activations"]
        grid = plot_layer_grid(maps, layer, out / f"{layer}.png", figure=figures.get(layer),
                               per_row=per_row)
        grid["paper_figure"] = figures.get(layer)
        grids.append(grid)
    sparsity = load_npz(folder / "sparsity.npz")
    plot_sparsity([str(name) for name in sparsity["layers"]], sparsity["zero_share"],
                  sparsity["blank_share"], out / "sparsity.png",
                  image_position=record.get("test_position"))
    manifest = {"image": record["file"], "layers": grids, "input": "input.png",
                "sparsity": "sparsity.png"}
    write_text(out / "grids.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def draw_training(*, histories: Sequence[str], metrics: Sequence[str],
                  confusions: Sequence[str], aggregate: str, out_dir: str | os.PathLike) -> None:
    """Curves, accuracy distribution, pooled confusion matrix and per-class table."""
    from lfwcnn.evaluate import plot_confusion

    if len(histories) != len(metrics):
        raise LfwcnnError(f"{len(histories)} histories but {len(metrics)} metrics files")
    out = Path(out_dir)
    try:
        summary = json.loads(Path(aggregate).read_text(encoding="utf-8"))
        records = [json.loads(Path(path).read_text(encoding="utf-8")) for path in metrics]
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"cannot read the evaluation results ({err})") from None
    seeds = [record.get("seed", k) for k, record in enumerate(records)]
    curves = {seed: read_history(path) for seed, path in zip(seeds, histories, strict=True)}
    plot_curves(curves, out / "curves.png", paper_accuracy=summary.get("paper_accuracy"))
    rows = []
    for seed, record in zip(seeds, records, strict=True):
        interval = record.get("accuracy_interval") or {}
        rows.append({"seed": seed, "accuracy": float(record["accuracy"]),
                     "ci_low": interval.get("low"), "ci_high": interval.get("high")})
    plot_accuracy_distribution(rows, summary, out / "accuracy.png")
    confusion = pooled_confusion(confusions)
    write_text(out / "confusion.csv", confusion.to_csv())
    counts = confusion.to_numpy()
    correct, total = int(np.trace(counts)), int(counts.sum())
    plot_confusion(confusion, f"{len(confusions)} seeds pooled: {correct}/{total} correct "
                   f"({correct / max(total, 1):.1%})", out / "confusion.png")
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
    activations.add_argument("--per-row", type=int, default=TILES_PER_ROW)
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
