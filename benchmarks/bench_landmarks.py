"""Benchmark: dlib landmarks (lfwcnn.landmarks) for the faces of the paper's people, 1 and 2
workers: wall and CPU seconds, detection rate, peak memory.

Each run is a fresh subprocess (the model file is loaded in each worker, as in a step), timed
end to end. The issue's target: the 2,370 images in under 2 minutes on 2 cores. Prints a
table, writes JSON.

    python benchmarks/bench_landmarks.py --lfw ../shared/lfw --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Prints: wall seconds, CPU seconds (this process and its workers), images, detected,
# peak RSS of the process and of its largest child (KiB).
LANDMARKS = """
import resource, sys, time
from pathlib import Path
from lfwcnn.landmarks import compute_landmarks
root = Path(sys.argv[1])
people = {p.name: sorted(f.name for f in p.glob("*.jpg")) for p in root.iterdir() if p.is_dir()}
files = [f"{p}/{f}" for p, names in sorted(people.items()) if len(names) >= 30 for f in names]
start, cpu = time.perf_counter(), time.process_time()
marks = compute_landmarks(files, root, crop_rows=(61, 189), crop_cols=(61, 189), size=64,
                          workers=int(sys.argv[2]))
seconds = time.perf_counter() - start
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_seconds = time.process_time() - cpu + kids.ru_utime + kids.ru_stime
self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, cpu_seconds, len(files), int(marks.detected.sum()), self_rss, kids.ru_maxrss)
"""


def measure(workers: int, lfw: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", LANDMARKS, lfw, str(workers)],
                            capture_output=True, text=True, check=True, env=env)
    seconds, cpu, images, detected, rss_self, rss_kids = result.stdout.split()[-6:]
    return {"seconds": float(seconds), "cpu_seconds": float(cpu), "images": int(images),
            "detected": int(detected), "peak_rss_mib": max(int(rss_self), int(rss_kids)) / 1024}


def summarise(workers: int, runs: list[dict]) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "method": f"lfwcnn.landmarks ({workers} worker{'s' if workers > 1 else ''})",
        "workers": workers,
        "median_seconds": round(seconds, 2),
        "median_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
        "ms_per_image": round(1000 * seconds / runs[0]["images"], 1),
        "images": runs[0]["images"],
        "detected": runs[0]["detected"],
        "detected_share": round(runs[0]["detected"] / runs[0]["images"], 4),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1),
        "runs_seconds": [round(r["seconds"], 2) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=str(ROOT.parent / "shared" / "lfw"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "landmarks.json"))
    args = parser.parse_args()
    rows = [summarise(w, [measure(w, args.lfw) for _ in range(args.repeats)]) for w in (1, 2)]
    print(f"{'method':30} {'wall s':>7} {'CPU s':>7} {'ms/img':>7} {'detected':>9} "
          f"{'peak MiB':>9}")
    for row in rows:
        print(f"{row['method']:30} {row['median_seconds']:7.1f} {row['median_cpu_seconds']:7.1f}"
              f" {row['ms_per_image']:7.1f} {row['detected_share']:9.2%}"
              f" {row['peak_rss_mib']:9.0f}")
    report = {"lfw": args.lfw, "repeats": args.repeats, "machine": platform.machine(),
              "cpus": len(os.sched_getaffinity(0)), "target_seconds": 120, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=Path(args.out).parent, delete=False) as tmp:
        json.dump(report, tmp, indent=2)
    Path(tmp.name).replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
