"""Claims C4 and C6: the activation export, the choice of the test image, the sparsity numbers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers_training import write_small_run

from lfwcnn import steps
from lfwcnn.activations import choose_image, image_sparsity, measure_sparsity, sparsity_rows
from lfwcnn.cli import run
from lfwcnn.errors import LfwcnnError

SIDE = 32  # three conv-pool blocks fit: 32 -> 30 -> 15 -> 13 -> 6 -> 4 -> 2
LAYERS = ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
SPARSITY_COLUMNS = [
    "layer", "height", "width", "channels", "images",
    "zero_share_mean", "zero_share_std", "zero_share_min", "zero_share_max",
    "blank_share_mean", "blank_share_std", "blank_share_min", "blank_share_max",
    "never_active_maps", "image_zero_share", "image_blank_maps",
]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """A paper-shaped (three-block) but tiny, untrained model, its data and split on disk."""
    return write_small_run(tmp_path_factory.mktemp("activations"), side=SIDE, filters=[4, 6, 8],
                           dense_units=[8, 8])


# ----------------------------------------------------------------------------- choice


def test_default_choice_is_the_first_test_image(small):
    choice = choose_image(small["data"], small["test"])
    assert (choice.index, choice.test_position) == (small["test"][0], 0)


def test_choice_by_person_takes_that_persons_first_test_image(small):
    data, test = small["data"], small["test"]
    person = str(data.class_names[data.labels[test[-1]]])
    choice = choose_image(data, test, person=person)
    first = next(k for k, i in enumerate(test) if data.labels[i] == data.labels[test[-1]])
    assert (choice.index, choice.test_position) == (test[first], first)
    assert choose_image(data, test, person=person.replace("_", " ")) == choice


def test_choice_by_file_accepts_the_path_or_the_name(small):
    data, test = small["data"], small["test"]
    path = str(data.files[test[3]])
    by_path = choose_image(data, test, image=path)
    by_name = choose_image(data, test, image=path.rsplit("/", 1)[-1])
    assert by_path.index == by_name.index == test[3] and by_path.test_position == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": "Nobody_0001.jpg"}, "is not an image of the dataset"),
        ({"person": "Nobody"}, "is not one of the 3 people"),
        ({"image": "TRAIN"}, "is in the training subset"),
        ({"image": "TEST0", "person": "OTHER"}, "not activations.person"),
    ],
)
def test_bad_choices_are_named(small, kwargs, message):
    data, train, test = small["data"], small["train"], small["test"]
    other = next(name for k, name in enumerate(data.class_names) if k != data.labels[test[0]])
    replace = {"TRAIN": str(data.files[train[0]]), "TEST0": str(data.files[test[0]]),
               "OTHER": str(other)}
    kwargs = {key: replace.get(value, value) for key, value in kwargs.items()}
    with pytest.raises(LfwcnnError, match=message):
        choose_image(data, test, **kwargs)


# ----------------------------------------------------------------------------- sparsity


def test_image_sparsity_on_a_hand_built_case():
    maps = np.zeros((2, 2, 2, 3), dtype=np.float32)
    maps[0, 0, 0, 0] = 1.0  # image 0: channel 0 has one non-zero value; 1 and 2 blank
    maps[0, :, :, 1] = 0.0
    maps[1, :, :, 0] = 2.0  # image 1: channel 0 full, channel 2 one value, channel 1 blank
    maps[1, 1, 1, 2] = 3.0
    zero_share, blank_share = image_sparsity(maps)
    np.testing.assert_allclose(zero_share, [11 / 12, 7 / 12])
    np.testing.assert_allclose(blank_share, [2 / 3, 1 / 3])


def test_measure_sparsity_accumulates_over_batches_and_finds_never_active_maps():
    # a fake extractor: layer a's channel 1 is active only for image 2; layer b's channel 0
    # never; values depend on the image, so batches must stay aligned with their images
    images = np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1) * np.ones((1, 4, 4, 3), np.uint8)

    def extractor(batch, training=False):
        assert training is False
        k = np.round(batch[:, 0, 0, 0] * 255).astype(int)
        a = np.zeros((len(batch), 2, 2, 2), np.float32)
        a[:, :, :, 0] = 1.0
        a[k == 2, 0, 0, 1] = 5.0
        b = np.zeros((len(batch), 1, 1, 3), np.float32)
        b[:, 0, 0, 2] = k
        return [a, b]

    result = measure_sparsity(extractor, ["a", "b"], images, batch_size=2)
    assert result.shapes == [(2, 2, 2), (1, 1, 3)]
    np.testing.assert_allclose(result.zero_share[:, 0], [0.5, 0.5, 3 / 8])
    np.testing.assert_allclose(result.blank_share[:, 0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(result.blank_share[:, 1], [1.0, 2 / 3, 2 / 3])
    assert result.never_active == [0, 2]
    rows = sparsity_rows(result, image_position=2)
    assert [row["layer"] for row in rows] == ["a", "b"]
    assert rows[0]["blank_share_mean"] == pytest.approx(1 / 3)
    assert rows[0]["blank_share_std"] == pytest.approx(np.std([0.5, 0.5, 0.0], ddof=1))
    assert rows[1]["image_blank_maps"] == 2 and rows[0]["image_blank_maps"] == 0
    assert list(rows[0]) == SPARSITY_COLUMNS


# ----------------------------------------------------------------------------- export


def files(out: Path, layers: list[str] = LAYERS) -> SimpleNamespace:
    """The export's files in ``out``, named as the workflow names them."""
    return SimpleNamespace(
        layers={name: out / f"{name}.npz" for name in layers}, image=out / "image.npz",
        record=out / "image.json", per_image=out / "sparsity.npz", table=out / "sparsity.csv",
        summary=out / "sparsity.json")


def export_step(small: dict, out: Path, *values: str, layers: list[str] = LAYERS,
                **choice: str) -> int:
    """The export_activations step by hand (``python -m lfwcnn``), the activations section's
    ``choice`` keys in a config file; its exit status."""
    folder = small["folder"]
    overlay = out.parent / f"{out.name}-overlay.json"
    overlay.write_text(json.dumps({"activations": choice}))
    paths = files(out, layers)
    return run(steps.main, [
        "export_activations", f"model={folder / 'model.keras'}",
        f"dataset={folder / 'dataset.npz'}", f"split={folder / 'split.csv'}",
        *(f"layers={path}" for path in paths.layers.values()), f"image={paths.image}",
        f"record={paths.record}", f"per_image={paths.per_image}", f"table={paths.table}",
        f"summary={paths.summary}", *values, "--configfile", str(overlay)])


def test_export_writes_every_layer_with_the_models_shapes(small, tmp_path):
    out = tmp_path / "act"
    assert export_step(small, out, "seed=0") == 0
    summary = json.loads((out / "sparsity.json").read_text())
    model = small["model"]
    assert [row["layer"] for row in summary["layers"]] == LAYERS
    for name in LAYERS:
        with np.load(out / f"{name}.npz", allow_pickle=False) as npz:
            maps = npz["activations"]
            assert str(npz["layer"]) == name
            assert str(npz["image_file"]) == str(small["data"].files[small["test"][0]])
        assert maps.shape == tuple(model.get_layer(name).output.shape[1:])
        assert maps.dtype == np.float32 and (maps >= 0).all()  # ReLU, then max pooling
    # the exported maps are the model's own: the pooled maps are max-pooled conv maps
    with np.load(out / "conv1.npz") as c, np.load(out / "pool1.npz") as p:
        conv, pool = c["activations"], p["activations"]
    h, w = pool.shape[:2]
    pooled = conv[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).max(axis=(1, 3))
    np.testing.assert_allclose(pool, pooled, rtol=1e-6)

    record = json.loads((out / "image.json").read_text())
    assert record["chosen_by"] == "the first test image in the split file"
    assert [entry["shape"] for entry in record["layers"]] == [
        list(model.get_layer(name).output.shape[1:]) for name in LAYERS]
    table = pd.read_csv(out / "sparsity.csv")
    assert list(table.columns) == SPARSITY_COLUMNS
    assert (table["images"] == len(small["test"])).all()
    with np.load(out / "sparsity.npz", allow_pickle=False) as npz:
        assert npz["zero_share"].shape == (len(small["test"]), 6)
        np.testing.assert_allclose(npz["zero_share"].mean(axis=0), table["zero_share_mean"],
                                   rtol=1e-5)
    with np.load(out / "image.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["image"], small["data"].images[small["test"][0]])


def test_step_refuses_a_training_image_and_a_missing_layer(small, tmp_path, capsys):
    train_image = str(small["data"].files[small["train"][0]])
    assert export_step(small, tmp_path / "out", "seed=0", image=train_image) == 1
    assert "is in the training subset" in capsys.readouterr().err
    assert export_step(small, tmp_path / "out", "seed=0", layers=["conv1", "conv9"]) == 1
    assert "has no conv/pooling layer conv9" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_step_refuses_two_files_for_one_layer(small, tmp_path, capsys):
    folder = tmp_path / "out"
    assert export_step(small, folder, "seed=0", f"layers={tmp_path / 'again' / 'conv1.npz'}",
                       layers=["conv1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: layers: two files for one layer")
    assert not folder.exists()


def test_step_exports_the_named_persons_image(small, tmp_path):
    data, test = small["data"], small["test"]
    person = str(data.class_names[data.labels[test[-1]]])
    assert export_step(small, tmp_path / "out", "seed=7", person=person,
                       layers=["conv1", "pool1"]) == 0
    record = json.loads((tmp_path / "out" / "image.json").read_text())
    assert record["person"] == person and record["seed"] == 7
    assert sorted(p.name for p in Path(tmp_path / "out").glob("*.npz")) == [
        "conv1.npz", "image.npz", "pool1.npz", "sparsity.npz"]
