"""What the pipeline's training step costs over a plain Keras script doing the same training.

Both run in their own process on the same arrays, with the same model, epochs, batch size and
per-epoch test evaluation. The plain script is what a reader of the paper would write:
``model.fit(x, y, shuffle=True, validation_data=...)`` with a seed. The pipeline adds op
determinism, batches drawn per (seed, epoch), a backup after every epoch and atomic outputs.
Measured: training seconds per epoch (``fit`` alone, first epoch's tracing included), its CPU
seconds (less sensitive to other load on a shared machine), images per second, the whole
process's wall time and its peak resident memory (``os.wait4``).

    python benchmarks/bench_train.py --dataset data/prepared/deepfunneled/dataset.npz \
        --split data/split/deepfunneled/seed0.csv --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lfwcnn.dataset import Dataset, load_dataset, load_split, save_dataset, save_split

ROOT = Path(__file__).resolve().parent
PLAIN_SCRIPT = '''
import json, sys, time
import numpy as np
import keras
from keras import layers

arrays, epochs, seed, out = np.load(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
keras.utils.set_random_seed(seed)
n_classes = int(arrays["n_classes"])
x_train = arrays["x_train"].astype("float32") / 255
x_test = arrays["x_test"].astype("float32") / 255
y_train = keras.utils.to_categorical(arrays["y_train"], n_classes)
y_test = keras.utils.to_categorical(arrays["y_test"], n_classes)
model = keras.Sequential([
    keras.Input(x_train.shape[1:]),
    layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
    layers.Conv2D(128, 3, activation="relu"), layers.MaxPooling2D(2),
    layers.Flatten(),
    layers.Dense(128, activation="relu"), layers.Dense(256, activation="relu"),
    layers.Dropout(0.5),
    layers.Dense(n_classes, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy",
              metrics=["accuracy"])
start, start_cpu = time.perf_counter(), time.process_time()
history = model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=2,
                    validation_data=(x_test, y_test))
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
model.save(out + ".keras")
with open(out, "w") as handle:
    json.dump({"seconds": seconds, "cpu_seconds": cpu_seconds, "params": model.count_params(),
               "test_accuracy": history.history["val_accuracy"][-1]}, handle)
'''


def synthetic_lfw(n: int = 2370, n_classes: int = 34, side: int = 64, seed: int = 0) -> Dataset:
    """LFW-shaped random faces, for machines without the real images (speed only)."""
    rng = np.random.default_rng(seed)
    return Dataset(
        images=rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8),
        labels=rng.integers(0, n_classes, size=n),
        class_names=np.array([f"Person_{i}" for i in range(n_classes)]),
        files=np.array([f"Person_{i % n_classes}/Person_{i:04d}.jpg" for i in range(n)]),
    )


def measure(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, CPU time and peak RSS (of this child alone, via wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f"{command[:3]} failed:\n{stderr.decode(errors='replace')[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def run_pipeline(folder: Path, epochs: int, seed: int, threads: int, env) -> dict:
    """The pipeline's step as its rule runs it: config.yaml's model and training, ``epochs``."""
    out = folder / "pipeline"
    config = folder / "config.yaml"
    config.write_text(json.dumps({"train": {"epochs": epochs}}), encoding="utf-8")
    command = [sys.executable, "-m", "lfwcnn", "train_model",
               f"dataset={folder / 'dataset.npz'}", f"split_csv={folder / 'split.csv'}",
               f"seed={seed}", f"split_seed={seed}", f"threads={threads}",
               f"backup={out / 'backup'}", f"model_file={out / 'model.keras'}",
               f"history={out / 'history.csv'}", f"info={out / 'train.json'}",
               "--configfile", str(config)]
    result = measure(command, env)
    info = json.loads((out / "train.json").read_text())
    return {**result, "fit_s": info["seconds"], "fit_cpu_s": info["cpu_seconds"],
            "params": info["params"],
            "test_accuracy": info["final"]["test_accuracy"], "device": info["device"]}


def run_plain(folder: Path, epochs: int, seed: int, env) -> dict:
    out = folder / "plain.json"
    command = [sys.executable, str(folder / "plain_keras.py"), str(folder / "arrays.npz"),
               str(epochs), str(seed), str(out)]
    result = measure(command, env)
    record = json.loads(out.read_text())
    return {**result, "fit_s": record["seconds"], "fit_cpu_s": record["cpu_seconds"],
            "params": record["params"],
            "test_accuracy": record["test_accuracy"], "device": "tensorflow default"}


def summarize(runs: list[dict], epochs: int, train_images: int) -> dict:
    """Medians, and the best run: on a shared machine the fastest run is the least disturbed."""
    fit = statistics.median(run["fit_s"] for run in runs)
    best = min(run["fit_s"] for run in runs)
    return {
        "runs": len(runs),
        "s_per_epoch": fit / epochs,
        "best_s_per_epoch": best / epochs,
        "cpu_s_per_epoch": statistics.median(run["fit_cpu_s"] for run in runs) / epochs,
        "images_per_s": train_images * epochs / fit,
        "wall_s": statistics.median(run["wall_s"] for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "params": runs[0]["params"],
        "test_accuracy": [run["test_accuracy"] for run in runs],
        "device": runs[0]["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="prepared dataset.npz (default: synthetic, LFW-shaped)")
    parser.add_argument("--split", help="split CSV (default: a 0.75/0.25 split drawn with seed 0)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--threads", type=int, default=2, help="as the train rule declares")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "train.json"))
    args = parser.parse_args()

    data = load_dataset(args.dataset) if args.dataset else synthetic_lfw()
    if args.split:
        train_idx, test_idx = load_split(args.split, data)
    else:
        from lfwcnn.split import split_indices

        train_idx, test_idx = split_indices(data.labels, test_fraction=0.25, seed=0)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    runs: dict[str, list[dict]] = {"pipeline": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        folder = Path(tmp)
        save_dataset(folder / "dataset.npz", data)
        save_split(folder / "split.csv", data.files, train_idx, test_idx)
        np.savez(folder / "arrays.npz", x_train=data.images[train_idx],
                 y_train=data.labels[train_idx], x_test=data.images[test_idx],
                 y_test=data.labels[test_idx], n_classes=data.n_classes)
        (folder / "plain_keras.py").write_text(PLAIN_SCRIPT, encoding="utf-8")
        for repeat in range(args.repeats):  # alternate who goes first: load drifts over time
            order = ["pipeline", "plain"] if repeat % 2 == 0 else ["plain", "pipeline"]
            for name in order:
                runs[name].append(
                    run_pipeline(folder, args.epochs, args.seed, args.threads, env)
                    if name == "pipeline" else run_plain(folder, args.epochs, args.seed, env))

    results = {name: summarize(r, args.epochs, len(train_idx)) for name, r in runs.items()}
    pipeline, plain = results["pipeline"], results["plain"]
    report = {
        "dataset": args.dataset or "synthetic (2370 random 64x64 faces, 34 classes)",
        "epochs": args.epochs,
        "train_images": int(len(train_idx)),
        "test_images": int(len(test_idx)),
        "cpu_count": os.cpu_count(),
        "results": results,
        "runs": runs,
        "overhead": {
            "s_per_epoch_pct": 100 * (pipeline["s_per_epoch"] / plain["s_per_epoch"] - 1),
            "best_s_per_epoch_pct": 100 * (
                pipeline["best_s_per_epoch"] / plain["best_s_per_epoch"] - 1),
            "cpu_s_per_epoch_pct": 100 * (
                pipeline["cpu_s_per_epoch"] / plain["cpu_s_per_epoch"] - 1),
            "wall_pct": 100 * (pipeline["wall_s"] / plain["wall_s"] - 1),
            "peak_rss_pct": 100 * (pipeline["peak_rss_mb"] / plain["peak_rss_mb"] - 1),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"{report['train_images']} train images, {args.epochs} epochs, "
          f"median of {args.repeats} runs each")
    print("| step | s/epoch (median) | s/epoch (best) | CPU s/epoch | images/s | wall s "
          "| peak RSS MB | params |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['s_per_epoch']:.2f} | {row['best_s_per_epoch']:.2f} | "
              f"{row['cpu_s_per_epoch']:.2f} | "
              f"{row['images_per_s']:.0f} | {row['wall_s']:.1f} | {row['peak_rss_mb']:.0f} | "
              f"{row['params']} |")
    overhead = report["overhead"]
    print(f"pipeline over plain: {overhead['s_per_epoch_pct']:+.1f} % per epoch (median), "
          f"{overhead['best_s_per_epoch_pct']:+.1f} % (best), "
          f"{overhead['cpu_s_per_epoch_pct']:+.1f} % CPU time, "
          f"{overhead['wall_pct']:+.1f} % wall, {overhead['peak_rss_pct']:+.1f} % peak memory")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
