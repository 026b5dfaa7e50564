"""Across seeds: mean, spread and intervals of the test accuracy, and a verdict on the paper's.

A seed drives both the split and the initial weights, so the spread over seeds covers the
paper's whole random protocol. The paper's accuracy is placed against the t-interval of the
mean, which narrows as seeds are added, and (the paper reports one run) against the
prediction interval of a single further run."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn.atomic import write_text
from lfwcnn.claims import data_origin
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_json
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)


def mean_interval(values: Sequence[float], confidence: float,
                  one_run: bool = False) -> tuple[float, float] | None:
    """Student-t interval of the mean, or with ``one_run`` the prediction interval of one more
    run (widened by sqrt(1 + 1/n)); None with fewer than two values (no spread to use)."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return None
    spread = float(t.ppf((1 + confidence) / 2, n - 1)) * values.std(ddof=1)
    half = spread * math.sqrt(1 + 1 / n) if one_run else spread / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def verdict(value: float, interval: tuple[float, float] | None) -> str:
    """'inside', or 'above'/'below' when ``value`` lies beyond the interval; 'undefined' without."""
    if interval is None:
        return "undefined"
    return "above" if value > interval[1] else "below" if value < interval[0] else "inside"


def read_metrics(paths: Sequence[Path]) -> list[dict]:
    """Per-seed metrics files, checked: each readable, an accuracy in [0, 1], no seed twice."""
    records, seen = [], {}
    for path in paths:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
            accuracy = float(record["accuracy"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise LfwcnnError(f"{path}: not a per-seed metrics file ({err})") from None
        if not 0 <= accuracy <= 1:
            raise LfwcnnError(f"{path}: accuracy {accuracy} is not in [0, 1]")
        seed = record.get("seed")
        if seed is not None and seed in seen:
            raise LfwcnnError(f"seed {seed} appears twice: {seen[seed]} and {path}")
        seen[seed] = path
        records.append(record)
    if not records:
        raise LfwcnnError("no metrics files given")
    return records


def per_seed_table(records: Sequence[dict], paper_accuracy: float) -> pd.DataFrame:
    rows = []
    for record in records:
        interval = record.get("accuracy_interval") or {}
        low, high = interval.get("low"), interval.get("high")
        train = record.get("train") or {}
        rows.append({
            "seed": record.get("seed"), "split_seed": record.get("split_seed"),
            "test_images": record.get("test_images"), "correct": record.get("correct"),
            "accuracy": record["accuracy"], "ci_low": low, "ci_high": high,
            "paper_in_ci": None if low is None else low <= paper_accuracy <= high,
            "loss": record.get("loss"), "device": train.get("device"),
            "epochs": train.get("epochs"),
        })
    return pd.DataFrame(rows)


def summarize(accuracies: Sequence[float], paper_accuracy: float, confidence: float) -> dict:
    """The across-seed numbers and the verdict; every statistic a plain float or None.

    The intervals are clipped to [0, 1]: with few, spread seeds a t-interval can pass 100 %,
    which no accuracy can; the verdict on a paper value in [0, 1] is the same either way."""
    values = np.asarray(accuracies, dtype=float)
    n = len(values)
    mean = float(values.mean())
    interval, single = (None if bounds is None else (max(0.0, bounds[0]), min(1.0, bounds[1]))
                        for bounds in (mean_interval(values, confidence),
                                       mean_interval(values, confidence, one_run=True)))
    result = {
        "seeds": n, "mean": mean, "std": float(values.std(ddof=1)) if n > 1 else None,
        "min": float(values.min()), "max": float(values.max()), "confidence": confidence,
        "interval": None if interval is None else {
            "method": "student-t of the mean, clipped to [0, 1]",
            "low": interval[0], "high": interval[1]},
        "prediction_interval": None if single is None else {
            "method": "student-t for one further run, clipped to [0, 1]",
            "low": single[0], "high": single[1]},
        "paper_accuracy": paper_accuracy, "verdict": verdict(paper_accuracy, interval),
        "verdict_single_run": verdict(paper_accuracy, single),
        "difference_points": round(100 * (paper_accuracy - mean), 2),  # points, for reading
        "distance_to_interval_points": None if interval is None else round(
            100 * max(interval[0] - paper_accuracy, paper_accuracy - interval[1], 0.0), 2),
    }
    result["statement"] = statement(result)
    return result


def statement(summary: dict) -> str:
    """One sentence for the report: where the paper's number lies and by how much."""
    paper = f"The paper's {summary['paper_accuracy']:.2%}"
    gap = summary["difference_points"]
    relation = f"{abs(gap):.2f} points {'above' if gap >= 0 else 'below'} the mean"
    if summary["verdict"] == "undefined":
        return (f"{paper} is {relation} of the single seed ({summary['mean']:.2%}); with one "
                "seed there is no spread, so the interval over seeds is undefined.")
    interval = summary["interval"]
    span = f"{interval['low']:.2%} to {interval['high']:.2%}"
    return (f"{paper} lies {summary['verdict']} the {summary['confidence']:.0%} interval of the "
            f"mean over {summary['seeds']} seeds ({span}), {relation} ({summary['mean']:.2%}).")


def aggregate_seeds(
    *, metrics: list[Path], source: Path | None = None, summary: Path, by_seed: Path,
    evaluate: Settings,
) -> None:
    """Step: the across-seed ``summary`` (with the verdict on ``evaluate.paper_accuracy``) and
    the per-seed table ``by_seed`` of the seeds' ``metrics``; ``source``: the data's
    source.json, recorded as ``data``."""
    check_outputs({"summary": summary, "by_seed": by_seed},
                  {**listed("metrics", metrics), "source": source})
    records = read_metrics(metrics)
    table = per_seed_table(records, evaluate.paper_accuracy)
    result = summarize(table["accuracy"].to_numpy(), evaluate.paper_accuracy,
                       evaluate.confidence)
    result["by_seed"] = [{"seed": record.get("seed"), "accuracy": float(record["accuracy"]),
                          "interval": record.get("accuracy_interval")} for record in records]
    # the same numbers keyed by seed: `dvc metrics show/diff` reads mappings, not lists
    result["accuracy_by_seed"] = {f"seed{row['seed']}": row["accuracy"]
                                  for row in result["by_seed"]}
    if source is not None:
        record = read_json(source)
        if "variant" not in record:
            raise LfwcnnError(f"{source}: not a source record (no 'variant')")
        result["data"] = data_origin(record)
    write_text(by_seed, table.to_csv(index=False))
    write_text(summary, json.dumps(result, indent=2) + "\n")
    log.info("%s", result["statement"])
