"""Benchmark: lfwcnn's prepare step vs scikit-learn's fetch_lfw_people on the same images.

Each run is a fresh subprocess (scikit-learn without its joblib cache: a new data_home each
time), timed end to end, with its peak resident memory. Prints a table, writes JSON.

    python benchmarks/bench_prepare.py --lfw ../shared/lfw --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from lfwcnn.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]

# Both do the same work: people with 30+ images, the paper's 128x128 crop halved to 64x64.
# Each snippet prints: seconds, images, peak RSS of the process and of its largest child (KiB).
LFWCNN = """
import resource, sys, time
from lfwcnn.config import default_settings
from lfwcnn.prepare import prepare
data = default_settings({"data": {"min_images_per_person": 30, "image_size": 64,
                                  "crop": {"rows": [61, 189], "cols": [61, 189]}}}).data
start = time.perf_counter()
out = prepare(sys.argv[1], data, workers=int(sys.argv[2]))
seconds = time.perf_counter() - start
self, kids = (resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
print(seconds, len(out.data.images), self, kids)
"""

SKLEARN = """
import os, resource, sys, tempfile, time
from sklearn.datasets import fetch_lfw_people
home = tempfile.mkdtemp()
os.makedirs(os.path.join(home, "lfw_home"))
os.symlink(os.path.abspath(sys.argv[1]), os.path.join(home, "lfw_home", "lfw_funneled"))
for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
    open(os.path.join(home, "lfw_home", name), "w").close()
start = time.perf_counter()
out = fetch_lfw_people(data_home=home, min_faces_per_person=30, resize=0.5, color=True,
                       slice_=(slice(61, 189), slice(61, 189)), download_if_missing=False)
seconds = time.perf_counter() - start
self, kids = (resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
print(seconds, len(out.images), self, kids)
"""


def measure(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, check=True)
    seconds, images, rss_self, rss_kids = result.stdout.split()[-4:]
    return {"seconds": float(seconds), "images": int(images),
            "peak_rss_mib": max(int(rss_self), int(rss_kids)) / 1024}


def summarise(name: str, runs: list[dict]) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "method": name,
        "median_seconds": round(seconds, 3),
        "images_per_second": round(runs[0]["images"] / seconds, 1),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1),
        "runs_seconds": [round(r["seconds"], 3) for r in runs],
        "images": runs[0]["images"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=str(ROOT.parent / "shared" / "lfw"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prepare.json"))
    args = parser.parse_args()
    methods = {
        "lfwcnn.prepare (1 worker)": (LFWCNN, args.lfw, "1"),
        "lfwcnn.prepare (2 workers)": (LFWCNN, args.lfw, "2"),
        "sklearn fetch_lfw_people": (SKLEARN, args.lfw),
    }
    measure(LFWCNN, args.lfw, "1")  # warm the page cache so the first method is not penalised
    rows = [summarise(name, [measure(*call) for _ in range(args.repeats)])
            for name, call in methods.items()]
    print(f"{'method':30} {'seconds':>8} {'images/s':>9} {'peak MiB':>9}")
    for row in rows:
        print(f"{row['method']:30} {row['median_seconds']:8.2f} {row['images_per_second']:9.0f}"
              f" {row['peak_rss_mib']:9.0f}")
    report = {"lfw": args.lfw, "repeats": args.repeats, "machine": platform.machine(),
              "cpus": len(__import__("os").sched_getaffinity(0)), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
