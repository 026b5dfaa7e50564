"""Read a sweep as an ablation: what each setting changes, and which settings fit the paper.

From the sweep summary (lfwcnn.sweep_summary), all computed: a grid of the runs when the sweep
has two axes; the effect of each axis (every value against the axis' first, the other axes
equal, seeds paired: seed k of both runs shares its split unless ``split.seed`` pins one);
and plain sentences on which settings the paper's accuracy is consistent with, and the caveats.
"""

from __future__ import annotations

from collections.abc import Sequence

from lfwcnn.aggregate import mean_interval
from lfwcnn.claims import labelled


def _values(runs: Sequence[dict], axis: str) -> list[str]:
    """An axis' values in the order its runs come (the config's order)."""
    return list(dict.fromkeys(r["settings"][axis] for r in runs))


def _others(run: dict, axis: str) -> dict:
    """A run's settings on every axis but ``axis``: what a paired comparison holds equal."""
    return {k: v for k, v in run["settings"].items() if k != axis}


def grid(summary: dict) -> dict | None:
    """Runs laid out as rows (first axis) x columns (second axis); None unless two axes."""
    if len(summary["axes"]) != 2:
        return None
    rows_axis, cols_axis = summary["axes"]
    cols = _values(summary["runs"], cols_axis)
    cells = {(r["settings"][rows_axis], r["settings"][cols_axis]): r for r in summary["runs"]}
    layout = []
    for row in _values(summary["runs"], rows_axis):
        row_cells = [cells.get((row, col)) for col in cols]
        caveat = next((c["caveat"] for c in row_cells if c and c["caveat"]), None)
        layout.append({"value": row, "caveat": caveat, "cells": row_cells})
    return {"row_axis": rows_axis, "col_axis": cols_axis, "cols": cols, "rows": layout}


def axis_effects(summary: dict) -> list[dict]:
    """Each axis value against the axis' first value, other axes equal, seeds paired.

    ``direction`` is 'higher' or 'lower' when the interval of the mean paired difference
    excludes zero, else 'unclear' (fewer than two pairs, or an interval spanning zero);
    ``reading`` says it in words.
    """
    runs = summary["runs"]
    confidence = runs[0]["confidence"]
    effects = []
    for axis in summary["axes"]:
        values = _values(runs, axis)
        for value in values[1:]:
            pairs, matched = [], 0
            for run in runs:
                if run["settings"][axis] != value:
                    continue
                reference = next((r for r in runs if r["settings"][axis] == values[0]
                                  and _others(r, axis) == _others(run, axis)), None)
                if reference is not None:
                    # accuracy minus the reference's, seed by seed, over the seeds both trained
                    base = dict(zip(reference["seed_list"], reference["accuracies"], strict=True))
                    matched += 1
                    pairs += [accuracy - base[seed] for seed, accuracy
                              in zip(run["seed_list"], run["accuracies"], strict=True)
                              if seed in base]
            interval = mean_interval(pairs, confidence)
            low, high = interval or (0, 0)
            direction = "higher" if low > 0 else "lower" if high < 0 else "unclear"
            effects.append({
                "axis": axis, "value": value, "reference": values[0],
                "runs_matched": matched, "pairs": len(pairs),
                "mean_points": 100 * (sum(pairs) / len(pairs)) if pairs else None,
                "low_points": None if interval is None else 100 * low,
                "high_points": None if interval is None else 100 * high,
                "confidence": confidence, "direction": direction,
                "reading": "no clear difference" if direction == "unclear" else direction,
            })
    return effects


def _names(runs: Sequence[dict]) -> str:
    return ", ".join(labelled(r["run"], r["caveat"]) for r in runs)


def deciding_axes(summary: dict) -> list[str]:
    """Axes whose value alone decides consistency: every run at a value agrees, and the
    values disagree (e.g. every centre crop consistent with the paper, no whole image)."""
    lines = []
    for axis in summary["axes"]:
        values = _values(summary["runs"], axis)
        fits = {value: {r["verdict"] == "inside" for r in summary["runs"]
                        if r["settings"][axis] == value} for value in values}
        if len(values) < 2 or any(len(f) != 1 for f in fits.values()):
            continue
        consistent = [value for value in values if fits[value] == {True}]
        if consistent and len(consistent) < len(values):
            others = [value for value in values if value not in consistent]
            lines.append(f"{axis} decides it: with {', '.join(consistent)} every setting is "
                         f"consistent with the paper, with {', '.join(others)} none is.")
    return lines


def conclusion(summary: dict, effects: Sequence[dict]) -> list[str]:
    """Short sentences that follow from the numbers alone, for the report and the JSON."""
    runs = summary["runs"]
    paper = runs[0]["paper_accuracy"]
    level = f"{runs[0]['confidence']:.0%}"
    seeds = sorted({r["seeds"] for r in runs})
    by = {v: [r for r in runs if r["verdict"] == v] for v in ("inside", "above", "below",
                                                                 "undefined")}
    lines = [f"{len(runs)} settings, {'/'.join(map(str, seeds))} seeds each; the paper's "
             f"{paper:.2%} is compared with each setting's {level} interval of the mean."]
    for verdict, text in (("inside", f"Consistent with the paper ({len(by['inside'])} of "
                                     f"{len(runs)})"),
                          ("below", "Not consistent, ours higher than the paper"),
                          ("above", "Not consistent, ours lower than the paper"),
                          ("undefined", "Undecided (one seed, no interval)")):
        if by[verdict]:
            lines.append(f"{text}: {_names(by[verdict])}.")
    if not by["inside"] and not by["undefined"]:
        lines.append("No setting reproduces the paper's accuracy within its interval.")
    single = [r for r in runs if r["verdict_single_run"] in ("inside", "above", "below")]
    if single:
        fits = [r for r in single if r["verdict_single_run"] == "inside"]
        lines.append(
            f"The paper reports a single run: its value lies in the range expected of one run "
            f"(the {level} prediction interval) for {len(fits)} of {len(single)} settings"
            f"{': ' + _names(fits) if fits else ''}.")
    lines += deciding_axes(summary)
    closest = min(runs, key=lambda r: abs(r["mean"] - paper))
    lines.append(f"Closest mean: {_names([closest])}, {closest['mean']:.2%} "
                 f"({100 * (closest['mean'] - paper):+.2f} points from the paper).")
    if len(by["inside"]) > 1:
        lines.append(f"With {'/'.join(map(str, seeds))} seeds the intervals are too wide to "
                     f"single out one of the {len(by['inside'])} consistent settings as the "
                     "paper's.")
    for effect in effects:
        if effect["mean_points"] is None:
            continue
        span = ("" if effect["low_points"] is None else
                f", interval {effect['low_points']:+.2f} to {effect['high_points']:+.2f}")
        lines.append(
            f"{effect['axis']} {effect['value']} vs {effect['reference']}: "
            f"{effect['mean_points']:+.2f} points on average over {effect['pairs']} paired "
            f"seeds{span}: {effect['reading']}.")
    for caveat, text in (
        ("approximation", "use images that only approximate their LFW variant (see each "
         "source's note); their numbers indicate, and do not measure, what the real variant "
         "would give."),
        ("unverified archive", "use an archive that is not the published one of its variant "
         "(its md5 differs): what it holds is unverified."),
    ):
        count = sum(r["caveat"] == caveat for r in runs)
        if count:
            lines.append(f"{count} of {len(runs)} settings {text}")
    return lines


def analyse(summary: dict) -> dict:
    """Everything the report's ablation part needs, as plain JSON."""
    effects = axis_effects(summary)
    return {"grid": grid(summary), "effects": effects,
            "conclusion": conclusion(summary, effects)}
