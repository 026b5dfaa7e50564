"""The HTML report: every claim of the paper beside what this run measured, with a verdict.

:func:`build_context` reads the outputs of every stage into one dictionary; the verdicts
(:mod:`lfwcnn.claims`) are computed from those numbers, never written by
hand; :func:`render` fills ``templates/report.html.j2``. The result is one HTML file with
every figure inlined as a ``data:`` URI and no script, font or style sheet from elsewhere, so
it opens offline, from a mail attachment, on a phone or a wide screen.

    python -m lfwcnn.report --summary data/prepared/funneled/summary.json ... \\
        --out results/report/index.html
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from lfwcnn.atomic import write_text
from lfwcnn.claims import (
    PAPER,
    explain_1777,
    headline,
    protocol_departures,
    provenance,
    split_sizes,
    verdict_c1,
    verdict_c2,
    verdict_c3,
    verdict_c4,
    verdict_c5,
    verdict_c6,
)
from lfwcnn.cli import run
from lfwcnn.config import read_step_json
from lfwcnn.devices import cpu_model
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.tables import number, read_rows

log = logging.getLogger(__name__)

PER_CLASS_NUMBERS = {"precision": float, "recall": float, "f1": float, "support": int,
                     "predicted": int}
PACKAGES = ("tensorflow", "keras", "numpy", "scikit-learn", "scipy", "pandas", "matplotlib",
            "pillow", "jinja2", "snakemake", "pyyaml")


# ----------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read ({err})") from None


def read_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LfwcnnError(f"{path}: cannot read ({err})") from None


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


# ----------------------------------------------------------------------------- environment


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_checkout() -> str | None:
    """The checkout this package runs from (``<checkout>/src/lfwcnn``, as in a workflow job)."""
    src = Path(__file__).resolve().parents[1]
    return str(src.parent) if src.name == "src" else None


def git_state(repo: str | os.PathLike | None) -> dict:
    """Commit and whether tracked files differ from it; read-only (no index refresh)."""
    if repo is None:
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args],
                                  capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "describe": git("log", "-1", "--format=%cd %s", "--date=short") if commit else None}


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
    source: str | None = None
    manifest: str | None = None
    dataset: str | None = None
    splits: Sequence[str] = ()
    histories: Sequence[str] = ()
    train_infos: Sequence[str] = ()
    metrics: Sequence[str] = ()
    aggregate: str | None = None
    accuracy_by_seed: str | None = None
    figures_dir: str | None = None
    activations_dir: str | None = None
    backprop_json: str | None = None
    backprop_html: str | None = None
    benchmarks: str | None = None
    sweep_summary: str | None = None
    sweep_figure: str | None = None
    config: dict = field(default_factory=dict)
    repo: str | None = None
    title: str = "Rolling in the Deep CNNs (Soydaner 2019): does the paper hold on LFW?"


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
            "explanation": explain_1777(summary["images"], test_fraction),
            "test_fraction": test_fraction}


def training_context(inputs: Inputs) -> tuple[dict, dict[int, pd.DataFrame]]:
    from lfwcnn.figures import read_history

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
    from lfwcnn.figures import read_confusion

    aggregate = read_json(inputs.aggregate)
    by_seed = (read_csv(inputs.accuracy_by_seed).to_dict("records")
               if inputs.accuracy_by_seed else [])
    records = {seed_of(path, record): record for path in inputs.metrics
               if (record := read_json(path)) is not None}
    for row in by_seed:  # macro F1 from each seed's metrics.json beside its accuracy
        macro = (records.get(row["seed"]) or {}).get("macro_avg") or {}
        row["macro_f1"] = macro.get("f1")
    baseline = next(iter(records.values()), {})
    figures = Path(inputs.figures_dir) if inputs.figures_dir else None
    per_class = []
    if figures and (figures / "per_class.csv").is_file():
        per_class = per_class_rows(figures / "per_class.csv")
    pooled = None
    if figures and (figures / "confusion.csv").is_file():
        counts = read_confusion(figures / "confusion.csv").to_numpy()
        pooled = {"correct": int(np.trace(counts)), "total": int(counts.sum())}
    return {"aggregate": aggregate, "by_seed": by_seed, "per_class": per_class,
            "pooled": pooled, "chance": baseline.get("chance_accuracy"),
            "majority": baseline.get("majority_accuracy"),
            "figures": {name: data_uri(figures / f"{name}.png") if figures else None
                        for name in ("curves", "accuracy", "confusion")}}


def activations_context(inputs: Inputs) -> dict | None:
    if not inputs.activations_dir:
        return None
    folder = Path(inputs.activations_dir)
    record = read_json(folder / "image.json")
    sparsity = read_json(folder / "sparsity.json")
    grids = read_json(folder / "figures" / "grids.json")
    for grid in grids["layers"]:
        grid["uri"] = data_uri(folder / "figures" / grid["file"])
    return {"image": record, "sparsity": sparsity, "grids": grids,
            "input_uri": data_uri(folder / "figures" / "input.png"),
            "sparsity_uri": data_uri(folder / "figures" / "sparsity.png"),
            "figures_dir": folder / "figures"}


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
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "devices": dict(devices),
        "git": git_state(inputs.repo),
        "config_yaml": yaml.safe_dump(inputs.config, sort_keys=False) if inputs.config else "",
        "times": times,
        "backprop_versions": (check or {}).get("versions"),
    }


def sweep_context(inputs: Inputs) -> dict | None:
    """The sweep comparison (``lfwcnn.sweep_summary``'s JSON and plot); None without a sweep."""
    summary = read_json(inputs.sweep_summary) if inputs.sweep_summary else None
    if not summary or not summary.get("runs"):
        return None
    return {"axes": summary["axes"], "runs": summary["runs"], "first": summary["runs"][0],
            "ablation": summary.get("ablation"), "figure": data_uri(inputs.sweep_figure)}


def build_context(inputs: Inputs) -> dict:
    """Everything the template shows, with the six verdicts computed from the outputs."""
    summary = read_json(inputs.summary)
    source = read_json(inputs.source)
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
        train_n, test_n = split_sizes(summary["images"], data["test_fraction"])
    variant = ((source or summary.get("source") or {}).get("variant")
               or inputs.config.get("data", {}).get("variant"))
    sweep = sweep_context(inputs)
    verdicts = [
        verdict_c1(summary, train_n, test_n, data["test_fraction"]),
        verdict_c2(evaluation["aggregate"], [row["epochs"] for row in training["rows"]],
                   variant, sweep["runs"] if sweep else ()),
        verdict_c3(check),
        verdict_c4(activations["sparsity"] if activations else None),
        verdict_c5(histories),
        verdict_c6(activations["grids"] if activations else None,
                   activations["figures_dir"] if activations else None),
    ]
    return {
        "title": inputs.title,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "verdicts": [asdict(v) | {"status_text": v.status_text} for v in verdicts],
        "headline": headline(verdicts),
        "departures": protocol_departures(inputs.config),
        "provenance": provenance(source, summary),
        "variant": variant,
        "data": data,
        "training": training,
        "evaluation": evaluation,
        "activations": activations,
        "backprop": {"check": check, "fig4": fig4},
        "environment": environment_context(inputs, training, activations, check),
        "sweep": sweep,
        "paper": PAPER,
    }


# ----------------------------------------------------------------------------- rendering


def _percent(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * float(value):.{digits}f} %"


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lfwcnn", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = _percent
    env.filters["number"] = _number
    return env


def render(context: dict) -> str:
    return environment().get_template("report.html.j2").render(**context)


def write_report(inputs: Inputs, out: str | os.PathLike) -> dict:
    context = build_context(inputs)
    write_text(out, render(context))
    return context


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", help="default: the config's report.title")
    parser.add_argument("--config-json", help="the workflow's config as JSON (shown as YAML)")
    parser.add_argument("--repo", default=package_checkout(),
                        help="source checkout, for the git commit (default: this package's)")
    parser.add_argument("--summary", required=True, help="data summary.json")
    parser.add_argument("--source", help="source.json of the obtain step")
    parser.add_argument("--manifest", help="manifest.csv (its sha256 is shown)")
    parser.add_argument("--dataset", help="dataset.npz (its sha256 is shown)")
    parser.add_argument("--splits", nargs="*", default=[], help="split CSVs, first seed first")
    parser.add_argument("--histories", nargs="*", default=[], help="history.csv per seed")
    parser.add_argument("--train-infos", nargs="*", default=[], help="train.json per seed")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics.json per seed")
    parser.add_argument("--aggregate", help="aggregate.json")
    parser.add_argument("--accuracy-by-seed", help="accuracy_by_seed.csv")
    parser.add_argument("--figures-dir", help="output folder of `lfwcnn.figures training`")
    parser.add_argument("--activations-dir", help="output folder of lfwcnn.activations")
    parser.add_argument("--backprop-json", help="check.json of lfwcnn.verify_backprop")
    parser.add_argument("--backprop-html", help="fig4.html of lfwcnn.verify_backprop")
    parser.add_argument("--benchmarks", help="folder of Snakemake benchmark files")
    parser.add_argument("--sweep-summary", help="summary.json of lfwcnn.sweep_summary")
    parser.add_argument("--sweep-figure", help="accuracy.png of lfwcnn.sweep_summary")
    parser.add_argument("--out", required=True, help="HTML file to write")
    args = parser.parse_args(argv)
    config = read_step_json(args.config_json, "--config-json") if args.config_json else {}
    title = args.title or config.get("report", {}).get("title") or Inputs.title
    check_outputs({"--out": args.out}, {
        "--summary": args.summary, "--source": args.source, "--manifest": args.manifest,
        "--dataset": args.dataset, **listed("--splits", args.splits),
        **listed("--histories", args.histories), **listed("--train-infos", args.train_infos),
        **listed("--metrics", args.metrics), "--aggregate": args.aggregate,
        "--accuracy-by-seed": args.accuracy_by_seed, "--backprop-json": args.backprop_json,
        "--backprop-html": args.backprop_html, "--sweep-summary": args.sweep_summary,
        "--sweep-figure": args.sweep_figure})
    inputs = Inputs(
        summary=args.summary, source=args.source, manifest=args.manifest, dataset=args.dataset,
        splits=args.splits, histories=args.histories, train_infos=args.train_infos,
        metrics=args.metrics, aggregate=args.aggregate, accuracy_by_seed=args.accuracy_by_seed,
        figures_dir=args.figures_dir, activations_dir=args.activations_dir,
        backprop_json=args.backprop_json, backprop_html=args.backprop_html,
        benchmarks=args.benchmarks, sweep_summary=args.sweep_summary,
        sweep_figure=args.sweep_figure, config=config, repo=args.repo, title=title)
    context = write_report(inputs, args.out)
    log.info("%s Report: %s", context["headline"], args.out)


if __name__ == "__main__":
    raise SystemExit(run(main))
