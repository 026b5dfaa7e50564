"""Train the paper's CNN for one seed: seeded, resumable after a kill, on the GPU when there is one.

Reproducibility has two halves. Within one run, ``keras.utils.set_random_seed`` and TensorFlow's
op determinism fix the initial weights and every kernel. Across a kill and a rerun, the
randomness of each epoch (batch order, dropout masks) is drawn from ``(seed, epoch)`` alone
(:mod:`lfwcnn.batches`), and the backup of each finished epoch holds the weights, the
optimizer state and the history so far (:mod:`lfwcnn.snapshots`). A resumed run therefore
ends with the very weights of an uninterrupted one. What the run leaves to be read, its
history and train.json, is :mod:`lfwcnn.run_record`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from lfwcnn.atomic import atomic_path, write_text
from lfwcnn.batches import epoch_randomness, shuffled_batches
from lfwcnn.cli import run
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.devices import DEVICES, check_device, claim_job_devices, select_device
from lfwcnn.errors import LfwcnnError
from lfwcnn.model import (
    DROPOUT_PLACEMENTS,
    build_model,
    check_architecture,
    check_input_shape,
    scale_pixels,
)
from lfwcnn.ownership import check_backup_dir, check_outputs, claim_backup_dir, release_backup_dir
from lfwcnn.run_record import history_csv, history_row, software, timings
from lfwcnn.snapshots import data_fingerprint, resume, save_snapshot

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class Architecture:
    """The model settings of ``config.model``, as :func:`lfwcnn.model.build_model` takes them."""

    filters: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 3
    pool_size: int = 2
    dense_units: tuple[int, ...] = (128, 256)
    dropout_rate: float = 0.5
    dropout_placement: str = "last"

    def as_dict(self) -> dict:
        """Every field, sequences as lists: JSON's form, so a loaded fingerprint compares equal."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Schedule:
    """The settings of ``config.train`` that decide the weights (the device does not)."""

    seed: int
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 0.001


@dataclass(frozen=True)
class Trained:
    model: object  # keras.Model
    history: list[dict]
    info: dict


def check_settings(schedule: Schedule, architecture: Architecture, device: str,
                   threads: int) -> None:
    """One line per bad setting, before TensorFlow is even imported."""
    if schedule.epochs < 1:
        raise LfwcnnError(f"epochs must be at least 1, got {schedule.epochs}")
    if schedule.batch_size < 1:
        raise LfwcnnError(f"batch size must be at least 1, got {schedule.batch_size}")
    if schedule.optimizer not in OPTIMIZERS:
        raise LfwcnnError(
            f"unknown optimizer {schedule.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    if not schedule.learning_rate > 0:
        raise LfwcnnError(f"learning rate must be positive, got {schedule.learning_rate}")
    if schedule.seed < 0:
        raise LfwcnnError(f"seed must be non-negative, got {schedule.seed}")
    check_device(device, threads)
    check_architecture(**architecture.as_dict())


def check_data(data: Dataset, train_idx: np.ndarray, test_idx: np.ndarray, arch: Architecture):
    """A dataset that loads may still not fit the model: too few people, or too small images."""
    if data.n_classes < 2:
        raise LfwcnnError(f"the dataset holds {data.n_classes} class; a classifier needs 2 or more")
    check_input_shape(data.images.shape[1:], filters=arch.filters, kernel_size=arch.kernel_size,
                      pool_size=arch.pool_size)
    overlap = np.intersect1d(train_idx, test_idx)
    if overlap.size:
        raise LfwcnnError(
            f"{overlap.size} images are in both the train and the test subset, "
            f"e.g. {data.files[overlap[0]]}"
        )


def fingerprint(data: Dataset, train_idx: np.ndarray, test_idx: np.ndarray, schedule: Schedule,
                architecture: Architecture) -> dict:
    """What a snapshot must match to be resumed: the data and every setting but the epochs
    (a longer run continues a shorter one)."""
    settings = {key: value for key, value in asdict(schedule).items() if key != "epochs"}
    return {"data": data_fingerprint(data.images, data.labels, train_idx, test_idx),
            **settings, "architecture": architecture.as_dict()}


def make_optimizer(name: str, learning_rate: float):
    import keras

    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}
    return classes[name](learning_rate=learning_rate)


def train(
    data: Dataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    schedule: Schedule,
    architecture: Architecture,
    backup_dir: str | os.PathLike,
    device: str = "auto",
    threads: int = 0,
) -> Trained:
    """Train one seed; resume from ``backup_dir`` when it holds a snapshot of this same run.

    The settings are those the config schema (or :func:`check_settings`, for the command line)
    has checked; the data are checked here, before TensorFlow starts.
    """
    check_data(data, train_idx, test_idx, architecture)
    backup = claim_backup_dir(backup_dir)
    device_info = select_device(device, threads)
    import keras
    import tensorflow as tf

    run_fingerprint = fingerprint(data, train_idx, test_idx, schedule, architecture)
    keras.utils.set_random_seed(schedule.seed)
    tf.config.experimental.enable_op_determinism()
    eye = np.eye(data.n_classes, dtype=np.float32)
    test_x, test_y = scale_pixels(data.images[test_idx]), eye[data.labels[test_idx]]

    with tf.device("/GPU:0" if device_info["device"] == "gpu" else "/CPU:0"):
        model = build_model(data.n_classes, data.images.shape[1:], **architecture.as_dict())
        model.compile(
            optimizer=make_optimizer(schedule.optimizer, schedule.learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = resume(model, backup.path, run_fingerprint, schedule.epochs)
        initial_epoch = len(history)

        with tf.device("/CPU:0"):  # the input pipeline runs on the host, and so must its epoch
            epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        batches = shuffled_batches(
            data.images[train_idx], eye[data.labels[train_idx]],
            batch_size=schedule.batch_size, seed=schedule.seed, epoch=epoch_var,
        )
        started: dict[str, float] = {}

        def on_epoch_begin(epoch, logs=None):
            epoch_randomness(model, epoch_var, schedule.seed, epoch)
            started["epoch"] = time.perf_counter()

        def on_epoch_end(epoch, logs=None):
            history.append(history_row(epoch + 1, logs, time.perf_counter() - started["epoch"]))
            save_snapshot(backup, model, epoch + 1, history, run_fingerprint)

        callbacks = [keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin,
                                                    on_epoch_end=on_epoch_end)]
        start, start_cpu = time.perf_counter(), time.process_time()
        if initial_epoch < schedule.epochs:
            model.fit(
                batches,
                epochs=schedule.epochs,
                initial_epoch=initial_epoch,
                validation_data=(test_x, test_y),
                shuffle=False,  # the batches are shuffled already, by (seed, epoch)
                callbacks=callbacks,
                verbose=2,
            )
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu

    info = {
        **device_info,
        **asdict(schedule),
        "architecture": architecture.as_dict(),
        **timings(history, initial_epoch, seconds, cpu_seconds),
        "params": model.count_params(),
        "train_images": int(len(train_idx)),
        "test_images": int(len(test_idx)),
        "classes": data.n_classes,
        "image_shape": list(data.images.shape[1:]),
        **software(),
    }
    return Trained(model, history, info)


def write_outputs(trained: Trained, *, model_path, history_path, info_path) -> None:
    with atomic_path(model_path, suffix=".keras") as tmp:
        trained.model.save(tmp)
    write_text(history_path, history_csv(trained.history))
    write_text(info_path, json.dumps(trained.info, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default = {f.name: f.default for cls in (Schedule, Architecture) for f in fields(cls)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset.npz")
    parser.add_argument("--split", required=True, help="split CSV (file,subset)")
    parser.add_argument("--seed", type=int, required=True, help="initialisation seed")
    parser.add_argument("--split-seed", type=int, help="seed the split was drawn with (recorded)")
    parser.add_argument("--epochs", type=int, default=default["epochs"])
    parser.add_argument("--batch-size", type=int, default=default["batch_size"])
    parser.add_argument("--optimizer", default=default["optimizer"], help=" | ".join(OPTIMIZERS))
    parser.add_argument("--learning-rate", type=float, default=default["learning_rate"])
    parser.add_argument("--filters", type=int, nargs="+", default=default["filters"])
    parser.add_argument("--kernel-size", type=int, default=default["kernel_size"])
    parser.add_argument("--pool-size", type=int, default=default["pool_size"])
    parser.add_argument("--dense-units", type=int, nargs="+", default=default["dense_units"])
    parser.add_argument("--dropout-rate", type=float, default=default["dropout_rate"])
    parser.add_argument("--dropout-placement", default=default["dropout_placement"],
                        help=" | ".join(DROPOUT_PLACEMENTS))
    parser.add_argument("--device", default="auto", help=" | ".join(DEVICES))
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads; 0: its choice")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs the job was given (its gpu resource): it then sees only those "
                             "(lfwcnn.devices); unset: CUDA_VISIBLE_DEVICES as it is")
    parser.add_argument("--backup-dir", required=True, help="per-epoch snapshots for resuming")
    parser.add_argument("--model", required=True, help="trained model to write (.keras)")
    parser.add_argument("--history", required=True, help="per-epoch history CSV to write")
    parser.add_argument("--info", required=True, help="run record JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    schedule = Schedule(args.seed, args.epochs, args.batch_size, args.optimizer,
                        args.learning_rate)
    architecture = Architecture(tuple(args.filters), args.kernel_size, args.pool_size,
                                tuple(args.dense_units), args.dropout_rate, args.dropout_placement)
    # every argument is checked before the dataset is read and before TensorFlow starts
    check_settings(schedule, architecture, args.device, args.threads)
    # before TensorFlow starts: it reads CUDA_VISIBLE_DEVICES once
    claim = None if args.gpus is None else claim_job_devices(args.gpus)
    if not str(args.model).endswith(".keras"):
        raise LfwcnnError(f"--model {args.model}: Keras models are written as .keras files")
    inputs = {"--dataset": args.dataset, "--split": args.split}
    outputs = {"--model": args.model, "--history": args.history, "--info": args.info}
    check_outputs(outputs, inputs)
    check_backup_dir(args.backup_dir, {**inputs, **outputs})
    data = load_dataset(args.dataset)
    train_idx, test_idx = load_split(args.split, data)
    trained = train(data, train_idx, test_idx, schedule=schedule, architecture=architecture,
                    backup_dir=args.backup_dir, device=args.device, threads=args.threads)
    trained.info["split_seed"] = args.split_seed
    trained.info["dataset"] = str(args.dataset)
    trained.info["split"] = str(args.split)
    if claim is not None:
        trained.info.update(claim.record())
    write_outputs(trained, model_path=args.model, history_path=args.history, info_path=args.info)
    # only once every output is in place; train() made or adopted the folder and marked it
    release_backup_dir(claim_backup_dir(args.backup_dir))
    final = trained.info["final"]
    log.info("seed %d: test accuracy %.4f after %d epochs on %s (%.2f s/epoch)", args.seed,
             final["test_accuracy"], args.epochs, trained.info["device"],
             trained.info["seconds_per_epoch"] or float("nan"))


if __name__ == "__main__":
    raise SystemExit(run(main))
