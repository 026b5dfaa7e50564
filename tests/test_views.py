"""The views steps of issue 15 (find_landmarks, view_network) through ``python -m lfwcnn
STEP``, on tiny synthetic data: the files they write, their columns and the verdicts in
them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers_training import write_small_run
from landmark_fixtures import synthetic_faces
from lfw_fixtures import make_lfw_tree
from PIL import Image

from lfwcnn import steps
from lfwcnn.cli import run
from lfwcnn.landmarks import Landmarks, load_landmarks, save_landmarks

SIDE = 32
FAST = {"views": {"inversion": {"faces": 2, "steps": 3},
                  "filter_patterns": {"steps": 2}}}
SMALL = {"filters": [4, 6, 8], "dense_units": [8, 8]}


def step(name: str, folder, **values) -> int:
    """``python -m lfwcnn NAME KEY=VALUE...`` with the fast views and the small model (a list
    value: its key given once per item)."""
    overlay = folder / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({**FAST, "model": SMALL}), encoding="utf-8")
    argv = [name, *(f"{key}={item}" for key, value in values.items()
                    for item in (value if isinstance(value, list) else [value]))]
    return run(steps.main, [*argv, "--configfile", str(overlay)])


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """A tiny untrained three-block model, its data and split, and landmarks of its faces."""
    run = write_small_run(tmp_path_factory.mktemp("views"), side=SIDE, **SMALL)
    folder, data = run["folder"], run["data"]
    points = synthetic_faces(len(data.files)) * (SIDE / 64)
    save_landmarks(folder / "landmarks.npz", Landmarks(
        points=points.astype(np.float32), detected=np.ones(len(points), bool),
        files=data.files))
    inputs = {"network": folder / "model.keras", "dataset": folder / "dataset.npz",
              "split": folder / "split.csv"}
    return {**run, "inputs": inputs}


def view_files(out) -> dict:
    """The outputs of view_network below ``out``, named as the rule names them."""
    return {"units": out / "dissection/units.csv", "dissection": out / "dissection/counts.json",
            "detectors": out / "dissection/detectors.png",
            "top_units": out / "dissection/top_units.png",
            "reconstructions": out / "inversion/r.npz",
            "inversion_scores": out / "inversion/scores.csv",
            "inversion": out / "inversion/summary.json",
            "reconstruction_grid": out / "inversion/r.png",
            "patterns": [out / "patterns/conv1.png", out / "patterns/conv3.png"],
            "gradcam": out / "gradcam/g.png", "gradcam_faces": out / "gradcam/g.csv"}


@pytest.fixture(scope="module")
def viewed(small) -> dict:
    """view_network's outputs for the small model (one run: it takes a few seconds)."""
    files = view_files(small["folder"] / "views")
    assert step("view_network", small["folder"], **small["inputs"],
                landmarks=small["folder"] / "landmarks.npz", seed=0, **files) == 0
    return files


def test_view_network_writes_the_same_files_on_two_threads(small, viewed):
    files = view_files(small["folder"] / "views-2-threads")
    assert step("view_network", small["folder"], **small["inputs"],
                landmarks=small["folder"] / "landmarks.npz", seed=0, threads=2, **files) == 0
    for name, paths in files.items():
        for path, alone in zip(paths if isinstance(paths, list) else [paths],
                               viewed[name] if isinstance(paths, list) else [viewed[name]],
                               strict=True):
            assert path.read_bytes() == alone.read_bytes(), name


def test_dissection_writes_units_counts_and_the_c7_verdict(viewed):
    units = pd.read_csv(viewed["units"])
    assert list(units.columns) == ["network", "layer", "channel", "region", "iou", "detector"]
    assert set(units["network"]) == {"trained", "untrained"}
    assert units["iou"].between(0, 1).all()
    counts = json.loads(viewed["dissection"].read_text())
    assert counts["units"] == {"conv1": 4, "pool1": 4, "conv2": 6, "pool2": 6, "conv3": 8,
                               "pool3": 8}
    assert set(counts["counts"]) == {"trained", "untrained"}
    assert counts["c7"]["claim"] == "C7" and "untrained" in counts["c7"]["rule"]
    assert counts["max_iou"]["background"] < counts["iou_threshold"]
    assert [u["region"] for u in counts["top_units"]] == ["eyes", "eyes", "mouth", "mouth"]
    for figure in ("detectors", "top_units"):
        assert Image.open(viewed[figure]).size[0] > 100


def test_view_network_refuses_landmarks_of_other_faces(small, tmp_path, capsys):
    other = tmp_path / "other.npz"
    marks = load_landmarks(small["folder"] / "landmarks.npz")
    save_landmarks(other, Landmarks(points=marks.points[:-1], detected=marks.detected[:-1],
                                    files=marks.files[:-1]))
    files = view_files(tmp_path / "views")
    assert step("view_network", small["folder"], **small["inputs"], landmarks=other, seed=0,
                **files) == 1
    err = capsys.readouterr().err
    assert "run find_landmarks again" in err and str(other) in err
    assert not (tmp_path / "views").exists() or not any((tmp_path / "views").rglob("*.*"))


def test_inversion_scores_every_layer_of_both_networks(viewed):
    scores = pd.read_csv(viewed["inversion_scores"])
    assert len(scores) == 2 * 6 * 2  # networks x layers x faces
    with np.load(viewed["reconstructions"]) as arrays:
        assert arrays["trained_conv1"].shape == (2, SIDE, SIDE, 3)
        assert list(arrays["layers"]) == ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
    summary = json.loads(viewed["inversion"].read_text())
    assert summary["c8"]["claim"] == "C8" and summary["ssim_threshold"] == 0.9
    assert [row["layer"] for row in summary["layers"]["trained"]][0] == "conv1"
    assert Image.open(viewed["reconstruction_grid"]).size[0] > 100


def test_filter_patterns_draw_one_grid_per_conv_layer_named(viewed):
    assert [Image.open(path).size[0] for path in viewed["patterns"]] == [1210, 1210]


def test_gradcam_overlays_one_face_per_person(small, viewed):
    table = pd.read_csv(viewed["gradcam_faces"])
    assert sorted(table["true"]) == sorted(map(str, small["data"].class_names))
    assert table["layer"].eq("conv3").all()
    assert Image.open(viewed["gradcam"]).size[0] > 100


def test_find_landmarks_of_a_prepared_dataset(tmp_path):
    tree = make_lfw_tree(tmp_path / "lfw", {"Ann_A": 3, "Bob_B": 3})
    out = tmp_path / "prepared"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"min_images_per_person": 3}}))
    assert run(steps.main, ["prepare_dataset", f"images={tree}", f"npz={out / 'd.npz'}",
                            f"manifest={out / 'm.csv'}", f"summary={out / 's.json'}",
                            "--configfile", str(overlay)]) == 0
    assert run(steps.main, ["find_landmarks", f"dataset={out / 'd.npz'}", f"images={tree}",
                            f"landmarks={out / 'l.npz'}", "threads=1",
                            "--configfile", str(overlay)]) == 0
    marks = load_landmarks(out / "l.npz")
    assert marks.points.shape == (6, 68, 2) and len(marks.files) == 6


# ----------------------------------------------------------------------------- C7, C8 verdicts


def dissection_json(trained: dict, untrained: dict, units: dict) -> dict:
    """counts.json as view_network writes it, from detector counts {layer: {region: n}}."""
    from lfwcnn.dissection import c7_verdict

    frames = {name: pd.DataFrame.from_dict(c, orient="index")
              for name, c in (("trained", trained), ("untrained", untrained))}
    return {"quantile": 0.005, "iou_threshold": 0.04, "max_iou": {"eyes": 0.9,
                                                                  "background": 0.0088},
            "c7": c7_verdict(frames["trained"], frames["untrained"], units=units),
            "c7_at_other_thresholds": {"0.03": {"holds": True}, "0.05": {"holds": False}}}


def test_c7_holds_partly_holds_or_is_not_run():
    from lfwcnn.claims import verdict_c7

    units = {"conv1": 4, "conv2": 4}
    control = {"conv1": {"eyes": 0, "mouth": 0}, "conv2": {"eyes": 0, "mouth": 0}}
    deeper = {"conv1": {"eyes": 0, "mouth": 0}, "conv2": {"eyes": 2, "mouth": 1}}
    verdict = verdict_c7(dissection_json(deeper, control, units))
    assert verdict.status == "holds" and [ok for _, ok in verdict.checks] == [True, True]
    assert "cannot reach the IoU threshold" in verdict.detail and "background 0.009" in (
        verdict.detail)
    assert "C7 is fragile near the threshold 0.04 (at 0.03: holds, at 0.05: does not hold)" in (
        verdict.detail)
    first = {"conv1": {"eyes": 2, "mouth": 1}, "conv2": {"eyes": 0, "mouth": 0}}
    assert verdict_c7(dissection_json(first, control, units)).status == "partly"
    assert verdict_c7(dissection_json(control, control, units)).status == "fails"
    assert verdict_c7(None).status == "not run"


def test_c8_holds_when_conv1_is_close_and_similarity_falls():
    from lfwcnn.claims import verdict_c8
    from lfwcnn.inversion import c8_verdict

    def summary(trained):
        untrained = {"conv1": 0.95, "conv2": 0.5}
        return {"faces": ["a", "b"], "ssim_threshold": 0.9,
                "c8": c8_verdict(trained, untrained, threshold=0.9)}

    verdict = verdict_c8(summary({"conv1": 0.97, "conv2": 0.6}))
    assert verdict.status == "holds" and "untrained network keeps as much" in verdict.detail
    assert verdict_c8(summary({"conv1": 0.8, "conv2": 0.6})).status == "partly"
    assert verdict_c8(summary({"conv1": 0.8, "conv2": 0.85})).status == "fails"
    assert verdict_c8(None).status == "not run"
