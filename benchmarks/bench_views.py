"""Benchmark: issue 15's views stage against one seed's training, through the workflow.

In a scratch project on the LFW folder given, runs the workflow's jobs for seed 0 of the
default protocol: prepare and split (untimed), then the training, the landmarks of the
dataset (find_landmarks) and the views of the trained network (view_network: dissection,
inversion, filter patterns, Grad-CAM of it and its untrained twin), each job after the
other so that none shares the cores. Reads each job's wall and CPU seconds from Snakemake's
benchmark files and train.json, prints a table with the views' share of the training time,
and writes `benchmarks/results/views.json` with the C7 and C8 verdicts. Issue 15's targets:
the landmarks of the 2,370 faces under 2 minutes on 2 cores, the whole views stage under
15 % of one seed's training time on the CPU.

    python benchmarks/bench_views.py --lfw ../shared/lfw
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lfwcnn.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "views.json"
RUN = "deepfunneled"
VIEWS = f"results/views/{RUN}/seed0"


def benchmark(path: Path) -> dict:
    """The last row of a Snakemake benchmark file: wall and CPU seconds, peak RSS (MB)."""
    with path.open(newline="") as handle:
        row = list(csv.DictReader(handle, delimiter="\t"))[-1]
    return {"seconds": float(row["s"]), "cpu_seconds": float(row["cpu_time"]),
            "max_rss_mb": float(row["max_rss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "lfw")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    args = parser.parse_args()

    project = Path(tempfile.mkdtemp(prefix="bench-views-"))
    (project / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", project / "config" / "config.yaml")
    overlay = {"data": {"variant": RUN, "source": str(args.lfw.resolve())}, "seeds": [0]}
    (project / "config" / "bench.yaml").write_text(yaml.safe_dump(overlay))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
               "-d", str(project), "--cores", str(args.cores)]
    config = ["--configfile", str(project / "config" / "bench.yaml")]  # after the targets
    model = f"results/models/{RUN}/seed0/model.keras"
    for targets in ([f"data/split/{RUN}/seed0.csv"], [model],
                    [f"data/prepared/{RUN}/landmarks.npz"], [f"{VIEWS}/dissection/counts.json"]):
        subprocess.run([*command, *targets, *config], check=True, capture_output=True)
    train = json.loads((project / f"results/models/{RUN}/seed0/train.json").read_text())
    jobs = {"train_model (seed 0)": {"seconds": train["seconds"],
                                     "cpu_seconds": train["cpu_seconds"], "max_rss_mb": None},
            "find_landmarks": benchmark(project / f"results/benchmarks/views/landmarks_{RUN}.tsv"),
            "view_network": benchmark(project / f"results/benchmarks/views/{RUN}/seed0.tsv")}
    stage = jobs["find_landmarks"]["seconds"] + jobs["view_network"]["seconds"]
    share = {"view_network": jobs["view_network"]["seconds"] / train["seconds"],
             "find_landmarks + view_network": stage / train["seconds"]}
    log = (project / f"logs/views/{RUN}/seed0.log").read_text(errors="replace")
    dissection = json.loads((project / VIEWS / "dissection/counts.json").read_text())
    inversion = json.loads((project / VIEWS / "inversion/summary.json").read_text())
    print(f"{'job':<24}{'wall s':>9}{'CPU s':>9}{'of training':>13}")
    for name, job in jobs.items():
        print(f"{name:<24}{job['seconds']:>9.1f}{job['cpu_seconds']:>9.1f}"
              f"{job['seconds'] / train['seconds']:>13.1%}")
    print(f"{'views stage':<24}{stage:>9.1f}{'':>9}{share['find_landmarks + view_network']:>13.1%}"
          "  (target: under 15 %)")
    result = {"lfw": str(args.lfw), "cores": args.cores, "epochs": train["epochs"],
              "jobs": jobs, "share_of_training": share,
              "view_network_log": [line for line in log.splitlines() if "lfwcnn.views" in line],
              "c7": dissection["c7"], "c8": inversion["c8"],
              "detected_faces": dissection["detected_faces"],
              "test_faces": dissection["test_faces"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS, json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS}")
    if args.keep:
        print(f"kept {project}")
    else:
        shutil.rmtree(project)


if __name__ == "__main__":
    main()
