"""The HTML report (step :func:`write_report`): every claim of the paper beside what this run
measured, with its verdict from :mod:`lfwcnn.claims`; one file (``templates/report.html.j2``),
every figure inlined as a ``data:`` URI and nothing fetched from elsewhere, so it opens offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from lfwcnn import claims, templating
from lfwcnn.atomic import write_text
from lfwcnn.environment import git_state, machine, package_versions
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import read_history, read_json
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.settings import Settings
from lfwcnn.tables import number, read_confusion, read_rows

log = logging.getLogger(__name__)

PER_CLASS_NUMBERS = {"precision": float, "recall": float, "f1": float, "support": int,
                     "predicted": int}


def read_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read ({err})") from None


def is_file(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).is_file()


def data_uri(path: str | os.PathLike | None) -> str | None:
    """A PNG as a ``data:`` URI, so the report needs no file beside it."""
    return ("data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
            if is_file(path) else None)


def benchmark_rows(paths: Sequence[Path]) -> list[dict]:
    """Snakemake ``benchmark:`` files: seconds and peak memory per job, each named by its path
    below the folder they all lie in (``activations/<run>/seed0_export``)."""
    if not paths:
        return []
    root = Path(os.path.commonpath([Path(path).resolve().parent for path in paths]))
    rows = []
    for job, path in sorted((Path(path).resolve().relative_to(root).with_suffix(""), path)
                            for path in paths):
        table = read_csv(path, sep="\t")
        if table.empty or "s" not in table.columns:
            continue
        last = table.iloc[-1]
        rows.append({"stage": job.parts[0], "job": str(job), "seconds": float(last["s"]),
                     "max_rss_mb": float(last["max_rss"]) if pd.notna(last.get("max_rss"))
                     else None, "source": "snakemake benchmark"})
    return rows


def seed_of(path: str | os.PathLike, record: dict | None = None) -> int | str:
    if record and record.get("seed") is not None:
        return record["seed"]
    seeds = [part[4:] for part in Path(path).with_suffix("").parts
             if part.startswith("seed") and part[4:].isdigit()]
    return int(seeds[-1]) if seeds else Path(path).stem


def data_context(f: SimpleNamespace, summary: dict, test_fraction: float) -> dict:
    tables = [(path, read_rows(path, "split", ("file", "subset"))) for path in f.splits or ()]
    splits = [{"file": str(path), "seed": seed_of(path),
               "train": sum(row["subset"] == "train" for row in rows),
               "test": sum(row["subset"] == "test" for row in rows)} for path, rows in tables]
    test_of = Counter()
    if tables and f.manifest:  # the people of the first split's test subset
        person_of = {row["file"]: row["person"]
                     for row in read_rows(f.manifest, "manifest", ("file", "person"))}
        test_of = Counter(person_of.get(file) for file in
                          {row["file"] for row in tables[0][1] if row["subset"] == "test"})
    per_person = summary.get("images_per_person") or {}
    largest = max(per_person.values(), default=1)
    people = [{"name": name, "images": count, "test": test_of.get(name, 0),
               "share": count / largest}
              for name, count in sorted(per_person.items(), key=lambda item: (-item[1], item[0]))]
    checksums = {label: hashlib.sha256(Path(path).read_bytes()).hexdigest()
                 for label, path in (("dataset.npz", f.dataset), ("manifest.csv", f.manifest))
                 if is_file(path)}
    return {"summary": summary, "splits": splits, "people": people, "checksums": checksums,
            "explanation": claims.explain_1777(summary["images"], test_fraction)}


def training_context(f: SimpleNamespace) -> tuple[list[dict], list[dict], dict]:
    """A row per history with the train.json beside it (same folder); every train.json; the
    histories by seed."""
    infos = {Path(path).resolve().parent: read_json(path) for path in f.train_infos or ()}
    rows, histories = [], {}
    for path in f.histories or ():
        info = infos.get(Path(path).resolve().parent, {})
        seed = seed_of(path, info)
        history = histories[seed] = read_history(path)
        last = history.iloc[-1]
        rows.append({"seed": seed, "epochs": int(last["epoch"]),
                     **{key: float(last[key])
                        for key in ("accuracy", "loss", "test_accuracy", "test_loss")},
                     **{key: info.get(key)
                        for key in ("seconds", "seconds_per_epoch", "device", "gpu_name")}})
    return rows, list(infos.values()), histories


def evaluation_context(f: SimpleNamespace) -> dict:
    aggregate = None if f.aggregate is None else read_json(f.aggregate)
    by_seed = read_csv(f.accuracy_by_seed).to_dict("records") if f.accuracy_by_seed else []
    metrics = f.metrics or ()
    records = {seed_of(path, record): record
               for path, record in zip(metrics, map(read_json, metrics), strict=True)}
    for row in by_seed:  # macro F1 from each seed's metrics.json beside its accuracy
        row["macro_f1"] = ((records.get(row["seed"]) or {}).get("macro_avg") or {}).get("f1")
    baseline = next(iter(records.values()), {})
    classes = (read_rows(f.per_class, "per-class table", PER_CLASS_NUMBERS)
               if is_file(f.per_class) else [])
    # names stay strings (a person may be named "NA"), the scores become numbers
    per_class = [{**row, **{column: number(f.per_class, row, column, kind)
                            for column, kind in PER_CLASS_NUMBERS.items()}} for row in classes]
    counts = read_confusion(f.confusion_table).to_numpy() if is_file(f.confusion_table) else None
    return {"aggregate": aggregate, "by_seed": by_seed, "per_class": per_class,
            "pooled": None if counts is None else {"correct": int(np.trace(counts)),
                                                   "total": int(counts.sum())},
            "chance": baseline.get("chance_accuracy"),
            "majority": baseline.get("majority_accuracy"),
            "figures": {name: data_uri(getattr(f, f"{name}_figure"))
                        for name in ("curves", "accuracy", "confusion")}}


def activations_context(f: SimpleNamespace) -> dict | None:
    if not f.activation_record:
        return None
    record, sparsity = read_json(f.activation_record), read_json(f.activation_summary)
    grids = read_json(f.activation_manifest)
    # the manifest names each grid by its file name; the grids are the files given
    given = {Path(path).name: path for path in f.activation_grids or ()}
    for grid in grids["layers"]:
        grid["uri"] = data_uri(given.get(grid["file"]))
    return {"image": record, "sparsity": sparsity, "grids": grids,
            "input_uri": data_uri(f.activation_input),
            "sparsity_uri": data_uri(f.activation_sparsity)}


def views_context(f: SimpleNamespace) -> dict | None:
    """Dissection (C7), inversion (C8), filter patterns and Grad-CAM; None where not run."""
    if not (f.dissection_counts or f.inversion_summary or f.pattern_grids or f.gradcam_figure):
        return None
    dissection = read_json(f.dissection_counts) if f.dissection_counts else None
    if dissection:
        layers = list(dissection["units"])
        regions = list(dissection["max_iou"])
        dissection["rows"] = [
            {"layer": layer, "units": dissection["units"][layer],
             "cells": [{"region": region, **{name: dissection["counts"][name][layer][region]
                                             for name in ("trained", "untrained")}}
                       for region in regions]} for layer in layers]
        dissection["regions"] = regions
    inversion = read_json(f.inversion_summary) if f.inversion_summary else None
    if inversion:
        untrained = {row["layer"]: row for row in inversion["layers"]["untrained"]}
        inversion["rows"] = [{**row, "untrained": untrained.get(row["layer"])}
                             for row in inversion["layers"]["trained"]]
    gradcam = (read_rows(f.gradcam_table, "Grad-CAM table", ["true", "predicted", "correct"])
               if is_file(f.gradcam_table) else [])
    return {"dissection": dissection, "inversion": inversion,
            "dissection_uri": data_uri(f.dissection_figure),
            "top_uri": data_uri(f.dissection_top), "inversion_uri": data_uri(f.inversion_figure),
            "patterns": [{"layer": Path(path).stem, "uri": data_uri(path)}
                         for path in f.pattern_grids or ()],
            "gradcam_uri": data_uri(f.gradcam_figure), "gradcam": gradcam,
            "gradcam_correct": sum(row["correct"] == "True" for row in gradcam)}


def environment_context(f: SimpleNamespace, config: Mapping, rows: list[dict],
                        infos: list[dict], activations: dict | None,
                        check: dict | None) -> dict:
    devices = Counter(info.get("device", "?") + (f" ({info['gpu_name']})"
                                                 if info.get("gpu_name") else "")
                      for info in infos if info)
    times = [{"stage": "train", "job": f"seed {row['seed']}", "seconds": row["seconds"],
              "max_rss_mb": None, "source": "train.json"}
             for row in rows if row["seconds"] is not None]
    benchmarks = benchmark_rows(f.timings or ())
    seconds = activations["sparsity"].get("seconds") if activations else None
    if seconds is not None and not any(row["stage"] == "activations" for row in benchmarks):
        times.append({"stage": "activations", "job": "export", "max_rss_mb": None,
                      "seconds": seconds, "source": "sparsity.json"})
    return {"packages": package_versions(), "numerics": numerics_groups(infos),
            "trained_with": [f"tensorflow {tf}, keras {k}" for tf, k in sorted(
                {(i.get("tensorflow"), i.get("keras")) for i in infos if i.get("tensorflow")})],
            **machine(), "devices": dict(devices), "git": git_state(),
            "config_yaml": yaml.safe_dump(config, sort_keys=False) if config else "",
            "times": times + benchmarks, "backprop_versions": (check or {}).get("versions")}


def numerics_groups(infos: list[dict]) -> list[dict]:
    """The seeds that ran with the same numerics (CPU, its vector extensions, oneDNN, the
    TensorFlow build, GPU and driver, precision, XLA): what decides their exact numbers."""
    groups: dict[str, dict] = {}
    for info in infos:
        if info.get("numerics"):
            setting = {**{k: info.get(k) for k in ("cpu", "tensorflow", "gpu_name")},
                       **info["numerics"],
                       **{k: (info.get("train") or {}).get(k) for k in ("precision", "jit")}}
            group = groups.setdefault(json.dumps(setting, sort_keys=True), {**setting, "seeds": []})
            group["seeds"].append(info.get("seed"))
    return list(groups.values())


def sweep_context(f: SimpleNamespace) -> dict | None:
    """The sweep comparison (``lfwcnn.sweep_summary``'s JSON and plot); None without a sweep."""
    summary = None if f.sweep_summary is None else read_json(f.sweep_summary)
    if not summary or not summary.get("runs"):
        return None
    return {"axes": summary["axes"], "runs": summary["runs"], "first": summary["runs"][0],
            "ablation": summary.get("ablation"), "figure": data_uri(f.sweep_figure)}


def build_context(f: SimpleNamespace, config: Mapping, title: str, test_fraction: float) -> dict:
    """Everything the template shows, with the eight verdicts computed from the files ``f``
    names (``None`` for a stage not run)."""
    summary = read_json(f.summary)
    source = None if f.source is None else read_json(f.source)
    data = data_context(f, summary, test_fraction)
    rows, infos, histories = training_context(f)
    evaluation = evaluation_context(f)
    activations = activations_context(f)
    check = read_json(f.backprop_json) if is_file(f.backprop_json) else None
    fig4 = (Markup(Path(f.backprop_html).read_text(encoding="utf-8"))
            if check is not None and is_file(f.backprop_html) else None)
    train_n, test_n = ((data["splits"][0]["train"], data["splits"][0]["test"]) if data["splits"]
                       else claims.split_sizes(summary["images"], test_fraction))
    variant = ((source or summary.get("source") or {}).get("variant")
               or config.get("data", {}).get("variant"))
    sweep = sweep_context(f)
    views = views_context(f)
    verdicts = [
        claims.verdict_c1(summary, train_n, test_n, test_fraction),
        claims.verdict_c2(evaluation["aggregate"], [row["epochs"] for row in rows], variant,
                          sweep["runs"] if sweep else ()),
        claims.verdict_c3(check),
        claims.verdict_c4(activations["sparsity"] if activations else None),
        claims.verdict_c5(histories),
        claims.verdict_c6(activations["grids"] if activations else None,
                          f.activation_grids or ()),
        claims.verdict_c7((views or {}).get("dissection")),
        claims.verdict_c8((views or {}).get("inversion")),
    ]
    return {
        "title": title, "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "verdicts": [asdict(v) | {"status_text": v.status_text} for v in verdicts],
        "headline": claims.headline(verdicts), "departures": claims.protocol_departures(config),
        "provenance": claims.provenance(source, summary), "variant": variant, "data": data,
        "training": {"rows": rows}, "evaluation": evaluation, "activations": activations,
        "views": views, "backprop": {"check": check, "fig4": fig4},
        "environment": environment_context(f, config, rows, infos, activations, check),
        "sweep": sweep, "paper": claims.PAPER,
    }


def write_report(
    *, summary: Path, html: Path, report: Settings, split: Settings,
    run_config: dict | None = None, source: Path | None = None, manifest: Path | None = None,
    dataset: Path | None = None, splits: list[Path] | None = None,
    histories: list[Path] | None = None, train_infos: list[Path] | None = None,
    metrics: list[Path] | None = None, aggregate: Path | None = None,
    accuracy_by_seed: Path | None = None,
    # rule draw_training's outputs
    curves_figure: Path | None = None, accuracy_figure: Path | None = None,
    confusion_figure: Path | None = None, confusion_table: Path | None = None,
    per_class: Path | None = None,
    # rules export_activations and draw_activations' outputs: all of them or none
    activation_summary: Path | None = None, activation_record: Path | None = None,
    activation_manifest: Path | None = None, activation_input: Path | None = None,
    activation_sparsity: Path | None = None, activation_grids: list[Path] | None = None,
    timings: list[Path] | None = None, backprop_json: Path | None = None,
    backprop_html: Path | None = None, sweep_summary: Path | None = None,
    sweep_figure: Path | None = None,
    # rule view_network's outputs
    dissection_counts: Path | None = None, dissection_figure: Path | None = None,
    dissection_top: Path | None = None, inversion_summary: Path | None = None,
    inversion_figure: Path | None = None, pattern_grids: list[Path] | None = None,
    gradcam_figure: Path | None = None, gradcam_table: Path | None = None,
) -> None:
    """Step: the report ``html`` from ``summary`` and the other files given (a stage left out
    is shown as not run; the activations need all of theirs), of the run whose whole config is
    ``run_config`` (shown as YAML) and split ``split``, titled ``report.title``. ``timings``:
    the Snakemake benchmark files whose run times it tables."""
    files = {name: value for name, value in locals().items()
             if name not in ("html", "report", "split", "run_config")}
    if run_config is not None and not isinstance(run_config, Mapping):
        raise LfwcnnError("run_config is the whole config of a run (a mapping, as the rule "
                          "gives it), not a value")
    check_outputs({"html": html}, {
        key: path for label, value in files.items()
        for key, path in (listed(label, value) if isinstance(value, list) else
                          {label: value}).items()})
    context = build_context(SimpleNamespace(**files), run_config or {}, report.title,
                            split.test_fraction)
    write_text(html, templating.render("report.html.j2", **context))
    log.info("%s Report: %s", context["headline"], html)
