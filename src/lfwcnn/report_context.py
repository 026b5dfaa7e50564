"""The report's context: every stage's outputs read into the one dictionary the template shows.

:func:`build_context` reads what :class:`Inputs` names (optional stages may be missing) and
computes the six verdicts with :mod:`lfwcnn.claims` from those numbers, never by hand; the
template (``templates/report.html.j2``) only lays them out.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from lfwcnn import claims
from lfwcnn.environment import git_state, machine, package_versions
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_history, read_json
from lfwcnn.tables import number, read_confusion, read_rows

PER_CLASS_NUMBERS = {"precision": float, "recall": float, "f1": float, "support": int,
                     "predicted": int}


# ----------------------------------------------------------------------------- reading


def optional_json(path: str | os.PathLike | None) -> dict | None:
    """The JSON record of an optional stage; None when the stage is not in this run."""
    return None if path is None else read_json(path)


def read_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read ({err})") from None


def sha256_of(path: str | os.PathLike) -> str:
    """The checksum the report shows beside the dataset and manifest it was made from."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_file(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).is_file()


def data_uri(path: str | os.PathLike | None) -> str | None:
    """A PNG as a ``data:`` URI, so the report needs no file beside it."""
    if path is None or not Path(path).is_file():
        return None
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def split_counts(path: str | os.PathLike) -> dict:
    """Rows per subset of a split file, and which files are in the test subset."""
    rows = read_rows(path, "split", ("file", "subset"))
    counts = Counter(row["subset"] for row in rows)
    test_files = {row["file"] for row in rows if row["subset"] == "test"}
    return {"train": counts["train"], "test": counts["test"], "test_files": test_files}


def per_class_rows(path: Path) -> list[dict]:
    """The per-class table with its names as strings (a person may be named ``NA``)."""
    rows = read_rows(path, "per-class table", PER_CLASS_NUMBERS)
    return [{**row, **{column: number(path, row, column, kind)
                       for column, kind in PER_CLASS_NUMBERS.items()}} for row in rows]


def benchmark_rows(folder: str | os.PathLike | None) -> list[dict]:
    """Snakemake ``benchmark:`` files below ``folder``: seconds and peak memory per job."""
    if folder is None or not Path(folder).is_dir():
        return []
    rows = []
    for path in sorted(Path(folder).rglob("*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t")
        except (OSError, ValueError):
            continue
        if table.empty or "s" not in table.columns:
            continue
        rows.append({"stage": path.relative_to(folder).parts[0],
                     "job": str(path.relative_to(folder).with_suffix("")),
                     "seconds": float(table["s"].iloc[-1]),
                     "max_rss_mb": float(table["max_rss"].iloc[-1])
                     if "max_rss" in table.columns and pd.notna(table["max_rss"].iloc[-1])
                     else None})
    return rows


# ----------------------------------------------------------------------------- context


@dataclass
class Inputs:
    """Every file the report reads; optional stages are ``None``."""

    summary: str
    title: str  # report.title
    source: str | None = None
    manifest: str | None = None
    dataset: str | None = None
    splits: Sequence[str] = ()
    histories: Sequence[str] = ()
    train_infos: Sequence[str] = ()
    metrics: Sequence[str] = ()
    aggregate: str | None = None
    accuracy_by_seed: str | None = None
    # the figures of the run (rule draw_training)
    curves_figure: str | None = None
    accuracy_figure: str | None = None
    confusion_figure: str | None = None
    confusion_table: str | None = None
    per_class: str | None = None
    # the activations of one test image and their figures (rules export_activations and
    # draw_activations): all of them or none
    activation_record: str | None = None
    activation_summary: str | None = None
    activation_manifest: str | None = None
    activation_input: str | None = None
    activation_sparsity: str | None = None
    activation_grids: Sequence[str] = ()
    backprop_json: str | None = None
    backprop_html: str | None = None
    benchmarks: str | None = None
    sweep_summary: str | None = None
    sweep_figure: str | None = None
    config: dict = field(default_factory=dict)
    repo: str | None = None


def seed_of(path: str, record: dict | None = None) -> int | str:
    if record and record.get("seed") is not None:
        return record["seed"]
    for part in reversed(Path(path).with_suffix("").parts):
        if part.startswith("seed") and part[4:].isdigit():
            return int(part[4:])
    return Path(path).stem


def data_context(inputs: Inputs, summary: dict) -> dict:
    test_fraction = inputs.config.get("split", {}).get("test_fraction", 0.25)
    splits = []
    for path in inputs.splits:
        counts = split_counts(path)
        splits.append({"file": str(path), "seed": seed_of(path), "train": counts["train"],
                       "test": counts["test"], "test_files": counts["test_files"]})
    per_person = summary.get("images_per_person") or {}
    people = []
    test_of = Counter()
    if splits and inputs.manifest:
        manifest = read_rows(inputs.manifest, "manifest", ("file", "person"))
        person_of = {row["file"]: row["person"] for row in manifest}
        test_of = Counter(person_of.get(f) for f in splits[0]["test_files"])
    largest = max(per_person.values(), default=1)
    for name, count in sorted(per_person.items(), key=lambda item: (-item[1], item[0])):
        people.append({"name": name, "images": count, "test": test_of.get(name, 0),
                       "share": count / largest})
    checksums = {}
    for label, path in (("dataset.npz", inputs.dataset), ("manifest.csv", inputs.manifest)):
        if path and Path(path).is_file():
            checksums[label] = sha256_of(path)
    for split in splits:
        split.pop("test_files")
    return {"summary": summary, "splits": splits, "people": people, "checksums": checksums,
            "explanation": claims.explain_1777(summary["images"], test_fraction),
            "test_fraction": test_fraction}


def training_context(inputs: Inputs) -> tuple[dict, dict[int, pd.DataFrame]]:
    infos = [read_json(path) for path in inputs.train_infos]
    histories: dict = {}
    rows = []
    for k, path in enumerate(inputs.histories):
        info = infos[k] if k < len(infos) else {}
        seed = seed_of(path, info)
        history = read_history(path)
        histories[seed] = history
        last = history.iloc[-1]
        rows.append({"seed": seed, "epochs": int(last["epoch"]),
                     "accuracy": float(last["accuracy"]), "loss": float(last["loss"]),
                     "test_accuracy": float(last["test_accuracy"]),
                     "test_loss": float(last["test_loss"]),
                     "seconds": (info or {}).get("seconds"),
                     "seconds_per_epoch": (info or {}).get("seconds_per_epoch"),
                     "device": (info or {}).get("device"),
                     "gpu_name": (info or {}).get("gpu_name")})
    return {"rows": rows, "infos": infos}, histories


def evaluation_context(inputs: Inputs) -> dict:
    aggregate = optional_json(inputs.aggregate)
    by_seed = (read_csv(inputs.accuracy_by_seed).to_dict("records")
               if inputs.accuracy_by_seed else [])
    records = {seed_of(path, record): record
               for path, record in zip(inputs.metrics, map(read_json, inputs.metrics),
                                       strict=True)}
    for row in by_seed:  # macro F1 from each seed's metrics.json beside its accuracy
        macro = (records.get(row["seed"]) or {}).get("macro_avg") or {}
        row["macro_f1"] = macro.get("f1")
    baseline = next(iter(records.values()), {})
    per_class = []
    if is_file(inputs.per_class):
        per_class = per_class_rows(Path(inputs.per_class))
    pooled = None
    if is_file(inputs.confusion_table):
        counts = read_confusion(inputs.confusion_table).to_numpy()
        pooled = {"correct": int(np.trace(counts)), "total": int(counts.sum())}
    return {"aggregate": aggregate, "by_seed": by_seed, "per_class": per_class,
            "pooled": pooled, "chance": baseline.get("chance_accuracy"),
            "majority": baseline.get("majority_accuracy"),
            "figures": {"curves": data_uri(inputs.curves_figure),
                        "accuracy": data_uri(inputs.accuracy_figure),
                        "confusion": data_uri(inputs.confusion_figure)}}


def activations_context(inputs: Inputs) -> dict | None:
    if not inputs.activation_record:
        return None
    record = read_json(inputs.activation_record)
    sparsity = read_json(inputs.activation_summary)
    grids = read_json(inputs.activation_manifest)
    # the manifest names each grid by its file name; the grids are the files given
    given = {Path(path).name: path for path in inputs.activation_grids}
    for grid in grids["layers"]:
        grid["uri"] = data_uri(given.get(grid["file"]))
    return {"image": record, "sparsity": sparsity, "grids": grids,
            "input_uri": data_uri(inputs.activation_input),
            "sparsity_uri": data_uri(inputs.activation_sparsity)}


def environment_context(inputs: Inputs, training: dict, activations: dict | None,
                        check: dict | None) -> dict:
    devices = Counter()
    for info in training["infos"]:
        if info:
            name = info.get("device", "?")
            if info.get("gpu_name"):
                name += f" ({info['gpu_name']})"
            devices[name] += 1
    times = [{"stage": "train", "job": f"seed {row['seed']}", "seconds": row["seconds"],
              "max_rss_mb": None, "source": "train.json"}
             for row in training["rows"] if row["seconds"] is not None]
    benchmarks = [{**row, "source": "snakemake benchmark"}
                  for row in benchmark_rows(inputs.benchmarks)]
    seconds = (activations or {}).get("sparsity", {}).get("seconds")
    if seconds is not None and not any(row["stage"] == "activations" for row in benchmarks):
        times.append({"stage": "activations", "job": "export", "max_rss_mb": None,
                      "seconds": seconds, "source": "sparsity.json"})
    times += benchmarks
    trained_with = sorted({(i.get("tensorflow"), i.get("keras")) for i in training["infos"]
                           if i and i.get("tensorflow")})
    return {
        "packages": package_versions(),
        "trained_with": [f"tensorflow {tf}, keras {k}" for tf, k in trained_with],
        **machine(),
        "devices": dict(devices),
        "git": git_state(inputs.repo),
        "config_yaml": yaml.safe_dump(inputs.config, sort_keys=False) if inputs.config else "",
        "times": times,
        "backprop_versions": (check or {}).get("versions"),
    }


def sweep_context(inputs: Inputs) -> dict | None:
    """The sweep comparison (``lfwcnn.sweep_summary``'s JSON and plot); None without a sweep."""
    summary = optional_json(inputs.sweep_summary)
    if not summary or not summary.get("runs"):
        return None
    return {"axes": summary["axes"], "runs": summary["runs"], "first": summary["runs"][0],
            "ablation": summary.get("ablation"), "figure": data_uri(inputs.sweep_figure)}


def build_context(inputs: Inputs) -> dict:
    """Everything the template shows, with the six verdicts computed from the outputs."""
    summary = read_json(inputs.summary)
    source = optional_json(inputs.source)
    data = data_context(inputs, summary)
    training, histories = training_context(inputs)
    evaluation = evaluation_context(inputs)
    activations = activations_context(inputs)
    check = read_json(inputs.backprop_json) if inputs.backprop_json and Path(
        inputs.backprop_json).is_file() else None
    fig4 = None
    if check is not None and inputs.backprop_html and Path(inputs.backprop_html).is_file():
        fig4 = Markup(Path(inputs.backprop_html).read_text(encoding="utf-8"))
    first = data["splits"][0] if data["splits"] else None
    if first:
        train_n, test_n = first["train"], first["test"]
    else:
        train_n, test_n = claims.split_sizes(summary["images"], data["test_fraction"])
    variant = ((source or summary.get("source") or {}).get("variant")
               or inputs.config.get("data", {}).get("variant"))
    sweep = sweep_context(inputs)
    verdicts = [
        claims.verdict_c1(summary, train_n, test_n, data["test_fraction"]),
        claims.verdict_c2(evaluation["aggregate"], [row["epochs"] for row in training["rows"]],
                          variant, sweep["runs"] if sweep else ()),
        claims.verdict_c3(check),
        claims.verdict_c4(activations["sparsity"] if activations else None),
        claims.verdict_c5(histories),
        claims.verdict_c6(activations["grids"] if activations else None,
                          inputs.activation_grids),
    ]
    return {
        "title": inputs.title,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "verdicts": [asdict(v) | {"status_text": v.status_text} for v in verdicts],
        "headline": claims.headline(verdicts),
        "departures": claims.protocol_departures(inputs.config),
        "provenance": claims.provenance(source, summary),
        "variant": variant,
        "data": data,
        "training": training,
        "evaluation": evaluation,
        "activations": activations,
        "backprop": {"check": check, "fig4": fig4},
        "environment": environment_context(inputs, training, activations, check),
        "sweep": sweep,
        "paper": claims.PAPER,
    }
