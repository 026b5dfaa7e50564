"""Train the paper's CNN for one seed: seeded, resumable after a kill, on the GPU when there is one.

Seed and op determinism fix one run; each epoch's randomness comes from ``(seed, epoch)`` alone
(:mod:`lfwcnn.batches`) and each finished epoch is backed up (:mod:`lfwcnn.snapshots`), so a run
resumed after a kill ends with the very weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lfwcnn.atomic import atomic_path, write_text
from lfwcnn.batches import epoch_randomness, shuffled_batches
from lfwcnn.dataset import Dataset, load_dataset, load_split
from lfwcnn.devices import claim_job_devices, numerics, select_device
from lfwcnn.errors import LfwcnnError
from lfwcnn.model import check_model, initial_model, scale_pixels
from lfwcnn.ownership import check_backup_dir, check_outputs, claim_backup_dir, release_backup_dir
from lfwcnn.run_record import duration, history_csv, history_row, software, time_left, timings
from lfwcnn.settings import Settings
from lfwcnn.snapshots import resume, resume_fingerprint, save_snapshot

log = logging.getLogger(__name__)


class Trained(NamedTuple):
    model: object  # keras.Model
    history: list[dict]
    info: dict


def train_seed(data: Dataset, train_idx: np.ndarray, test_idx: np.ndarray, *, seed: int,
               model: Settings, train: Settings, backup_dir: str | os.PathLike,
               threads: int = 0) -> Trained:
    """Train one seed; resume from ``backup_dir`` when it holds a snapshot of this same run."""
    # the data are checked before the backup folder is made
    if data.n_classes < 2:
        raise LfwcnnError(f"the dataset holds {data.n_classes} class; a classifier needs 2 or more")
    check_model(model, data.images.shape[1:])
    overlap = np.intersect1d(train_idx, test_idx)
    if overlap.size:
        raise LfwcnnError(f"{overlap.size} images are in both the train and the test subset, "
                          f"e.g. {data.files[overlap[0]]}")
    backup = claim_backup_dir(backup_dir)
    device_info = select_device(train.device, threads)
    import keras
    import tensorflow as tf

    fingerprint = resume_fingerprint(data, train_idx, test_idx, seed=seed, model=model,
                                     train=train)
    if train.jit:  # Keras compiles with XLA only where TensorFlow's op determinism is off
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    else:
        tf.config.experimental.enable_op_determinism()
    eye = np.eye(data.n_classes, dtype=np.float32)
    test_x, test_y = scale_pixels(data.images[test_idx]), eye[data.labels[test_idx]]

    # float32 (the paper's) or a mixed policy: float16/bfloat16 compute, float32 weights
    keras.config.set_dtype_policy(train.precision)
    with tf.device("/GPU:0" if device_info["device"] == "gpu" else "/CPU:0"):
        network = initial_model(data.n_classes, data.images.shape[1:], model, seed)
        optimizer = keras.optimizers.get({"class_name": train.optimizer,
                                          "config": {"learning_rate": train.learning_rate}})
        network.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"],
                        jit_compile=train.jit)  # XLA; mixed_float16 scales the loss itself
        history = resume(network, backup.path, fingerprint, train.epochs)
        initial_epoch = len(history)
        with tf.device("/CPU:0"):  # the input pipeline runs on the host, and so must its epoch
            epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        batches = shuffled_batches(data.images[train_idx], eye[data.labels[train_idx]],
                                   batch_size=train.batch_size, seed=seed, epoch=epoch_var)
        started: dict[str, float] = {}

        def on_epoch_begin(epoch, logs=None):
            epoch_randomness(network, epoch_var, seed, epoch)
            started["epoch"] = time.perf_counter()

        def on_epoch_end(epoch, logs=None):
            history.append(history_row(epoch + 1, logs, time.perf_counter() - started["epoch"]))
            save_snapshot(backup, network, epoch + 1, history, fingerprint, epochs=train.epochs)
            log.info("seed %d %s", seed, epoch_line(history, train.epochs))

        start, start_cpu = time.perf_counter(), time.process_time()
        if initial_epoch < train.epochs:
            network.fit(batches, epochs=train.epochs, initial_epoch=initial_epoch,
                        validation_data=(test_x, test_y),
                        shuffle=False,  # the batches are shuffled already, by (seed, epoch)
                        callbacks=[keras.callbacks.LambdaCallback(
                            on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end)],
                        verbose=0)  # epoch_line() instead: a log line, flushed as it is written
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu

    return Trained(network, history, {
        **device_info, "seed": seed, "epochs": len(history), "model": model.as_dict(),
        "train": train.as_dict(), **timings(history, initial_epoch, seconds, cpu_seconds),
        "params": network.count_params(), "train_images": len(train_idx),
        "test_images": len(test_idx), "classes": data.n_classes,
        "image_shape": list(data.images.shape[1:]), **software(), "numerics": numerics()})


def epoch_line(history: list[dict], epochs: int) -> str:
    """The last epoch of ``history`` in one line, with the time so far and the time left, so
    that ``tail -f`` on the job's log shows how far a training is."""
    row, left = history[-1], epochs - len(history)
    elapsed = duration(sum(r["seconds"] for r in history))
    estimate = f"about {duration(time_left(history, epochs))} left" if left else "done"
    return (f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.3f} acc {row['accuracy']:.3f} "
            f"test_acc {row['test_accuracy']:.3f}, {row['seconds']:.1f} s "
            f"(elapsed {elapsed}, {estimate})")


def write_outputs(trained: Trained, *, model_file: Path, history: Path, info: Path) -> None:
    with atomic_path(model_file, suffix=".keras") as tmp:
        trained.model.save(tmp)
    write_text(history, history_csv(trained.history))
    write_text(info, json.dumps(trained.info, indent=2) + "\n")


def train_model(*, dataset: Path, split_csv: Path, model_file: Path, history: Path, info: Path,
                model: Settings, train: Settings, seed: int, split_seed: int, backup: Path,
                threads: int = 0, gpu: int | None = None, per_gpu: int = 1) -> None:
    """Step: train seed ``seed`` on ``split_csv``; write the model, its history and its record.
    ``gpu``: the GPUs the job was given (None: CUDA_VISIBLE_DEVICES as it is); ``per_gpu``:
    trainings sharing each GPU (train.per_gpu, a resource of the rule: it changes no weight)."""
    if threads < 0:
        raise LfwcnnError(f"threads must be 0 (TensorFlow's choice) or more, got {threads}")
    if seed < 0:  # a value of the job (its wildcard), not of the config
        raise LfwcnnError(f"seed must be non-negative, got {seed}")
    # before TensorFlow starts: it reads CUDA_VISIBLE_DEVICES once
    claim = None if gpu is None else claim_job_devices(gpu, per_gpu=per_gpu)
    if model_file.suffix != ".keras":
        raise LfwcnnError(f"model_file {model_file}: Keras models are written as .keras files")
    inputs = {"dataset": dataset, "split_csv": split_csv}
    outputs = {"model_file": model_file, "history": history, "info": info}
    check_outputs(outputs, inputs)
    check_backup_dir(backup, {**inputs, **outputs})
    data = load_dataset(dataset)
    trained = train_seed(data, *load_split(split_csv, data), seed=seed, model=model, train=train,
                         backup_dir=backup, threads=threads)
    trained.info.update({"split_seed": split_seed, "dataset": str(dataset),
                         "split": str(split_csv), "per_gpu": per_gpu,
                         **(claim.record() if claim else {})})
    write_outputs(trained, model_file=model_file, history=history, info=info)
    # only once every output is in place; train_seed() made or adopted the folder and marked it
    release_backup_dir(claim_backup_dir(backup))
    log.info("seed %d: test accuracy %.4f after %d epochs on %s (%.2f s/epoch)", seed,
             trained.info["final"]["test_accuracy"], train.epochs, trained.info["device"],
             trained.info["seconds_per_epoch"] or float("nan"))
