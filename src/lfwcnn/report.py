"""The HTML report: every claim of the paper beside what this run measured, with a verdict.

:func:`build_context` reads the outputs of every stage into one dictionary; the verdicts
(:func:`verdict_c1` ... :func:`verdict_c6`) are computed from those numbers, never written by
hand; :func:`render` fills ``templates/report.html.j2``. The result is one HTML file with
every figure inlined as a ``data:`` URI and no script, font or style sheet from elsewhere, so
it opens offline, from a mail attachment, on a phone or a wide screen.

    python -m lfwcnn.report --summary data/prepared/funneled/summary.json ... \\
        --out results/report/index.html
"""

from __future__ import annotations

import argparse
import base64
import csv
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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from lfwcnn.atomic import write_text
from lfwcnn.cli import run
from lfwcnn.devices import cpu_model
from lfwcnn.errors import LfwcnnError

log = logging.getLogger(__name__)

# What the paper reports (section 3 and Figs. 5-12), and the counts its protocol gives on LFW.
PAPER = {"people": 34, "images": 2370, "train": 1777, "test": 593, "accuracy": 0.8347,
         "epochs": 100, "layers": ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3"),
         "maps": (32, 32, 64, 64, 128, 128)}
# The paper's protocol as config keys; a run that departs from it says so at the top.
PAPER_PROTOCOL = {
    "data.min_images_per_person": 30, "data.image_size": 64, "split.test_fraction": 0.25,
    "model.filters": [32, 64, 128], "model.kernel_size": 3, "model.pool_size": 2,
    "model.dense_units": [128, 256], "model.dropout_rate": 0.5, "train.optimizer": "adam",
    "train.learning_rate": 0.001, "train.epochs": 100, "train.batch_size": 128,
}
# The paper names no LFW variant; scikit-learn's loader, the likely tool, uses this one.
PAPER_VARIANT = "funneled"
# C4: "all filters active" in conv1 allows this mean share of blank maps over test images.
C4_CONV1_BLANK_TOLERANCE = 0.01
PACKAGES = ("tensorflow", "keras", "numpy", "scikit-learn", "scipy", "pandas", "matplotlib",
            "pillow", "jinja2", "snakemake", "pyyaml")
STATUS_TEXT = {"holds": "holds", "partly": "partly holds", "fails": "does not hold",
               "undetermined": "undetermined", "not run": "not run"}


@dataclass
class Verdict:
    """One row of the verdict table."""

    claim: str
    title: str
    paper: str
    ours: str
    status: str  # a key of STATUS_TEXT
    detail: str = ""
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUS_TEXT:
            raise ValueError(f"unknown verdict status {self.status!r}")

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[self.status]


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
    counts: Counter[str] = Counter()
    test_files = set()
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                counts[row["subset"]] += 1
                if row["subset"] == "test":
                    test_files.add(row["file"])
    except (OSError, KeyError) as err:
        raise LfwcnnError(f"{path}: cannot read the split ({err})") from None
    return {"train": counts["train"], "test": counts["test"], "test_files": test_files}


# ----------------------------------------------------------------------------- provenance


def provenance(source: dict | None, summary: dict | None) -> dict:
    """Which LFW the run used, and whether it is only an approximation of that variant.

    The obtain step decides and records it (``approximate``, from the folder's own note); an
    archive that is not the variant's published one is flagged here too, as unverified.
    """
    record = dict(source or (summary or {}).get("source") or {})
    flags = []
    if record.get("approximate"):
        where = record.get("note_file") or record.get("path") or record.get("source")
        flags.append(f"{where} describes these images as an approximation: "
                     f"{record.get('note') or 'no further note'}")
    if record.get("kind") == "archive" and record.get("matches_published") is False:
        flags.append(f"the archive is not the published {record.get('variant')} archive "
                     "(its md5 differs)")
    return {"record": record, "approximate": bool(flags), "flags": flags,
            "note": record.get("note")}


# ----------------------------------------------------------------------------- verdicts


def split_sizes(images: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) as scikit-learn's ``train_test_split`` sizes them: the test side rounds up."""
    test = math.ceil(test_fraction * images)
    return images - test, test


def explain_1777(images: int, test_fraction: float) -> str:
    train, test = split_sizes(images, test_fraction)
    text = (f"With {images} images and a test fraction of {test_fraction:g}, the test subset "
            f"holds ceil({test_fraction:g} x {images}) = {test} images and the training "
            f"subset {images} - {test} = {train}.")
    if (train, test) == (PAPER["train"], PAPER["test"]):
        text += (" The paper's \"1777 face images\" is therefore the training subset, not "
                 f"the whole data set of {images} images; its 83.47 % is 495/593, "
                 "a 593-image test subset.")
    else:
        text += (" On the real LFW (2370 images of 34 people) the same protocol gives 1777 "
                 "training and 593 test images: the paper's \"1777 face images\" is the "
                 "training subset.")
    return text


def verdict_c1(summary: dict, train: int, test: int, test_fraction: float) -> Verdict:
    people, images = summary["people"], summary["images"]
    checks = [("34 people", people == PAPER["people"]),
              ("2370 images", images == PAPER["images"]),
              ("1777 training images", train == PAPER["train"]),
              ("593 test images", test == PAPER["test"])]
    if all(ok for _, ok in checks):
        status = "holds"
    elif checks[0][1] and checks[1][1]:
        status = "partly"
    else:
        status = "fails"
    return Verdict(
        "C1", "Data: LFW people with at least 30 images",
        "34 people, \"1777 face images\", split 0.75 / 0.25",
        f"{people} people, {images} images; {train} train / {test} test",
        status, explain_1777(images, test_fraction), checks)


def verdict_c2(aggregate: dict | None, epochs: Sequence[int] = (),
               variant: str | None = None, sweep_runs: Sequence[dict] = ()) -> Verdict:
    """The aggregate's verdict: the paper's accuracy inside, above or below the interval.

    An interval that covers every possible accuracy (below 0 % and above 100 %, as two seeds
    can give) says nothing, so the claim is then undetermined rather than confirmed. With a
    sweep the verdict stays that of the run described, and the detail counts the settings
    the paper's value is consistent with.
    """
    title, paper = "Test accuracy after 100 epochs", "83.47 %"
    if aggregate is None:
        return Verdict("C2", title, paper, "-", "not run", "The evaluation has not run.")
    n = aggregate["seeds"]
    ours = f"{aggregate['mean']:.2%} mean over {n} seed{'s' * (n > 1)}"
    if epochs and set(epochs) != {PAPER["epochs"]}:
        ours += f" after {'/'.join(str(e) for e in sorted(set(epochs)))} epochs"
    if aggregate.get("std") is not None:
        ours += f" (sd {100 * aggregate['std']:.2f} points)"
    interval = aggregate.get("interval")
    if interval:
        ours += (f"; {aggregate['confidence']:.0%} interval {interval['low']:.2%} to "
                 f"{interval['high']:.2%}")
    status = {"inside": "holds", "above": "fails", "below": "fails"}.get(
        aggregate["verdict"], "undetermined")
    detail = aggregate.get("statement", "")
    if variant and variant != PAPER_VARIANT:
        detail += (f" Measured on the {variant} images; the paper does not name its variant, "
                   f"most likely {PAPER_VARIANT} (scikit-learn's default), and the alignment "
                   "changes the accuracy.")
    if interval and interval["low"] <= 0 and interval["high"] >= 1:
        status = "undetermined"
        detail += (f" That interval spans every possible accuracy: {n} seeds are too few to "
                   "tell.")
    single = aggregate.get("verdict_single_run")
    if single and single != "undefined":
        band = aggregate["prediction_interval"]
        detail += (f" A single further run is expected between {band['low']:.2%} and "
                   f"{band['high']:.2%}; the paper's one run lies {single} that range.")
    if len(sweep_runs) > 1:
        inside = [r["run"] for r in sweep_runs if r["verdict"] == "inside"]
        detail += (f" Across the ablation the paper's value lies inside the interval of "
                   f"{len(inside)} of {len(sweep_runs)} settings"
                   f"{': ' + ', '.join(inside) if inside else ''}.")
    return Verdict("C2", title, paper, ours, status, detail,
                   [(f"83.47 % {aggregate['verdict']} the interval",
                     aggregate["verdict"] == "inside")])


def verdict_c3(check: dict | None) -> Verdict:
    title = "Backpropagation through convolution (Eqs. 1-22)"
    paper = "dL/dF = X * dL/dO; dL/dX = full convolution of dL/dO with the rotated F"
    if check is None:
        return Verdict("C3", title, paper, "-", "not run", "The backpropagation check has "
                       "not run (rule verify_backprop).")
    errors = check.get("max_relative_error") or {}
    finite = [value for value in errors.values() if value is not None]
    worst = max(finite) if finite else float("nan")
    cases = (check.get("cases") or {}).get("autodiff")
    fig4 = ((check.get("checks") or {}).get("fig4") or {}).get("equations") or {}
    ours = (f"{cases} random layers agree with TensorFlow's autodiff to {worst:.1e} "
            f"(relative); Fig. 4: {sum(map(bool, fig4.values()))} of {len(fig4)} "
            "equations match")
    checks = [(name, bool(part.get("pass"))) for name, part in (check.get("checks") or
                                                                  {}).items()]
    status = "holds" if check.get("pass") else "fails"
    return Verdict("C3", title, paper, ours, status,
                   "NumPy implementation of section 2 checked against tf.GradientTape, "
                   "central differences, the Fig. 4 example term by term and a Keras SGD step.",
                   checks)


def _rises(values: Sequence[float]) -> bool:
    """Non-decreasing from layer to layer, and higher at the end than at the start."""
    return (len(values) > 1 and all(b >= a for a, b in zip(values, values[1:], strict=False))
            and values[-1] > values[0])


def verdict_c4(sparsity: dict | None) -> Verdict:
    title = "Sparsity grows with depth; the first layer keeps all filters active"
    paper = "conv1: all filters active; deeper: more blank maps, sparser activations"
    if sparsity is None:
        return Verdict("C4", title, paper, "-", "not run", "The activations have not run.")
    conv = [row for row in sparsity["layers"] if row["layer"].startswith("conv")]
    if len(conv) < 2:
        return Verdict("C4", title, paper, "-", "undetermined",
                       "A trend over depth needs at least two convolution layers.")
    blank = [row["blank_share_mean"] for row in conv]
    zero = [row["zero_share_mean"] for row in conv]
    names = " -> ".join(row["layer"] for row in conv)
    checks = [
        (f"{conv[0]['layer']}: blank maps <= {C4_CONV1_BLANK_TOLERANCE:.0%} on average",
         blank[0] <= C4_CONV1_BLANK_TOLERANCE),
        (f"blank maps rise over {names}", _rises(blank)),
        (f"zero activations rise over {names}", _rises(zero)),
    ]
    passed = [ok for _, ok in checks]
    if all(passed):
        status = "holds"
    elif not (passed[1] or passed[2]):
        status = "fails"
    else:
        status = "partly"
    ours = (f"blank maps {' -> '.join(f'{100 * v:.1f}' for v in blank)} %; zero activations "
            f"{' -> '.join(f'{100 * v:.1f}' for v in zero)} % ({names}, mean over "
            f"{conv[0]['images']} test images)")
    first = conv[0]
    detail = (f"{first['layer']}: {blank[0] * first['channels']:.1f} of {first['channels']} maps "
              f"blank per test image on average, {first['never_active_maps']} blank for every "
              f"test image; {conv[-1]['layer']}: {blank[-1] * conv[-1]['channels']:.1f} of "
              f"{conv[-1]['channels']} blank on average.")
    return Verdict("C4", title, paper, ours, status, detail, checks)


def verdict_c5(histories: Mapping[int, pd.DataFrame]) -> Verdict:
    title = "Training accuracy rises and loss falls (Fig. 5)"
    paper = f"accuracy up, loss down over {PAPER['epochs']} epochs"
    if not histories:
        return Verdict("C5", title, paper, "-", "not run", "No training history.")
    rising, falling, epochs = [], [], set()
    for history in histories.values():
        epochs.add(len(history))
        rising.append(history["accuracy"].iloc[-1] > history["accuracy"].iloc[0])
        falling.append(history["loss"].iloc[-1] < history["loss"].iloc[0])
    n = len(histories)
    first = np.mean([h["accuracy"].iloc[0] for h in histories.values()])
    last = np.mean([h["accuracy"].iloc[-1] for h in histories.values()])
    loss0 = np.mean([h["loss"].iloc[0] for h in histories.values()])
    loss1 = np.mean([h["loss"].iloc[-1] for h in histories.values()])
    span = "/".join(str(e) for e in sorted(epochs))
    ours = (f"training accuracy {first:.1%} -> {last:.1%}, loss {loss0:.3f} -> {loss1:.3f} "
            f"(epoch 1 -> {span}, mean of {n} seed{'s' * (n > 1)})")
    checks = [(f"accuracy rises in {sum(rising)} of {n} seeds", all(rising)),
              (f"loss falls in {sum(falling)} of {n} seeds", all(falling))]
    if max(epochs) < 2:
        status = "undetermined"
    elif all(rising) and all(falling):
        status = "holds"
    elif any(rising) or any(falling):
        status = "partly"
    else:
        status = "fails"
    return Verdict("C5", title, paper, ours, status,
                   "First epoch against last epoch of each seed's training history.", checks)


def verdict_c6(grids: dict | None, figures_dir: Path | None) -> Verdict:
    title = "Feature maps of 3 conv + 3 pooling layers for one test image (Figs. 6-12)"
    paper = "6 grids: " + ", ".join(f"{name} {maps}" for name, maps in
                                    zip(PAPER["layers"], PAPER["maps"], strict=True))
    if grids is None:
        return Verdict("C6", title, paper, "-", "not run", "The activations have not run.")
    layers = grids["layers"]
    drawn = [g for g in layers if figures_dir is not None and (figures_dir / g["file"]).is_file()
             and g["tiles"] == g["shape"][-1]]
    ours = f"{len(drawn)} grids: " + ", ".join(f"{g['layer']} {g['tiles']}" for g in drawn)
    names = tuple(g["layer"] for g in layers)
    checks = [("a grid with one tile per map for every conv and pooling layer",
               len(drawn) == len(layers) and bool(layers)),
              ("the paper's six layers", names == PAPER["layers"])]
    if not checks[0][1]:
        status = "fails"
    elif checks[1][1]:
        status = "holds"
    else:
        status = "partly"
    return Verdict("C6", title, paper, ours, status,
                   f"Input image {grids.get('image')}; see the activations section.", checks)


PLURAL_TEXT = {"holds": "hold", "partly": "partly hold", "fails": "do not hold",
               "undetermined": "undetermined", "not run": "not run"}


def headline(verdicts: Sequence[Verdict]) -> str:
    """One line for the top of the report: how many claims hold, partly hold, fail, ..."""
    counts = Counter(v.status for v in verdicts)
    parts = [f"{counts[key]} {(STATUS_TEXT if counts[key] == 1 else PLURAL_TEXT)[key]}"
             for key in STATUS_TEXT if counts[key]]
    return f"Of the paper's {len(verdicts)} claims, " + ", ".join(parts) + "."


def protocol_departures(config: Mapping) -> list[dict]:
    """Config keys whose value is not the paper's (fewer epochs, other sizes, ...)."""
    departures = []
    for key, paper in PAPER_PROTOCOL.items():
        value = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and value != paper:
            departures.append({"key": key, "paper": paper, "ours": value})
    return departures


# ----------------------------------------------------------------------------- environment


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
        manifest = read_csv(inputs.manifest)
        person_of = dict(zip(manifest["file"], manifest["person"], strict=True))
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
        per_class = read_csv(figures / "per_class.csv").to_dict("records")
    pooled = None
    if figures and (figures / "confusion.csv").is_file():
        counts = read_csv(figures / "confusion.csv", index_col=0).to_numpy()
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
    parser.add_argument("--title", default=Inputs.title)
    parser.add_argument("--config-json", help="the workflow's config as JSON (shown as YAML)")
    parser.add_argument("--repo", help="source checkout, for the git commit")
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
    try:
        config = json.loads(args.config_json) if args.config_json else {}
    except ValueError as err:
        raise LfwcnnError(f"--config-json is not JSON ({err})") from None
    inputs = Inputs(
        summary=args.summary, source=args.source, manifest=args.manifest, dataset=args.dataset,
        splits=args.splits, histories=args.histories, train_infos=args.train_infos,
        metrics=args.metrics, aggregate=args.aggregate, accuracy_by_seed=args.accuracy_by_seed,
        figures_dir=args.figures_dir, activations_dir=args.activations_dir,
        backprop_json=args.backprop_json, backprop_html=args.backprop_html,
        benchmarks=args.benchmarks, sweep_summary=args.sweep_summary,
        sweep_figure=args.sweep_figure, config=config, repo=args.repo, title=args.title)
    context = write_report(inputs, args.out)
    log.info("%s Report: %s", context["headline"], args.out)


if __name__ == "__main__":
    raise SystemExit(run(main))
