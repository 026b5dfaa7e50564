"""Every figure the pipeline draws, in one style: the steps compute and read, the drawing lives
here, so that a new figure reuses the colours, the resolution and :func:`save_figure` (atomic,
no timestamp) of the others. Figures are made without pyplot (no display, no global state).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lfwcnn.atomic import atomic_path
from lfwcnn.claims import labelled
from lfwcnn.errors import LfwcnnError

TILES_PER_ROW = 16  # as the paper's grids: 32 maps of conv1 make two rows
TRAIN_COLOUR, TEST_COLOUR, PAPER_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"
DPI = 110


def subplots(*grid: int, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure and the axes of its ``grid`` (rows, columns), as ``pyplot.subplots`` makes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """PNG without a timestamp in its metadata, written atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def mean_curves(histories: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean over seeds per epoch, of the epochs every seed has."""
    frames = [h.set_index("epoch")[["loss", "accuracy", "test_loss", "test_accuracy"]]
              .astype(float) for h in histories.values()]
    common = functools.reduce(pd.Index.intersection, [frame.index for frame in frames])
    return (sum(frame.loc[common] for frame in frames) / len(frames)).reset_index()


def plot_curves(histories: Mapping[int, pd.DataFrame], path: str | os.PathLike, *,
                paper_accuracy: float | None = None) -> None:
    """Fig. 5: accuracy (left) and loss (right) per epoch; seeds thin, their mean bold."""
    if not histories:
        raise LfwcnnError("no training histories to draw")
    mean = mean_curves(histories)
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    seeds = f"mean of {len(histories)} seed{'s' * (len(histories) > 1)}"
    panels = (("accuracy", "Accuracy (thin lines: single seeds)"),
              ("loss", "Loss (categorical cross-entropy)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for history in histories.values():
            ax.plot(history["epoch"], history[key], color=TRAIN_COLOUR, lw=0.7, alpha=0.35)
            ax.plot(history["epoch"], history[f"test_{key}"], color=TEST_COLOUR, lw=0.7,
                    alpha=0.35)
        ax.plot(mean["epoch"], mean[key], color=TRAIN_COLOUR, lw=2.4, label=f"training, {seeds}")
        ax.plot(mean["epoch"], mean[f"test_{key}"], color=TEST_COLOUR, lw=2.4,
                label=f"test, {seeds}")
        ax.set(xlabel="epoch", ylabel=key, title=title)
        ax.grid(alpha=0.3)
    if paper_accuracy is not None:
        axes[0].axhline(paper_accuracy, color=PAPER_COLOUR, ls="--", lw=1.2,
                        label=f"paper's test accuracy {paper_accuracy:.2%}")
    axes[0].legend(loc="lower right", fontsize=8)
    axes[1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_accuracy_distribution(seeds: Sequence[dict], summary: dict,
                               path: str | os.PathLike) -> None:
    """Each seed's test accuracy (dicts with ``seed``, ``accuracy``, optional ``ci_low``,
    ``ci_high``) with its binomial interval, the mean with its t-interval, the band where one
    further run should fall, and the paper's accuracy as a red line (``summary``: the
    aggregate.json of :mod:`lfwcnn.aggregate`, its intervals already clipped to [0, 1])."""
    seeds = sorted(seeds, key=lambda row: row["accuracy"])
    n = len(seeds)
    height = 2.0 + 0.3 * (n + 1)
    fig, ax = subplots(figsize=(8, height))
    level = f"{summary['confidence']:.0%}"
    points = [100 * summary["paper_accuracy"], 100 * summary["mean"]]  # what the axis shows

    def mark(values, y, *fmt, **style):
        points.extend(100 * value for value in values)
        ax.plot([100 * value for value in values], [y] * len(values), *fmt, **style)

    single = summary.get("prediction_interval")
    if single:
        ax.axvspan(100 * single["low"], 100 * single["high"], color="0.9",
                   zorder=0, label=f"{level} range of one further run")
    for y, row in enumerate(seeds, start=1):
        low, high = row.get("ci_low"), row.get("ci_high")
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
            mark([low, high], y, color=TRAIN_COLOUR, lw=1.5)
        mark([row["accuracy"]], y, "o", color=TRAIN_COLOUR, ms=6)
    interval = summary.get("interval")
    if interval:
        mark([interval["low"], interval["high"]], 0, color="black", lw=3)
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
    ax.set(ylim=(-0.7, n + 0.7), xlabel=f"test accuracy (%); bars: {level} intervals")
    verdict = summary["verdict"]
    ax.set_title(f"Test accuracy over {n} seed{'s' * (n > 1)}: the paper's value lies "
                 f"{verdict} the interval" if verdict != "undefined"
                 else f"Test accuracy over {n} seed{'s' * (n > 1)}: no interval")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))  # room for the legend's two rows
    save_figure(fig, path)


def plot_confusion(confusion: pd.DataFrame, title: str, path: str | os.PathLike) -> None:
    """Counts, coloured by share of the true class, so small classes read as well as big ones."""
    counts = confusion.to_numpy()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(counts)
    side = max(5.0, 0.32 * n + 2.5)
    fig, ax = subplots(figsize=(side, side))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [name.replace("_", " ") for name in confusion.columns]
    # parse_math off: a name such as "Ke$ha" is text, not the start of a formula
    ax.set_xticks(range(n), names, rotation=90, fontsize=7, parse_math=False)
    ax.set_yticks(range(n), names, fontsize=7, parse_math=False)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, parse_math=False)
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6,
                    color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    save_figure(fig, path)


def normalize_channels(maps: np.ndarray) -> np.ndarray:
    """Scale each channel of (H, W, C) to [0, 1] by its own range, as the paper's grids (a
    weak filter's pattern shows); a flat channel becomes 0, so a blank map stays dark."""
    maps = np.asarray(maps, dtype=np.float64)
    low = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def tile_mosaic(tiles: np.ndarray, per_row: int = TILES_PER_ROW, gap: int = 1,
                fill: float = np.nan):
    """``(mosaic, rows, cols)``: the N tiles of (N, H, W) or (N, H, W, 3) side by side in
    row-major order, ``fill`` in the gaps between them and in the unused tiles of the last
    row."""
    n, height, width = tiles.shape[:3]
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    mosaic = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, *tiles.shape[3:]),
                     fill)
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = r * (height + gap), c * (width + gap)
        mosaic[top:top + height, left:left + width] = tiles[k]
    return mosaic, rows, cols


def channel_mosaic(maps: np.ndarray, per_row: int = TILES_PER_ROW, gap: int = 1):
    """``(mosaic, rows, cols)``: the C channels of (H, W, C), normalised, one tile each in
    row-major order; NaN in the gaps between tiles and in the unused tiles of the last row."""
    if maps.ndim != 3:
        raise LfwcnnError(f"a layer's activations must be (height, width, channels), got "
                          f"{maps.shape}")
    return tile_mosaic(np.moveaxis(normalize_channels(maps), -1, 0), per_row, gap)


def plot_layer_grid(maps: np.ndarray, layer: str, path: str | os.PathLike, *,
                    figure: str | None = None) -> dict:
    """Figs. 7-12: every channel of one layer as a 2D image, titled with name and shape."""
    mosaic, rows, cols = channel_mosaic(maps)
    height, width, channels = maps.shape
    blank = int((maps == 0).all(axis=(0, 1)).sum())
    fig_height = max(1.6, mosaic.shape[0] * (11.0 / mosaic.shape[1]) + 0.7)
    fig, ax = subplots(figsize=(11.0, fig_height))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # gaps between tiles
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    ax.set_title(f"{layer}: {height} x {width} x {channels} ({channels} maps, {blank} blank)"
                 + (f" - as the paper's {figure}" if figure else ""), fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.45 / fig_height)
    save_figure(fig, path)
    return {"layer": layer, "file": Path(path).name, "shape": [height, width, channels],
            "tiles": channels, "rows": rows, "cols": cols, "blank_maps": blank}


def plot_input_image(image: np.ndarray, title: str, path: str | os.PathLike) -> None:
    """Fig. 6: the test image the activations are drawn for, at its 64x64 resolution."""
    fig, ax = subplots(figsize=(3.2, 3.6))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, parse_math=False)  # names may hold "$"
    fig.tight_layout()
    save_figure(fig, path)


def plot_sparsity(layers: Sequence[str], zero_share: np.ndarray, blank_share: np.ndarray,
                  path: str | os.PathLike, *, image_position: int | None = None) -> None:
    """Claim C4: per layer, the distribution over test images of both sparsity measures."""
    if zero_share.shape != blank_share.shape or zero_share.shape[1:] != (len(layers),):
        raise LfwcnnError(f"sparsity arrays {zero_share.shape} and {blank_share.shape} do not "
                          f"match {len(layers)} layers")
    fig, axes = subplots(1, 2, figsize=(11, 4))
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
        ax.set(ylabel="%", ylim=(-3, 103))
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Sparsity per layer over {len(zero_share)} test images "
                 "(boxes: quartiles, whiskers: 1.5 IQR)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_runs(summary: dict, path: str | os.PathLike) -> None:
    """Every seed's accuracy per run, each run's mean and interval, the paper's value marked."""
    runs = summary["runs"]
    fig, ax = subplots(figsize=(7.5, 1.2 + 0.55 * len(runs)))
    for y, entry in enumerate(reversed(runs)):
        values = [100 * a for a in entry["accuracies"]]
        ax.plot(values, [y] * len(values), "o", color=TRAIN_COLOUR, alpha=0.8, ms=6, zorder=3)
        if entry["ci_low"] is not None:
            ax.plot([100 * entry["ci_low"], 100 * entry["ci_high"]], [y, y], color="black", lw=3)
        ax.plot(100 * entry["mean"], y, "D", color="black", ms=7)
    paper = next((e["paper_accuracy"] for e in runs if e["paper_accuracy"] is not None), None)
    if paper is not None:
        ax.axvline(100 * paper, color=PAPER_COLOUR, lw=2)
        ax.text(100 * paper, len(runs) - 0.45, f" paper {paper:.2%}", color=PAPER_COLOUR,
                ha="left", va="center", fontsize=8)
    # zoomed to the data (and the paper's value), so that close settings stay apart
    shown = [v for e in runs for v in (*e["accuracies"], e["ci_low"], e["ci_high"], paper)
             if v is not None]
    ax.set_xlim(max(0.0, 100 * min(shown) - 3), min(100.0, 100 * max(shown) + 3))
    ax.set_yticks(range(len(runs)), [labelled(e["run"], e["caveat"]) for e in reversed(runs)])
    ax.set(ylim=(-0.7, len(runs) - 0.2), xlabel="test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Test accuracy per run: seeds (dots), mean (diamond) and its interval (bar)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------- what the network learned (C7, C8)


def plot_detector_counts(counts: Mapping[str, pd.DataFrame], iou_threshold: float,
                         path: str | os.PathLike) -> None:
    """Claim C7: detectors per layer (x) for each part (one panel each), the trained network's
    bars beside the untrained control's."""
    regions = list(next(iter(counts.values())).columns)
    layers = list(next(iter(counts.values())).index)
    cols = min(3, len(regions))
    rows = math.ceil(len(regions) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.4))
    axes = np.atleast_1d(axes).ravel()
    x = np.arange(len(layers))
    for ax, region in zip(axes, regions, strict=False):
        for k, (name, table) in enumerate(counts.items()):
            ax.bar(x + (k - 0.5) * 0.4, table[region].to_numpy(), width=0.4, label=name,
                   color=("#1f77b4", "#bbbbbb")[k % 2])
        ax.set_xticks(x, layers, fontsize=7)
        ax.set_ylim(0, max(1, *(int(t[region].max()) for t in counts.values())) * 1.1)
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(region, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(regions):]:
        ax.set_axis_off()
    axes[0].set_ylabel("detectors", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Units with IoU > {iou_threshold} per layer and part: trained vs untrained",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_top_units(faces: np.ndarray, units: Sequence[Mapping], activations: Mapping,
                   masks: Mapping[str, np.ndarray], quantile: float,
                   per_unit: int, path: str | os.PathLike) -> None:
    """Claim C7: for each unit of ``units`` (rows: layer, channel, region, iou), its
    ``per_unit`` top-activating faces with the unit's top-``quantile`` area in red and the
    part's outline in yellow."""
    from lfwcnn.dissection import channel_thresholds, fires, upsample

    rows = max(1, len(units))
    fig, axes = subplots(rows, per_unit, figsize=(1.5 * per_unit + 0.2, 1.7 * rows + 0.3))
    axes = np.asarray(axes).reshape(rows, per_unit)
    for ax in axes.ravel():
        ax.set_axis_off()
    size = faces.shape[1]
    for r, unit in enumerate(units):
        maps = activations[unit["layer"]][..., [unit["channel"]]]
        threshold = channel_thresholds(maps, quantile)[0]
        peaks = maps.reshape(len(maps), -1).max(axis=1)
        for c, i in enumerate(np.argsort(-peaks, kind="stable")[:per_unit]):
            area = np.asarray(fires(upsample(maps[i: i + 1], size), threshold))[0, :, :, 0]
            ax = axes[r, c]
            ax.imshow(faces[i], interpolation="nearest")
            ax.imshow(np.ma.masked_where(~area, area), cmap="autumn", alpha=0.55,
                      interpolation="nearest")
            ax.contour(masks[unit["region"]][i], levels=[0.5], colors="yellow", linewidths=0.7)
            if c == 0:
                ax.set_title(f"{unit['layer']} #{unit['channel']} {unit['region']} "
                             f"IoU {unit['iou']:.3f}", fontsize=7, loc="left")
    fig.tight_layout()
    save_figure(fig, path)


def plot_reconstructions(faces: np.ndarray, reconstructions: Mapping[str, Mapping[str, np.ndarray]],
                         scores: Sequence[pd.DataFrame], path: str | os.PathLike) -> None:
    """Claim C8: each face (first column) and its reconstruction from every layer, one row per
    face and network, titled with the reconstruction's SSIM and PSNR."""
    table = pd.concat(scores).set_index(["network", "layer", "image"])
    layers = list(next(iter(reconstructions.values())))
    rows = [(name, i) for name in reconstructions for i in range(len(faces))]
    fig, axes = subplots(len(rows), len(layers) + 1,
                         figsize=(1.3 * (len(layers) + 1) + 0.6, 1.45 * len(rows) + 0.3))
    axes = np.asarray(axes).reshape(len(rows), len(layers) + 1)
    for r, (name, i) in enumerate(rows):
        axes[r, 0].imshow(faces[i], interpolation="nearest")
        axes[r, 0].set_title(f"{name}: input", fontsize=6)
        for c, layer in enumerate(layers, start=1):
            score = table.loc[(name, layer, i)]
            axes[r, c].imshow(np.clip(reconstructions[name][layer][i], 0, 1),
                              interpolation="nearest")
            axes[r, c].set_title(f"{layer} SSIM {score['ssim']:.2f}\n{score['psnr']:.1f} dB",
                                 fontsize=6)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)


def plot_patterns(patterns: np.ndarray, layer: str, path: str | os.PathLike) -> None:
    """The input (H, W, 3) that maximises each filter of ``layer``, one tile per filter."""
    n = len(patterns)
    low = patterns.min(axis=(1, 2, 3), keepdims=True)
    span = patterns.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = np.divide(patterns - low, span, out=patterns - low, where=span > 0)
    mosaic, _, _ = tile_mosaic(tiles, gap=2, fill=1.0)  # white between the tiles
    fig_height = max(1.6, mosaic.shape[0] * (11.0 / mosaic.shape[1]) + 0.6)
    fig, ax = subplots(figsize=(11.0, fig_height))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{layer}: the input that maximises each of its {n} filters", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.45 / fig_height)
    save_figure(fig, path)


def plot_gradcam(faces: np.ndarray, cams: np.ndarray, rows: pd.DataFrame,
                 path: str | os.PathLike) -> None:
    """Grad-CAM heat maps over the faces, each titled with the true and predicted person."""
    n = len(faces)
    cols = min(6, max(n, 1))
    grid_rows = max(1, math.ceil(n / cols))
    fig, axes = subplots(grid_rows, cols, figsize=(1.9 * cols, 2.2 * grid_rows))
    axes = np.asarray(axes).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    for k in range(n):
        ax = axes[k]
        ax.imshow(faces[k], interpolation="nearest")
        ax.imshow(cams[k], cmap="jet", alpha=0.4, vmin=0, vmax=1, interpolation="bilinear")
        row = rows.iloc[k]
        ax.set_title(f"{row['true']}\n-> {row['predicted']}", fontsize=6, parse_math=False,
                     color="black" if row["correct"] else "red")
    fig.tight_layout()
    save_figure(fig, path)
