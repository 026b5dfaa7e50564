"""Training: seeded, resumable after kill -9 with the same final weights, bad input refused."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers_training import (
    make_dataset,
    model_weights,
    python_module,
    split_in_quarters,
    tf_env,
    tiny_config,
    tiny_settings,
    train_argv,
    write_config,
    write_synthetic,
)
from workflow_runner import SHARED_LFW, SHARED_LFW_REASON

from lfwcnn.cli import run
from lfwcnn.dataset import save_dataset, save_split
from lfwcnn.devices import select_device
from lfwcnn.errors import LfwcnnError
from lfwcnn.run_record import HISTORY_COLUMNS
from lfwcnn.steps import main
from lfwcnn.train import train_seed


def fit(tmp_path, name, *, seed=0, epochs=4, data=None, **train):
    data = data if data is not None else make_dataset()
    train_idx, test_idx = split_in_quarters(data)
    settings = tiny_settings(epochs=epochs, **train)
    return train_seed(data, train_idx, test_idx, seed=seed, model=settings.model,
                      train=settings.train, backup_dir=tmp_path / name, threads=1)


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four short in-process runs the determinism and resume tests compare."""
    tmp = tmp_path_factory.mktemp("runs")
    first = fit(tmp, "first")
    again = fit(tmp, "again")
    other = fit(tmp, "other", seed=1)
    fit(tmp, "resumed", epochs=2)  # leaves its backup behind (the step removes it, not this)
    resumed = fit(tmp, "resumed")
    return {"first": first, "again": again, "other": other, "resumed": resumed}


def test_same_seed_gives_the_same_weights_and_history(runs):
    first, again = runs["first"], runs["again"]
    assert same_weights(first.model.get_weights(), again.model.get_weights())
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in first.history]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"} for row in again.history]


def test_another_seed_gives_other_weights(runs):
    assert not same_weights(runs["first"].model.get_weights(), runs["other"].model.get_weights())


def test_resuming_from_a_backup_continues_the_same_run(runs):
    resumed = runs["resumed"]
    assert resumed.info["resumed_from_epoch"] == 2
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    assert same_weights(runs["first"].model.get_weights(), resumed.model.get_weights())


def test_a_backup_of_other_settings_is_ignored(tmp_path):
    fit(tmp_path, "backup", epochs=1)
    assert (tmp_path / "backup" / "latest").is_file()
    other = fit(tmp_path, "backup", epochs=2, learning_rate=0.01)
    assert other.info["resumed_from_epoch"] == 0


def test_learns_the_synthetic_faces_well_above_chance(tmp_path):
    trained = fit(tmp_path, "learn", epochs=5, learning_rate=0.01)
    assert trained.info["final"]["test_accuracy"] > 0.5  # 4 classes: chance is 0.25
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]


def test_run_record(runs):
    info = runs["first"].info
    assert info["device"] == "cpu" and info["gpu_name"] is None
    assert info["cpu"] and info["cores"] >= 1
    assert info["params"] == 1108 and info["seed"] == 0 and info["epochs"] == 4
    assert info["model"] == tiny_settings().model.as_dict() and info["model"]["filters"] == [4, 8]
    assert info["train"] == {**tiny_settings(epochs=4).train.as_dict(), "device": "cpu"}
    assert (info["train_images"], info["test_images"]) == (72, 24)
    assert info["seconds_per_epoch"] > 0 and info["tensorflow"] and info["keras"]
    assert set(info["numerics"]) == {"vector_extensions", "onednn", "tensorflow_build",
                                     "gpu_driver"}
    assert info["numerics"]["onednn"] in (True, False) and info["numerics"]["tensorflow_build"]


@pytest.mark.parametrize("precision, jit", [("mixed_bfloat16", True), ("mixed_float16", False)])
def test_precision_and_jit_are_applied_and_recorded(tmp_path, precision, jit):
    trained = fit(tmp_path, "fast", epochs=1, precision=precision, jit=jit)
    network = trained.model
    assert network.get_layer("conv1").dtype_policy.name == precision
    assert network.get_layer("output").dtype_policy.name == "float32"  # softmax stays float32
    assert network.jit_compile is jit
    assert (trained.info["train"]["precision"], trained.info["train"]["jit"]) == (precision, jit)
    assert np.isfinite(trained.history[-1]["loss"])
    assert fit(tmp_path, "plain", epochs=1).model.get_layer("conv1").dtype_policy.name == "float32"


def test_gpu_asked_for_without_one_is_an_error():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(LfwcnnError, match="device gpu was asked for but TensorFlow sees no GPU"):
        select_device("gpu", 0)


def read_history(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def latest_epoch(backup):
    try:
        return int((backup / "latest").read_text().split("-")[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_killed_run_resumes_and_ends_with_the_uninterrupted_weights(tmp_path):
    npz, split = write_synthetic(tmp_path)
    epochs = 20  # the kill lands after epoch 3, seconds before the end
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    command = python_module("lfwcnn")
    config = write_config(tmp_path / "config.yaml", tiny_config(epochs=epochs))
    quiet = {"env": tf_env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    reference = subprocess.Popen(command + train_argv(npz, split, whole, configfile=config),
                                 **quiet)
    victim = subprocess.Popen(command + train_argv(npz, split, killed, configfile=config),
                              **quiet)
    deadline = time.monotonic() + 90
    while latest_epoch(killed / "backup") < 3 and victim.poll() is None:
        assert time.monotonic() < deadline, "no epoch was backed up in 90 s"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert 3 <= latest_epoch(killed / "backup") < epochs
    assert not (killed / "model.keras").exists()

    rerun = subprocess.run(command + train_argv(npz, split, killed, configfile=config),
                           env=tf_env(), capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stderr
    _, err = reference.communicate(timeout=180)
    assert reference.returncode == 0, err[-2000:]

    assert same_weights(model_weights(whole / "model.keras"), model_weights(killed / "model.keras"))
    info = json.loads((killed / "train.json").read_text())
    assert info["resumed_from_epoch"] >= 3
    rows, reference_rows = read_history(killed / "history.csv"), read_history(whole / "history.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    for row, ref in zip(rows, reference_rows, strict=True):
        assert {k: v for k, v in row.items() if k != "seconds"} == {
            k: v for k, v in ref.items() if k != "seconds"}
    assert not (killed / "backup").exists() and not (whole / "backup").exists()
    assert tuple(reference_rows[0]) == HISTORY_COLUMNS


def test_trainings_sharing_a_gpu_give_the_weights_each_gives_alone(tmp_path):
    """train.per_gpu: two seeds trained at once in two processes, each holding a slot of the
    same (stand-in) GPU, end with exactly the weights and history each gives alone: per process
    it is the same computation. On a CPU here (tiny_config's device); on a GPU untested."""
    npz, split = write_synthetic(tmp_path)
    config = write_config(tmp_path / "config.yaml", tiny_config(epochs=3))
    command = python_module("lfwcnn")

    def argv(seed, out, **options):
        return command + train_argv(npz, split, tmp_path / out, configfile=config, seed=seed,
                                    **options)

    for seed in (0, 1):
        alone = subprocess.run(argv(seed, f"alone{seed}"), env=tf_env(), capture_output=True,
                               text=True, timeout=300)
        assert alone.returncode == 0, alone.stderr[-2000:]
    shared_env = {**tf_env(), "CUDA_VISIBLE_DEVICES": "0", "LFWCNN_GPU_LOCK_DIR": str(tmp_path)}
    shared_env.pop("SLURM_JOB_ID", None)
    together = [subprocess.Popen(argv(seed, f"shared{seed}", gpu=1, per_gpu=2), env=shared_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for seed in (0, 1)]
    for process in together:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    records = [json.loads((tmp_path / f"shared{seed}" / "train.json").read_text())
               for seed in (0, 1)]
    # both on the one GPU, a slot each (the slot numbers depend on which started first)
    assert [record["cuda_visible_devices"] for record in records] == ["0", "0"]
    assert sorted(slot for record in records for slot in record["gpu_slots"]) == [0, 1]
    assert [record["per_gpu"] for record in records] == [2, 2]
    for seed in (0, 1):
        alone, shared = tmp_path / f"alone{seed}", tmp_path / f"shared{seed}"
        assert same_weights(model_weights(alone / "model.keras"),
                            model_weights(shared / "model.keras"))
        assert [{k: v for k, v in row.items() if k != "seconds"}
                for row in read_history(alone / "history.csv")] == [
            {k: v for k, v in row.items() if k != "seconds"}
            for row in read_history(shared / "history.csv")]
    assert not same_weights(model_weights(tmp_path / "shared0" / "model.keras"),
                            model_weights(tmp_path / "shared1" / "model.keras"))


# ------------------------------------------------------------------------------- bad input


def bad_files(tmp_path, case):
    """Write the broken dataset or split of ``case``; return values pointing at it."""
    data = make_dataset()
    train_idx, test_idx = split_in_quarters(data)
    npz, split = tmp_path / "bad.npz", tmp_path / "bad.csv"
    fields = {"images": data.images, "labels": data.labels, "class_names": data.class_names,
              "files": data.files}
    if case == "labels out of range":
        fields["labels"] = np.where(data.labels == 3, 7, data.labels)
    if case == "grey images":
        fields["images"] = data.images[..., 0]
    if case == "tiny images":
        fields["images"] = data.images[:, :8, :8]
    np.savez(npz, **fields)
    if case == "empty test subset":
        save_split(split, data.files, train_idx, [])
    elif case == "overlapping subsets":
        save_split(split, data.files, train_idx, np.r_[test_idx, train_idx[:1]])
    elif case == "unknown file":
        save_split(split, np.r_[data.files[:-1], ["Nobody/Nobody_0001.jpg"]], train_idx,
                   test_idx)
    else:
        save_split(split, data.files, train_idx, test_idx)
    return {"dataset": npz, "split_csv": split}


# settings the schema refuses (a config overlay), and values given to the step
CONFIG_CASES = [
    ({"train": {"epochs": 0}}, "config key train.epochs: 0 is less than the minimum of 1"),
    ({"train": {"batch_size": 0}}, "config key train.batch_size: 0 is less than the minimum of 1"),
    ({"train": {"optimizer": "adagrad"}},
     "config key train.optimizer: 'adagrad' is not one of ['adam', 'sgd', 'rmsprop']"),
    ({"model": {"dropout_placement": "middle"}},
     "config key model.dropout_placement: 'middle' is not one of ['last', 'all']"),
    ({"model": {"dropout_rate": 1.5}},
     "config key model.dropout_rate: 1.5 is greater than or equal to the maximum of 1"),
    ({"train": {"learning_rate": 0}},
     "config key train.learning_rate: 0 is less than or equal to the minimum of 0"),
    ({"train": {"device": "tpu"}},
     "config key train.device: 'tpu' is not one of ['auto', 'cpu', 'gpu']"),
    ({"model": {"filters": [8, 0]}}, "config key model.filters.1: 0 is less than the minimum of 1"),
    ({"train": {"precision": "float16"}}, "config key train.precision: 'float16' is not one of "
     "['float32', 'mixed_bfloat16', 'mixed_float16']"),
    ({"train": {"jit": "yes"}}, "config key train.jit: 'yes' is not of type 'boolean'"),
]
VALUE_CASES = [
    ({"model_file": "model.h5"}, "model_file model.h5: Keras models are written as .keras files"),
    ({"dataset": "missing.npz"},
     "missing.npz: cannot read as prepared dataset (No such file or directory)"),
    ({"threads": -1}, "threads must be 0 (TensorFlow's choice) or more, got -1"),
    ({"seed": "first"}, "seed: 'first' is not an integer"),
    ({"seed": -1}, "seed must be non-negative, got -1"),
]
FILE_CASES = [
    ("labels out of range", "labels must lie in 0..3, found 0..7"),
    ("grey images", "images must be uint8 (N, H, W, 3)"),
    ("tiny images", "images of 8x8 are too small for 2 blocks"),
    ("empty test subset", "the test subset is empty"),
    ("overlapping subsets", "1 images are in both the train and the test subset"),
    ("unknown file", "Nobody/Nobody_0001.jpg is not in the dataset"),
]


def refused(tmp_path, capsys, overrides, config=None):
    npz, split = write_synthetic(tmp_path)
    out = tmp_path / "out"
    overlay = tiny_config()
    for section, values in (config or {}).items():
        overlay[section].update(values)
    configfile = write_config(tmp_path / "config.yaml", overlay)
    status = run(main, train_argv(npz, split, out, configfile=configfile, **overrides))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert not out.exists()  # nothing written, no backup started
    return err


@pytest.mark.parametrize("config, message", CONFIG_CASES)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, config, message):
    err = refused(tmp_path, capsys, {}, config)
    assert err == [f"error: {message}"], err


@pytest.mark.parametrize("overrides, message", VALUE_CASES)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, overrides, message):
    err = refused(tmp_path, capsys, overrides)
    assert err[-1].startswith("error: ") and message in err[-1], err


@pytest.mark.parametrize("case, message", FILE_CASES)
def test_bad_data_is_a_one_line_error(tmp_path, capsys, case, message):
    err = refused(tmp_path, capsys, bad_files(tmp_path, case))
    assert err[-1].startswith("error: ") and message in err[-1], err


def test_argument_errors_come_before_tensorflow_starts(tmp_path):
    """Checked in a fresh interpreter: a bad config fails in well under TensorFlow's import."""
    npz, split = write_synthetic(tmp_path)
    probe = (
        "import sys; from lfwcnn.cli import run; from lfwcnn.steps import main;"
        "status = run(main, sys.argv[1:]);"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules); sys.exit(status)"
    )
    bad_config = write_config(tmp_path / "bad.yaml", tiny_config(epochs=0))
    good_config = write_config(tmp_path / "good.yaml", tiny_config())
    for overrides, config in (({}, bad_config),
                              (bad_files(tmp_path, "labels out of range"), good_config)):
        result = subprocess.run(
            [sys.executable, "-c", probe,
             *train_argv(npz, split, tmp_path / "o", configfile=config, **overrides)],
            env=tf_env(), capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 1
        assert result.stdout.split() == ["False", "False"]
        assert [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# ------------------------------------------------------------------------------- real LFW


@pytest.mark.real_lfw
@pytest.mark.skipif(not SHARED_LFW.is_dir(), reason=SHARED_LFW_REASON)
def test_real_lfw_a_few_epochs_beat_chance_and_the_majority_class(tmp_path):
    from lfwcnn.config import default_settings
    from lfwcnn.evaluate import score
    from lfwcnn.prepare import prepare
    from lfwcnn.split import split_indices

    data = prepare(SHARED_LFW, default_settings().data, workers=2).data
    save_dataset(tmp_path / "dataset.npz", data)  # the round trip the pipeline makes
    train_idx, test_idx = split_indices(data.labels, test_fraction=0.25, seed=0)
    settings = default_settings({"train": {"epochs": 8}})
    trained = train_seed(data, train_idx, test_idx, seed=0, model=settings.model,
                         train=settings.train, backup_dir=tmp_path / "backup", threads=2)
    shutil.rmtree(tmp_path / "backup")
    probabilities = trained.model.predict(data.images[test_idx] / np.float32(255), verbose=0)
    metrics, _, _ = score(data.labels[test_idx], probabilities.astype(np.float64),
                          list(data.class_names), 0.95)
    assert metrics["test_images"] == 593 and trained.info["params"] == 724_962
    # chance is 1/34 (3 %) and always saying George W Bush scores about 23 %
    assert metrics["accuracy"] > max(0.4, metrics["majority_accuracy"] + 0.1)
    assert metrics["accuracy"] == pytest.approx(trained.info["final"]["test_accuracy"], abs=1e-6)
