"""Compare the runs of a sweep: one row per run, and their accuracy distributions in one plot.

The step :func:`summarize_sweep` reads each run's aggregate.json (numbers over seeds, the
verdict, which LFW it was measured on) and adds the ablation reading of :mod:`lfwcnn.ablation`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lfwcnn import plots
from lfwcnn.ablation import analyse
from lfwcnn.atomic import write_text
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_json
from lfwcnn.ownership import check_outputs, listed

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "variant", "source", "approximate", "caveat", "seeds", "mean", "std",
           "ci_low", "ci_high", "confidence", "paper_accuracy", "verdict", "pi_low", "pi_high",
           "verdict_single_run", "difference_points")


def summarize_runs(plan: Sequence[dict], aggregates: Sequence[dict]) -> dict:
    """One record per run: its settings, data provenance and across-seed numbers."""
    if len(plan) != len(aggregates):
        raise LfwcnnError(f"{len(plan)} runs but {len(aggregates)} aggregates")
    runs = []
    for entry, summary in zip(plan, aggregates, strict=True):
        data = summary.get("data") or {}
        interval = summary.get("interval") or {}
        single = summary.get("prediction_interval") or {}
        runs.append({
            "run": entry["run"], "settings": entry["settings"], "dataset": entry["dataset"],
            "variant": data.get("variant") or entry["variant"],
            "source": data.get("source") or entry["source"] or "published archive",
            "source_kind": data.get("kind"), "approximate": bool(data.get("approximate")),
            "caveat": data.get("caveat"), "seeds": summary["seeds"], "mean": summary["mean"],
            "std": summary.get("std"), "ci_low": interval.get("low"),
            "ci_high": interval.get("high"), "confidence": summary.get("confidence"),
            "paper_accuracy": summary.get("paper_accuracy"), "verdict": summary["verdict"],
            # the paper reports one run: where it lies in the range expected of a single run
            "pi_low": single.get("low"), "pi_high": single.get("high"),
            "verdict_single_run": summary.get("verdict_single_run", "undefined"),
            "difference_points": summary.get("difference_points"),
            "accuracies": [row["accuracy"] for row in summary.get("by_seed", [])],
            "seed_list": [row["seed"] for row in summary.get("by_seed", [])],
        })
    axes = list(dict.fromkeys(axis for entry in plan for axis in entry["settings"]))
    return {"axes": axes, "runs": runs}


def summary_table(summary: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": entry["run"], **{axis: entry["settings"].get(axis) for axis in summary["axes"]},
        **{key: entry[key] for key in COLUMNS},
        "seed_list": " ".join(str(seed) for seed in entry["seed_list"]),
    } for entry in summary["runs"]])


def summarize_sweep(*, aggregates: list[Path], plan: list[dict], table: Path, summary: Path,
                    figure: Path) -> None:
    """Step: compare the runs of ``plan`` (run, settings, dataset, variant, source; in the
    order of ``aggregates``, one aggregate.json per run) in ``table``, ``summary`` and
    ``figure``."""
    check_outputs({"table": table, "summary": summary, "figure": figure},
                  listed("aggregates", aggregates))
    compared = summarize_runs(plan, [read_json(path) for path in aggregates])
    compared["ablation"] = analyse(compared)
    write_text(table, summary_table(compared).to_csv(index=False))
    write_text(summary, json.dumps(compared, indent=2) + "\n")
    plots.plot_runs(compared, figure)
    log.info("%d runs compared: %s", len(compared["runs"]), table)
