"""Train the paper's CNN for one seed: seeded, resumable after a kill, on the GPU when there is one.

Reproducibility has two halves. Within one run, ``keras.utils.set_random_seed`` and TensorFlow's
op determinism fix the initial weights and every kernel. Across a kill and a rerun, the
randomness of each epoch (batch order, dropout masks) is drawn from ``(seed, epoch)`` alone,
not from generators that have advanced since the start, and the backup of each finished
epoch holds the weights, the optimizer state and the history so far. A resumed run therefore
ends with the very weights of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfwcnn.atomic import atomic_dir, atomic_path, write_text
from lfwcnn.cli import run
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.devices import claim_job_devices, cpu_model
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import reason
from lfwcnn.model import (
    DROPOUT_PLACEMENTS,
    build_model,
    check_architecture,
    check_input_shape,
    scale_pixels,
)
from lfwcnn.ownership import (
    LATEST,
    SNAPSHOT,
    BackupDir,
    check_backup_dir,
    check_outputs,
    claim_backup_dir,
    prune_snapshots,
    release_backup_dir,
    remove_snapshot,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop")
DEVICES = ("auto", "cpu", "gpu")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds")
# Keras names the per-epoch metrics on validation_data "val_*"; here that data is the test set.
KERAS_LOGS = {"loss": "loss", "accuracy": "accuracy",
              "test_loss": "val_loss", "test_accuracy": "val_accuracy"}
EPOCH_STRIDE = 2**20  # dropout draws per epoch never reach this, so epochs never share a seed


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
        return {
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "pool_size": self.pool_size,
            "dense_units": list(self.dense_units),
            "dropout_rate": self.dropout_rate,
            "dropout_placement": self.dropout_placement,
        }


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


def check_schedule(schedule: Schedule) -> None:
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


def check_device(device: str, threads: int) -> None:
    if device not in DEVICES:
        raise LfwcnnError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if threads < 0:
        raise LfwcnnError(f"threads must be 0 (TensorFlow's choice) or more, got {threads}")


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


def data_fingerprint(data: Dataset, train_idx: np.ndarray, test_idx: np.ndarray) -> str:
    """Identify the arrays and split a backup was made from; a backup of other data is stale."""
    digest = hashlib.sha256()
    for array in (data.images, data.labels, train_idx, test_idx):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def select_device(device: str, threads: int) -> dict:
    """Pick GPU or CPU before TensorFlow's runtime starts; return what was picked, for the record.

    ``auto`` takes the GPU when TensorFlow sees one. CUDA_VISIBLE_DEVICES is honoured as given
    (TensorFlow applies it). Memory growth lets several seeds share one GPU when a scheduler
    puts them there.
    """
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # runtime already started (a second run in one process)
            pass
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise LfwcnnError(
            "device gpu was asked for but TensorFlow sees no GPU"
            + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
        )
    use_gpu = bool(gpus) and device != "cpu"
    try:
        if gpus and not use_gpu:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus if use_gpu else []:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # runtime already started; the device scope in train() still holds
        pass
    gpu_name = None
    if use_gpu:
        gpu_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    return {
        "device": "gpu" if use_gpu else "cpu",
        "gpu_name": gpu_name,
        "gpus_seen": len(gpus),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads": threads or None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
    }


def make_optimizer(name: str, learning_rate: float):
    import keras

    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}
    return classes[name](learning_rate=learning_rate)


def shuffled_batches(images: np.ndarray, onehot: np.ndarray, *, batch_size: int, seed: int,
                     epoch):
    """Batches in an order drawn from ``(seed, epoch)``, where ``epoch`` is a tf.Variable.

    Keras' own ``shuffle=True`` draws from a generator that advances epoch after epoch, so a
    resumed run would see other batches than an uninterrupted one; here the permutation is a
    stateless function of the epoch number, set by :func:`epoch_randomness` before each epoch.
    """
    import tensorflow as tf

    n = len(images)
    with tf.device("/CPU:0"):
        pixels = tf.constant(images)  # uint8: a quarter of the memory of the scaled floats
        targets = tf.constant(onehot)

    def permutation(_):
        key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
        return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)

    def gather(indices):
        # the same float32 division as scale_pixels, so both paths give identical inputs
        return tf.cast(tf.gather(pixels, indices), tf.float32) / 255.0, tf.gather(targets, indices)

    n_batches = math.ceil(n / batch_size)
    return (
        tf.data.Dataset.range(1)
        .map(permutation)
        .unbatch()
        .batch(batch_size)
        .map(gather)
        .apply(tf.data.experimental.assert_cardinality(n_batches))
        .prefetch(tf.data.AUTOTUNE)
    )


def epoch_randomness(model, epoch_var, seed: int, epoch: int) -> None:
    """Key the batch order and every dropout layer's generator to ``(seed, epoch)``."""
    epoch_var.assign(epoch)
    for index, layer in enumerate(model.layers):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state = np.array([seed * 131 + index, epoch * EPOCH_STRIDE], dtype="int64")
            generator.state.assign(state.astype(generator.state.dtype))


def history_row(epoch: int, logs: dict, seconds: float) -> dict:
    row = {"epoch": epoch, "seconds": round(seconds, 4)}
    for column, key in KERAS_LOGS.items():
        row[column] = float(logs[key])
    return row


def history_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_history_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: int(value) if key == "epoch" else float(value) for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


@dataclass(frozen=True)
class Snapshot:
    epoch: int  # epochs finished
    weights: Path
    history: list[dict]


def save_snapshot(backup: BackupDir, model, epoch: int, history: list[dict], fingerprint: dict):
    """Write one finished epoch's state into its own folder, then point ``latest`` at it.

    Folder and pointer are each replaced atomically, so a kill at any instant leaves the
    previous complete snapshot or the new one, never a weights file of one epoch beside the
    epoch number of another (the gap Keras' BackupAndRestore leaves between its two files).
    Only the step's own snapshot folders are ever removed (:mod:`lfwcnn.ownership`).
    """
    name = f"epoch-{epoch:04d}"
    backup_dir = backup.path
    final = backup_dir / name
    remove_snapshot(backup, name)  # written by a killed run that had not moved the pointer
    with atomic_dir(final) as tmp:
        model.save_weights(tmp / "state.weights.h5")  # weights and optimizer state
        (tmp / "history.csv").write_text(history_csv(history), encoding="utf-8")
        state = {"epoch": epoch, "fingerprint": fingerprint}
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    write_text(backup_dir / LATEST, name + "\n")
    prune_snapshots(backup, keep=name)


def load_snapshot(backup_dir: Path, fingerprint: dict, epochs: int) -> Snapshot | None:
    """The last snapshot, if it was made by this very run (same data, seed and settings)."""
    pointer = backup_dir / LATEST
    if not pointer.is_file():
        return None
    folder = backup_dir / pointer.read_text(encoding="utf-8").strip()
    try:
        if not SNAPSHOT.fullmatch(folder.name) or folder.parent != backup_dir:
            raise ValueError(f"{pointer} names no snapshot of this folder")
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        history = read_history_csv(folder / "history.csv")
    except (OSError, ValueError, KeyError) as err:
        raise LfwcnnError(
            f"backup {folder} is unreadable ({err}); delete {backup_dir} to start over"
        ) from None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring backup in %s: it was made with other data or settings", backup_dir)
        return None
    if state["epoch"] > epochs or len(history) != state["epoch"]:
        log.warning("ignoring backup in %s: epoch %s does not fit %d epochs",
                    backup_dir, state["epoch"], epochs)
        return None
    return Snapshot(state["epoch"], folder / "state.weights.h5", history)


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
    """Train one seed; resume from ``backup_dir`` when it holds a snapshot of this same run."""
    check_schedule(schedule)
    check_device(device, threads)
    check_architecture(**architecture.as_dict())
    check_data(data, train_idx, test_idx, architecture)
    backup = claim_backup_dir(backup_dir)
    backup_dir = backup.path
    device_info = select_device(device, threads)
    import keras
    import tensorflow as tf

    fingerprint = {
        "data": data_fingerprint(data, train_idx, test_idx),
        "seed": schedule.seed,
        "batch_size": schedule.batch_size,
        "optimizer": schedule.optimizer,
        "learning_rate": schedule.learning_rate,
        "architecture": architecture.as_dict(),
    }
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
        snapshot = load_snapshot(backup_dir, fingerprint, schedule.epochs)
        history: list[dict] = []
        if snapshot is not None:
            model.optimizer.build(model.trainable_variables)  # so its state can be loaded
            try:
                model.load_weights(snapshot.weights)
            except Exception as err:  # noqa: BLE001 - whatever Keras says, one line
                raise LfwcnnError(f"backup {snapshot.weights} is unreadable ({reason(err)}); "
                                  f"delete {backup_dir} to start over") from None
            history = list(snapshot.history)
            log.info("resuming from %s after epoch %d", backup_dir, snapshot.epoch)
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
            save_snapshot(backup, model, epoch + 1, history, fingerprint)

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
        **run_record(schedule, architecture, history, initial_epoch, seconds),
        "params": model.count_params(),
        "train_images": int(len(train_idx)),
        "test_images": int(len(test_idx)),
        "classes": data.n_classes,
        "image_shape": list(data.images.shape[1:]),
        "cpu_seconds": round(cpu_seconds, 3),  # all threads; beside "seconds" it shows load
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
    return Trained(model, history, info)


def run_record(schedule: Schedule, architecture: Architecture, history: list[dict],
               initial_epoch: int, seconds: float) -> dict:
    """Settings and timings for train.json; per-epoch seconds count this process's epochs only."""
    timed = [row["seconds"] for row in history[initial_epoch:]]
    return {
        "seed": schedule.seed,
        "epochs": schedule.epochs,
        "batch_size": schedule.batch_size,
        "optimizer": schedule.optimizer,
        "learning_rate": schedule.learning_rate,
        "architecture": architecture.as_dict(),
        "resumed_from_epoch": initial_epoch,
        "seconds": round(seconds, 3),
        "seconds_per_epoch": round(float(np.mean(timed)), 4) if timed else None,
        "final": {key: history[-1][key] for key in KERAS_LOGS},
    }


def write_outputs(trained: Trained, *, model_path, history_path, info_path) -> None:
    with atomic_path(model_path, suffix=".keras") as tmp:
        trained.model.save(tmp)
    write_text(history_path, history_csv(trained.history))
    write_text(info_path, json.dumps(trained.info, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset.npz")
    parser.add_argument("--split", required=True, help="split CSV (file,subset)")
    parser.add_argument("--seed", type=int, required=True, help="initialisation seed")
    parser.add_argument("--split-seed", type=int, help="seed the split was drawn with (recorded)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adam", help=" | ".join(OPTIMIZERS))
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--filters", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--dense-units", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--dropout-rate", type=float, default=0.5)
    parser.add_argument("--dropout-placement", default="last", help=" | ".join(DROPOUT_PLACEMENTS))
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
    check_schedule(schedule)
    check_device(args.device, args.threads)
    # before TensorFlow starts: it reads CUDA_VISIBLE_DEVICES once
    claim = None if args.gpus is None else claim_job_devices(args.gpus)
    check_architecture(**architecture.as_dict())
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
