"""The figures (lfwcnn.plots, lfwcnn.figures): one tile per channel in the layer grids,
pooled confusion, curves, accuracy, the sweep's runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lfwcnn import figures, plots, steps
from lfwcnn.cli import run
from lfwcnn.errors import LfwcnnError
from lfwcnn.evaluate import per_class
from lfwcnn.figures import paper_figure_numbers
from lfwcnn.loading import read_history
from lfwcnn.plots import channel_mosaic, normalize_channels

PNG = b"\x89PNG\r\n\x1a\n"


def test_normalize_channels_scales_each_channel_and_keeps_blank_maps_dark():
    maps = np.zeros((3, 3, 3))
    maps[..., 0] = np.arange(9).reshape(3, 3)  # a ramp: 0 .. 8
    maps[..., 1] = 5.0  # constant but not zero
    scaled = normalize_channels(maps)
    np.testing.assert_allclose(scaled[..., 0], np.arange(9).reshape(3, 3) / 8)
    assert (scaled[..., 1] == 0).all() and (scaled[..., 2] == 0).all()


@pytest.mark.parametrize(("channels", "per_row", "rows", "cols"),
                         [(32, 16, 2, 16), (20, 16, 2, 16), (3, 16, 1, 3), (128, 16, 8, 16)])
def test_mosaic_has_one_tile_per_channel_in_row_major_order(channels, per_row, rows, cols):
    rng = np.random.default_rng(channels)
    maps = rng.uniform(0, 1, size=(5, 4, channels))
    maps[..., 1] = 0.0  # a blank map still gets its tile
    mosaic, got_rows, got_cols = channel_mosaic(maps, per_row, gap=1)
    assert (got_rows, got_cols) == (rows, cols)
    assert mosaic.shape == (rows * 5 + rows - 1, cols * 4 + cols - 1)
    scaled = normalize_channels(maps)
    tiles = 0
    for r in range(rows):
        for c in range(cols):
            tile = mosaic[r * 6:r * 6 + 5, c * 5:c * 5 + 4]
            k = r * cols + c
            if k < channels:
                np.testing.assert_array_equal(tile, scaled[..., k])
                tiles += 1
            else:
                assert np.isnan(tile).all()  # unused tiles of the last row stay empty
    assert tiles == channels
    # the gaps between tiles are empty too: only tile pixels are numbers
    assert np.count_nonzero(~np.isnan(mosaic)) == channels * 5 * 4


def test_mosaic_rejects_a_batch():
    with pytest.raises(LfwcnnError, match="must be \\(height, width, channels\\)"):
        channel_mosaic(np.zeros((1, 4, 4, 2)))


def test_layer_grid_png_counts_tiles_and_blank_maps(tmp_path):
    maps = np.random.default_rng(0).uniform(0, 1, size=(6, 6, 20)).astype(np.float32)
    maps[..., [3, 7]] = 0.0
    info = plots.plot_layer_grid(maps, "conv2", tmp_path / "conv2.png", figure="Fig. 9")
    assert info == {"layer": "conv2", "file": "conv2.png", "shape": [6, 6, 20], "tiles": 20,
                    "rows": 2, "cols": 16, "blank_maps": 2}
    with Image.open(tmp_path / "conv2.png") as image:
        assert image.format == "PNG" and image.width > 500


def test_paper_figure_numbers_follow_figs_7_to_12():
    layers = ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "conv4"]
    assert paper_figure_numbers(layers) == {
        "conv1": "Fig. 7", "pool1": "Fig. 8", "conv2": "Fig. 9", "pool2": "Fig. 10",
        "conv3": "Fig. 11", "pool3": "Fig. 12"}


def confusion_csv(path, counts, names=("Ann_A", "Bo_B", "Cy_C")):
    frame = pd.DataFrame(counts, index=pd.Index(list(names), name="true"), columns=list(names))
    path.write_text(frame.to_csv())
    return path


def test_pooled_confusion_and_per_class_scores(tmp_path):
    a = confusion_csv(tmp_path / "a.csv", [[3, 1, 0], [0, 2, 0], [1, 0, 1]])
    b = confusion_csv(tmp_path / "b.csv", [[1, 0, 0], [1, 1, 0], [0, 0, 2]])
    pooled = figures.pooled_confusion([a, b])
    np.testing.assert_array_equal(pooled.to_numpy(), [[4, 1, 0], [1, 3, 0], [1, 0, 3]])
    scores = per_class(pooled).set_index("class")
    assert scores.loc["Ann_A", "precision"] == pytest.approx(4 / 6)
    assert scores.loc["Ann_A", "recall"] == pytest.approx(4 / 5)
    assert scores.loc["Bo_B", "f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    assert list(scores["support"]) == [5, 4, 4] and list(scores["predicted"]) == [6, 4, 3]

    other = confusion_csv(tmp_path / "c.csv", np.eye(3, dtype=int), ("Ann_A", "Cy_C", "Bo_B"))
    with pytest.raises(LfwcnnError, match="other classes"):
        figures.pooled_confusion([a, other])


def history(epochs: int, seed: int) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "loss": 2 / e + seed, "accuracy": 1 - 1 / (e + 1),
                         "test_loss": 2.5 / e, "test_accuracy": 0.8 - 0.5 / e,
                         "seconds": 1.0})


def test_mean_curves_use_the_epochs_all_seeds_have():
    mean = plots.mean_curves({0: history(5, 0), 1: history(3, 2)})
    assert list(mean["epoch"]) == [1, 2, 3]
    np.testing.assert_allclose(mean["loss"], 2 / np.arange(1, 4) + 1)


def test_curves_and_accuracy_plots_are_written(tmp_path):
    plots.plot_curves({0: history(4, 0), 1: history(4, 1)}, tmp_path / "curves.png",
                      paper_accuracy=0.8347)
    summary = {"mean": 0.8, "confidence": 0.95, "paper_accuracy": 0.8347, "verdict": "above",
               "interval": {"low": 0.78, "high": 0.82},
               "prediction_interval": {"low": 0.75, "high": 0.85}}
    seeds = [{"seed": 0, "accuracy": 0.79, "ci_low": 0.75, "ci_high": 0.83},
             {"seed": 1, "accuracy": 0.81, "ci_low": None, "ci_high": None}]
    plots.plot_accuracy_distribution(seeds, summary, tmp_path / "accuracy.png")
    for name in ("curves.png", "accuracy.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    with pytest.raises(LfwcnnError, match="no training histories"):
        plots.plot_curves({}, tmp_path / "none.png")
    with pytest.raises(LfwcnnError, match="lacks the columns"):
        (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
        read_history(tmp_path / "bad.csv")


def test_training_step_draws_all_and_pools_the_seeds(tmp_path):
    paths = {"histories": [], "metrics": [], "confusions": []}
    for seed in (0, 1):
        h = tmp_path / f"h{seed}.csv"
        history(3, seed).to_csv(h, index=False)
        m = tmp_path / f"m{seed}.json"
        m.write_text(json.dumps({"seed": seed, "accuracy": 0.5 + seed / 10,
                                 "accuracy_interval": {"low": 0.4, "high": 0.7}}))
        c = confusion_csv(tmp_path / f"c{seed}.csv", [[2, 0, 0], [0, 1, 1], [0, 0, 2]])
        paths["histories"].append(str(h))
        paths["metrics"].append(str(m))
        paths["confusions"].append(str(c))
    aggregate = tmp_path / "aggregate.json"
    aggregate.write_text(json.dumps({"mean": 0.55, "confidence": 0.95, "paper_accuracy": 0.8347,
                                     "verdict": "above", "interval": {"low": 0.5, "high": 0.6},
                                     "prediction_interval": None}))
    out = tmp_path / "out"
    steps.run_step("draw_training", {
        **paths, "aggregate": aggregate, "curves": out / "curves.png",
        "accuracy": out / "accuracy.png", "confusion": out / "confusion.png",
        "confusion_table": out / "confusion.csv", "per_class": out / "per_class.csv"})
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png", "confusion.csv", "confusion.png", "curves.png", "per_class.csv"]
    pooled = pd.read_csv(out / "confusion.csv", index_col=0)
    assert int(np.trace(pooled.to_numpy())) == 10 and int(pooled.to_numpy().sum()) == 12


def test_confusion_and_sweep_plots_share_the_one_png_writer(tmp_path):
    """Every figure goes through plots.save_figure: a PNG at plots.DPI, with no timestamp."""
    names = ["Ann_A", "Ke$ha $x$"]  # "$" pairs would be read as a formula
    plots.plot_confusion(pd.DataFrame([[3, 1], [0, 2]], index=names, columns=names),
                         "seed 0: 5/6", tmp_path / "confusion.png")
    runs = [{"run": run, "caveat": None, "accuracies": [0.8, 0.82], "ci_low": 0.7,
             "ci_high": 0.9, "mean": 0.81, "paper_accuracy": 0.8347} for run in ("a", "b")]
    plots.plot_runs({"runs": runs}, tmp_path / "runs.png")
    for name in ("confusion.png", "runs.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert round(image.info["dpi"][0]) == plots.DPI
            assert "Software" not in image.info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "runs.png"]


def test_only_plots_imports_matplotlib():
    """Plotting in one place: no other module of the package draws."""
    package = Path(plots.__file__).parent
    drawing = sorted(path.name for path in package.glob("*.py")
                     if "matplotlib" in path.read_text(encoding="utf-8").replace(
                         '"matplotlib"', ""))  # environment.py lists it as a package name
    assert drawing == ["plots.py"]


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", ""])
def test_a_record_that_is_not_a_json_object_is_one_line(tmp_path, capsys, text):
    (tmp_path / "image.json").write_text(text)
    out = tmp_path / "figures"
    assert run(steps.main, [
        "draw_activations", f"record={tmp_path / 'image.json'}", f"face={tmp_path / 'image.npz'}",
        f"maps={tmp_path / 'conv1.npz'}", f"per_image={tmp_path / 'sparsity.npz'}",
        f"input_figure={out / 'input.png'}", f"grids={out / 'conv1.png'}",
        f"sparsity={out / 'sparsity.png'}", f"manifest={out / 'grids.json'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'image.json'}: ")
    assert not out.exists()


def training_files(tmp_path: Path) -> dict:
    """One seed's history, metrics, confusion and the aggregate: draw_training's inputs."""
    history(3, 0).to_csv(tmp_path / "h0.csv", index=False)
    (tmp_path / "m0.json").write_text(json.dumps({"seed": 0, "accuracy": 0.5}))
    confusion_csv(tmp_path / "c0.csv", [[2, 0, 0], [1, 1, 0], [0, 0, 1]])
    (tmp_path / "aggregate.json").write_text(json.dumps({
        "mean": 0.5, "confidence": 0.95, "paper_accuracy": 0.8347, "verdict": "below",
        "interval": {"low": 0.4, "high": 0.6}, "prediction_interval": None}))
    return {"histories": [tmp_path / "h0.csv"], "metrics": [tmp_path / "m0.json"],
            "confusions": [tmp_path / "c0.csv"], "aggregate": tmp_path / "aggregate.json"}


def test_draw_training_refuses_an_output_over_an_input_by_its_name(tmp_path, capsys):
    inputs = training_files(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    out = tmp_path / "out"
    argv = ["draw_training", *(f"{name}={path}" for name, paths in inputs.items()
                               for path in (paths if isinstance(paths, list) else [paths])),
            f"curves={out / 'curves.png'}", f"accuracy={out / 'accuracy.png'}",
            f"confusion={out / 'confusion.png'}", f"confusion_table={out / 'confusion.csv'}",
            f"per_class={tmp_path / 'c0.csv'}"]
    assert run(steps.main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: per_class {tmp_path / 'c0.csv'} is also confusions #1")
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_draw_activations_draws_the_layers_the_record_lists(tmp_path, capsys):
    rng = np.random.default_rng(0)
    layers = ["conv1", "pool1"]
    (tmp_path / "image.json").write_text(json.dumps({
        "file": "A/A_0001.jpg", "predicted": "A", "predicted_probability": 0.9,
        "correct": True, "test_position": 0,
        "layers": [{"layer": name} for name in layers]}))
    np.savez(tmp_path / "image.npz", image=rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    for k, name in enumerate(layers):
        np.savez(tmp_path / f"{name}.npz", activations=rng.uniform(0, 1, (6 - 2 * k, 6 - 2 * k, 3)))
    np.savez(tmp_path / "sparsity.npz", layers=np.array(layers),
             zero_share=rng.uniform(0, 1, (2, 2)), blank_share=rng.uniform(0, 1, (2, 2)))
    out = tmp_path / "figures"

    def draw(grid_layers: list[str]) -> int:
        return run(steps.main, [
            "draw_activations", f"record={tmp_path / 'image.json'}",
            f"face={tmp_path / 'image.npz'}", *(f"maps={tmp_path / f'{n}.npz'}" for n in layers),
            f"per_image={tmp_path / 'sparsity.npz'}", f"input_figure={out / 'input.png'}",
            *(f"grids={out / f'{n}.png'}" for n in grid_layers),
            f"sparsity={out / 'sparsity.png'}", f"manifest={out / 'grids.json'}"])

    assert draw(["conv1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: grids: files for conv1, but {tmp_path / 'image.json'} lists "
                   "conv1, pool1"]
    assert not out.exists()
    assert draw(layers) == 0
    manifest = json.loads((out / "grids.json").read_text())
    assert [grid["file"] for grid in manifest["layers"]] == ["conv1.png", "pool1.png"]
    assert manifest["input"] == "input.png" and manifest["sparsity"] == "sparsity.png"
    assert sorted(p.name for p in out.iterdir()) == [
        "conv1.png", "grids.json", "input.png", "pool1.png", "sparsity.png"]
