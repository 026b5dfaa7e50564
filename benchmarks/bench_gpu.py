"""Benchmark: the default training protocol on a GPU, one training per GPU against K sharing it.

Runs the workflow's training and evaluation (every seed, `results/eval/<run>/aggregate.json`)
in a scratch project per setting of `train.per_gpu`, on the LFW folder given, with
`--resources gpu=K x GPUs`; records the GPU (name, driver, memory), wall seconds of the run,
seconds per epoch and training images per second of each seed, the peak GPU memory in use
(nvidia-smi, sampled every half second) and each seed's test accuracy. Prints a table and
writes `benchmarks/results/gpu.json`. Issue 16's target: the 5-seed run's training under 60 s
of wall time on an H100-class GPU with K = 5.

    python benchmarks/bench_gpu.py --lfw ../shared/lfw --per-gpu 1 5

`--device cpu --epochs 1` runs the same script without a GPU (a check of the script itself;
GPU fields are then null).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from lfwcnn.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
QUERY = ("nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
         "--format=csv,noheader,nounits")


def gpus() -> list[list[str]]:
    """One row per GPU: name, driver, total MiB, used MiB ([] without nvidia-smi)."""
    try:
        done = subprocess.run(QUERY, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [[field.strip() for field in line.split(",")] for line in done.stdout.splitlines()]


class PeakMemory(threading.Thread):
    """The most GPU memory in use (MiB, all GPUs summed) while the run lasts."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = None, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            used = [int(row[3]) for row in gpus()]
            if used:
                self.peak = max(self.peak or 0, sum(used))


def run_setting(lfw: Path, per_gpu: int, args: argparse.Namespace, n_gpus: int) -> dict:
    project = Path(tempfile.mkdtemp(prefix=f"bench-gpu-k{per_gpu}-"))
    (project / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", project / "config" / "config.yaml")
    overlay = {"data": {"variant": "deepfunneled", "source": str(lfw.resolve())},
               "seeds": list(range(args.seeds)),
               "train": {"epochs": args.epochs, "device": args.device, "per_gpu": per_gpu}}
    (project / "config" / "bench.yaml").write_text(yaml.safe_dump(overlay))
    targets = [f"results/eval/deepfunneled/seed{seed}/metrics.json" for seed in range(args.seeds)]
    # data first, untimed: the comparison is about training
    data = [f"data/split/deepfunneled/seed{seed}.csv" for seed in range(args.seeds)]
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
               "-d", str(project), "--cores", "all"]
    # after the targets: --resources and --configfile take several values
    config = ["--resources", f"gpu={per_gpu * n_gpus}",
              "--configfile", str(project / "config" / "bench.yaml")]
    subprocess.run([*command, *data, *config], check=True, capture_output=True)
    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    subprocess.run([*command, *targets, *config], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    memory.done.set()
    memory.join()
    seeds = []
    for seed in range(args.seeds):
        info = json.loads((project / f"results/models/deepfunneled/seed{seed}/train.json")
                          .read_text())
        metrics = json.loads((project / f"results/eval/deepfunneled/seed{seed}/metrics.json")
                             .read_text())
        seeds.append({"seed": seed, "device": info["device"], "gpu_name": info["gpu_name"],
                      "seconds": info["seconds"], "seconds_per_epoch": info["seconds_per_epoch"],
                      "images_per_second": round(info["train_images"] * info["epochs"]
                                                 / info["seconds"], 1),
                      "test_accuracy": metrics["accuracy"]})
    if not args.keep:
        shutil.rmtree(project)
    return {"per_gpu": per_gpu, "wall_seconds": round(seconds, 1), "peak_gpu_memory_mib":
            memory.peak, "seeds": seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "lfw")
    parser.add_argument("--per-gpu", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    found = gpus()
    settings = [run_setting(args.lfw, k, args, max(len(found), 1)) for k in args.per_gpu]
    result = {"gpus": [{"name": g[0], "driver": g[1], "memory_mib": int(g[2])} for g in found],
              "epochs": args.epochs, "device": args.device, "settings": settings}
    print(f"{'per_gpu':>7} {'wall s':>8} {'s/epoch':>8} {'img/s':>8} {'peak MiB':>9} accuracy")
    for s in settings:
        per_epoch = max(seed["seconds_per_epoch"] for seed in s["seeds"])
        rate = sum(seed["images_per_second"] for seed in s["seeds"])
        accuracy = ", ".join(f"{seed['test_accuracy']:.4f}" for seed in s["seeds"])
        print(f"{s['per_gpu']:>7} {s['wall_seconds']:>8} {per_epoch:>8.2f} {rate:>8.0f} "
              f"{s['peak_gpu_memory_mib'] or '-':>9} {accuracy}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
