"""The paper's CNN: its layers, its parameter count, and the settings it refuses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from helpers_training import (
    TINY_ARCH,
    model_settings,
    tiny_config,
    train_argv,
    write_config,
    write_synthetic,
)
from workflow_runner import make_project, snakemake

from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.errors import LfwcnnError
from lfwcnn.model import (
    FEATURE_LAYER,
    build_model,
    feature_layer_names,
    feature_side,
    scale_pixels,
)
from lfwcnn.steps import main

PAPER = default_settings().model  # config.yaml's model: the paper's network

PAPER_LAYERS = ["image", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "flatten",
                "dense1", "dense2", "dropout2", "output"]


def test_paper_model_has_724962_parameters_and_named_layers():
    model = build_model(34, (64, 64, 3), PAPER)
    assert model.count_params() == 724_962
    assert [layer.name for layer in model.layers] == PAPER_LAYERS
    assert model.output_shape == (None, 34)
    # valid 3x3 convolutions and 2x2 pooling: 64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6
    assert model.get_layer("pool3").output.shape[1:] == (6, 6, 128)
    assert model.get_layer("flatten").output.shape[1:] == (4608,)


def test_the_feature_layer_names_are_those_the_model_gets():
    """Other steps (activations, figures, claims, the workflow) derive the names from these."""
    model = build_model(4, (16, 16, 3), model_settings(filters=[4, 8], dense_units=[8]))
    built = [layer.name for layer in model.layers if FEATURE_LAYER.fullmatch(layer.name)]
    assert built == feature_layer_names(2) == ["conv1", "pool1", "conv2", "pool2"]


def test_activations_and_dropout_match_the_paper():
    model = build_model(34, (64, 64, 3), PAPER)
    for name in ("conv1", "conv2", "conv3", "dense1", "dense2"):
        assert model.get_layer(name).activation.__name__ == "relu"
    assert model.get_layer("output").activation.__name__ == "softmax"
    assert model.get_layer("dropout2").rate == 0.5
    assert model.get_layer("conv1").padding == "valid"


def test_dropout_after_every_dense_layer_adds_no_parameters():
    model = build_model(34, (64, 64, 3),
                        model_settings(dropout_placement="all", dropout_rate=0.3))
    names = [layer.name for layer in model.layers]
    assert names[names.index("dense1") + 1] == "dropout1"
    assert names[names.index("dense2") + 1] == "dropout2"
    assert model.get_layer("dropout1").rate == 0.3
    assert model.count_params() == 724_962


def test_sizes_come_from_the_parameters():
    model = build_model(4, (16, 16, 3), model_settings(**TINY_ARCH))
    # conv1 3*3*3*4+4, conv2 3*3*4*8+8, dense1 (2*2*8)*16+16, dense2 16*8+8, output 8*4+4
    assert model.count_params() == 112 + 296 + 528 + 136 + 36
    assert [layer.name for layer in model.layers if layer.name.startswith("conv")] == [
        "conv1", "conv2"]


def test_feature_side():
    assert feature_side(64, 3, 3, 2) == 6
    assert feature_side(16, 2, 3, 2) == 2
    assert feature_side(8, 3, 3, 2) == 0


def test_scale_pixels_to_unit_interval():
    scaled = scale_pixels(np.array([[0, 51, 255]], dtype=np.uint8))
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, np.array([[0, 0.2, 1]], dtype=np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"filters": []}, "config key model.filters: [] should be non-empty"),
        ({"filters": [32, 0]}, "config key model.filters.1: 0 is less than the minimum of 1"),
        ({"dense_units": []}, "config key model.dense_units: [] should be non-empty"),
        ({"kernel_size": 0}, "config key model.kernel_size: 0 is less than the minimum of 1"),
        ({"dropout_rate": 1.0},
         "config key model.dropout_rate: 1.0 is greater than or equal to the maximum of 1"),
        ({"dropout_rate": -0.1},
         "config key model.dropout_rate: -0.1 is less than the minimum of 0"),
        ({"dropout_placement": "middle"},
         "config key model.dropout_placement: 'middle' is not one of ['last', 'all']"),
    ],
)
def test_bad_architecture_is_refused_by_the_schema(change, message):
    """The schema checks the settings once; build_model trusts them."""
    with pytest.raises(LfwcnnError) as refused:
        model_settings(**change)
    assert str(refused.value) == message


def test_images_too_small_are_refused():
    with pytest.raises(LfwcnnError, match="8x8 are too small for 3 blocks"):
        build_model(34, (8, 8, 3), PAPER)


def test_a_single_class_is_refused_in_one_line_before_writing(tmp_path, capsys):
    """Grey images are refused by load_dataset (test_train's FILE_CASES), one class here."""
    npz, split = write_synthetic(tmp_path, n_classes=1)
    config = write_config(tmp_path / "config.yaml", tiny_config())
    assert run(main, train_argv(npz, split, tmp_path / "out", configfile=config)) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the dataset holds 1 class; a classifier needs 2 or more"]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- model.activation


def test_the_activation_of_the_hidden_layers_is_a_setting():
    model = build_model(34, (64, 64, 3), model_settings(activation="tanh"))
    for name in ("conv1", "conv2", "conv3", "dense1", "dense2"):
        assert model.get_layer(name).activation.__name__ == "tanh"
    assert model.get_layer("output").activation.__name__ == "softmax"
    assert model.count_params() == 724_962
    assert PAPER.activation == "relu"  # the paper's, config.yaml's default


@pytest.mark.parametrize("name", ["sigmoidal", "Dense", "get", "threshold"])
def test_a_name_keras_has_no_activation_for_is_one_line_listing_them(name):
    """threshold is a Keras function, but one that needs more than the tensor."""
    with pytest.raises(LfwcnnError) as refused:
        build_model(4, (16, 16, 3), model_settings(**TINY_ARCH, activation=name))
    message = str(refused.value)
    assert message.startswith(f"config key model.activation: {name!r} is not a Keras "
                              "activation; choose one of ")
    known = message.split("choose one of ")[1].split(", ")
    assert "\n" not in message and {"relu", "tanh", "elu", "gelu"} <= set(known)
    assert "threshold" not in known and "get" not in known


def test_the_schema_wants_a_name():
    with pytest.raises(LfwcnnError, match=r"^config key model.activation: 3 is not of type "
                                          r"'string'$"):
        model_settings(activation=3)


def test_the_training_step_refuses_it_in_one_line_before_writing(tmp_path, capsys):
    npz, split = write_synthetic(tmp_path)
    config = write_config(tmp_path / "config.yaml", tiny_config(model={"activation": "rleu"}))
    before = sorted(tmp_path.rglob("*"))
    assert run(main, train_argv(npz, split, tmp_path / "out", configfile=config)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: config key model.activation: 'rleu' is not a Keras activation"), lines
    assert sorted(tmp_path.rglob("*")) == before  # no output, no backup folder


def test_the_workflow_refuses_it_in_the_training_jobs_log(lfw_tree, tmp_path):
    overlay = {"data": {"source": str(lfw_tree), "min_images_per_person": 5, "image_size": 16},
               "seeds": [0], **tiny_config(epochs=1, model={"activation": "rleu"})}
    project = make_project(tmp_path / "p", overlay)
    result = snakemake(project, "results/models/funneled/seed0/model.keras")
    assert result.returncode != 0
    log = (project / "logs/train/funneled/seed0.log").read_text().strip().splitlines()
    errors = [line for line in log if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: config key model.activation: 'rleu' is not a Keras activation"), log
    assert "Traceback" not in "\n".join(log)
    assert not (project / "results/models").exists() or not any(
        p.is_file() for p in (project / "results/models").rglob("*"))
