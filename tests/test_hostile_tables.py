"""Hostile input (issue 13): names no table may break, images in another frame or claiming
huge sizes, workers outliving a killed step, and steps that would remove what they did not make.

Each refusal is checked as the bar asks: exit 1, exactly one ``error:`` line naming the
culprit, no output left, nothing else changed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_training import (
    TINY_ARCH,
    make_dataset,
    model_settings,
    split_in_quarters,
    tf_env,
    tiny_config,
    train_argv,
    write_config,
)
from lfw_fixtures import make_lfw_tree
from markupsafe import escape
from PIL import Image
from workflow_runner import make_project, snakemake

from lfwcnn import run_record, steps
from lfwcnn.cli import run
from lfwcnn.dataset import Dataset, load_dataset, load_split, save_dataset, save_split
from lfwcnn.ownership import (
    MARKER,
    claim_backup_dir,
    prune_snapshots,
    release_backup_dir,
)
from lfwcnn.tables import read_confusion

# commas, quotes, a semicolon, non-ASCII, a "$" pair matplotlib would read as a formula, and
# names pandas would turn into NaN or a number
HOSTILE_PEOPLE = {"Poe, Carol": 6, 'O\'Brien "Jr"': 6, "Zoë;Ünicode": 6, "NA": 5,
                  "Ke$ha $\\frac$": 5, "1984": 5}
NAMES = sorted(HOSTILE_PEOPLE)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes: what 'nothing else changed' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def step(name: str, *values: str, overlay: Path, **data) -> int:
    """``python -m lfwcnn STEP NAME=VALUE...`` in this process, ``data`` keys given in the
    config file ``overlay``; its exit status."""
    overlay.write_text(json.dumps({"data": data}))
    return run(steps.main, [name, *values, "--configfile", str(overlay)])


def prepare_step(images: Path, out: Path, *, threads: int, **data) -> int:
    """The prepare step from ``images`` into ``out`` (d.npz, m.csv, s.json)."""
    return step("prepare_dataset", f"images={images}", f"npz={out / 'd.npz'}",
                f"manifest={out / 'm.csv'}", f"summary={out / 's.json'}", f"threads={threads}",
                overlay=out.parent / "overlay.json", **data)


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory) -> Path:
    return make_lfw_tree(tmp_path_factory.mktemp("hostile") / "lfw", HOSTILE_PEOPLE)


@pytest.fixture(scope="module")
def prepared(hostile_tree, tmp_path_factory) -> Path:
    """prepare and split through their command lines, as the workflow runs them."""
    out = tmp_path_factory.mktemp("prepared")
    assert step("prepare_dataset", f"images={hostile_tree}", f"npz={out / 'dataset.npz'}",
                f"manifest={out / 'manifest.csv'}", f"summary={out / 'summary.json'}",
                "threads=2", overlay=tmp_path_factory.mktemp("config") / "overlay.json",
                min_images_per_person=5, image_size=16) == 0
    assert run(steps.main, ["split_dataset", f"dataset={out / 'dataset.npz'}",
                            f"split_csv={out / 'split.csv'}", "seed=0"]) == 0
    return out


# ----------------------------------------------------------------------------- point 4


def test_manifest_and_split_round_trip_every_name(prepared, hostile_tree):
    data = load_dataset(prepared / "dataset.npz")
    assert sorted(data.class_names) == NAMES
    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["person"] for row in rows} == set(NAMES)
    assert all(row["file"].startswith(row["person"] + "/") for row in rows)
    assert all((hostile_tree / row["file"]).is_file() for row in rows)
    frame = pd.read_csv(prepared / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(frame["person"]) == [row["person"] for row in rows]
    assert list(frame["file"]) == list(data.files)
    train_idx, test_idx = load_split(prepared / "split.csv", data)
    assert len(train_idx) + len(test_idx) == len(data.files)
    split_frame = pd.read_csv(prepared / "split.csv", dtype=str, keep_default_na=False)
    assert set(split_frame["file"]) == set(data.files)


@pytest.fixture(scope="module")
def evaluated(prepared, tmp_path_factory) -> Path:
    """evaluate, aggregate and the training figures on a model that was never fitted.

    Only the tables and figures matter here: an untrained model of the tiny architecture
    predicts some class for every test image, which is all the tables need.
    """
    from lfwcnn.model import build_model

    out = tmp_path_factory.mktemp("evaluated")
    data = load_dataset(prepared / "dataset.npz")
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(data.n_classes, data.images.shape[1:], model_settings(**TINY_ARCH))
    model.save(out / "model.keras")
    (out / "train.json").write_text(json.dumps({"seed": 0, "split_seed": 0}))
    rows = [{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "test_loss": 2.1, "test_accuracy": 0.2,
             "seconds": 1.0}]
    (out / "history.csv").write_text(run_record.history_csv(rows), encoding="utf-8")
    seed = out / "seed0"
    assert run(steps.main, [
        "evaluate_model", f"dataset={prepared / 'dataset.npz'}",
        f"split_csv={prepared / 'split.csv'}", f"model_file={out / 'model.keras'}",
        f"info={out / 'train.json'}", f"metrics={seed / 'metrics.json'}",
        f"per_class={seed / 'per_class.csv'}", f"confusion={seed / 'confusion.csv'}",
        f"figure={seed / 'confusion.png'}", f"predictions={seed / 'predictions.csv'}"]) == 0
    assert run(steps.main, ["aggregate_seeds", f"metrics={seed / 'metrics.json'}",
                            f"summary={out / 'aggregate.json'}",
                            f"by_seed={out / 'accuracy_by_seed.csv'}"]) == 0
    figs = out / "figures"
    assert run(steps.main, [
        "draw_training", f"histories={out / 'history.csv'}", f"metrics={seed / 'metrics.json'}",
        f"confusions={seed / 'confusion.csv'}", f"aggregate={out / 'aggregate.json'}",
        f"curves={figs / 'curves.png'}", f"accuracy={figs / 'accuracy.png'}",
        f"confusion={figs / 'confusion.png'}", f"confusion_table={figs / 'confusion.csv'}",
        f"per_class={figs / 'per_class.csv'}"]) == 0
    return out


def test_evaluation_tables_round_trip_every_name(evaluated, prepared):
    data = load_dataset(prepared / "dataset.npz")
    _, test_idx = load_split(prepared / "split.csv", data)
    seed = evaluated / "seed0"
    for folder in (seed, evaluated / "figures"):
        per_class = pd.read_csv(folder / "per_class.csv", dtype={"class": str},
                                keep_default_na=False)
        assert list(per_class["class"]) == NAMES
        confusion = read_confusion(folder / "confusion.csv")
        assert list(confusion.index) == list(confusion.columns) == NAMES
        with open(folder / "confusion.csv", newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle))[1:] == NAMES
    predictions = pd.read_csv(seed / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(predictions["file"]) == list(data.files[test_idx])
    assert list(predictions["true"]) == list(data.class_names[data.labels[test_idx]])
    assert set(predictions["predicted"]) <= set(NAMES)
    for name in ("confusion.png",):
        assert Image.open(seed / name).size[0] > 100  # drawn despite "$...$" in a name


# draw_training's outputs as write_report takes them
FIGURE_FILES = {"curves_figure": "curves.png", "accuracy_figure": "accuracy.png",
                "confusion_figure": "confusion.png", "confusion_table": "confusion.csv",
                "per_class": "per_class.csv"}


def test_the_html_report_shows_every_name_escaped(evaluated, prepared, tmp_path):
    out = tmp_path / "index.html"
    figs = evaluated / "figures"
    assert run(steps.main, [
        "write_report", f"summary={prepared / 'summary.json'}",
        f"manifest={prepared / 'manifest.csv'}", f"dataset={prepared / 'dataset.npz'}",
        f"splits={prepared / 'split.csv'}", f"histories={evaluated / 'history.csv'}",
        f"train_infos={evaluated / 'train.json'}",
        f"metrics={evaluated / 'seed0' / 'metrics.json'}",
        f"aggregate={evaluated / 'aggregate.json'}",
        f"accuracy_by_seed={evaluated / 'accuracy_by_seed.csv'}",
        *(f"{name}={figs / file}" for name, file in FIGURE_FILES.items()),
        f"html={out}"]) == 0
    text = out.read_text(encoding="utf-8")
    for name in NAMES:
        assert str(escape(name)) in text, name
    assert 'O\'Brien "Jr"' not in text  # quotes escaped, never raw


@pytest.mark.parametrize(("name", "shown"), [
    ("Bad\nName", r"'Bad\nName"), ("Tab\tName", r"'Tab\tName"),
    (os.fsdecode(b"Latin\xe9"), r"'Latin\udce9"),
])
@pytest.mark.parametrize("kind", ["file", "person folder"])
def test_prepare_refuses_a_name_no_table_can_hold(tmp_path, capsys, name, shown, kind):
    root = tmp_path / "lfw"
    make_lfw_tree(root, {"Alice_Doe": 2, "Bob_Roe": 2})
    if kind == "file":
        (root / "Alice_Doe" / "Alice_Doe_0001.jpg").rename(root / "Alice_Doe" / f"{name}.jpg")
    else:
        (root / "Alice_Doe").rename(root / name)
    out = tmp_path / "out"
    before = snapshot(root)
    assert prepare_step(root, out, threads=1, min_images_per_person=2) == 1
    line = one_error(capsys)
    assert shown in line and str(root / "Alice_Doe" if kind == "file" else root) in line
    assert not out.exists() and snapshot(root) == before


def test_a_split_that_no_csv_reader_can_parse_is_one_line(prepared, tmp_path, capsys):
    bad = tmp_path / "split.csv"
    bad.write_text('file,subset\n"Poe, Carol/x.jpg,train\n', encoding="utf-8")
    data = load_dataset(prepared / "dataset.npz")
    with pytest.raises(Exception, match="split") as err:
        load_split(bad, data)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


# ----------------------------------------------------------------------------- points 5, 2


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``, with one tiny compressed row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def jpeg_claiming(path: Path, width: int, height: int) -> bytes:
    """A real JPEG whose start-of-frame header is patched to claim another size."""
    raw = bytearray(path.read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


@pytest.mark.parametrize("how", ["300x300", "60000x60000 png", "60000x60000 jpeg",
                                 "250x250 png cut short"])
def test_an_image_outside_lfws_frame_is_refused_from_its_header(lfw_tree, tmp_path, capsys,
                                                                  how):
    culprit = lfw_tree / "Bob_Roe" / "Bob_Roe_0002.jpg"
    if how == "300x300":
        Image.new("RGB", (300, 300), (90, 90, 90)).save(culprit, format="JPEG")
        size = "300x300"
    elif how == "60000x60000 png":
        culprit.write_bytes(png_header(60000, 60000))
        size = "60000x60000"
    elif how == "60000x60000 jpeg":
        culprit.write_bytes(jpeg_claiming(culprit, 60000, 60000))
        size = "60000x60000"
    else:  # passes the frame check, then Pillow's own bomb check must not traceback either
        culprit.write_bytes(png_header(250, 250)[:-12])
        size = None
    out = tmp_path / "out"
    started = time.perf_counter()
    assert prepare_step(lfw_tree, out, threads=2, min_images_per_person=5) == 1
    assert time.perf_counter() - started < 30  # nothing decoded at the claimed size
    line = one_error(capsys)
    assert str(culprit) in line
    if size == "300x300":
        assert "image is 300x300, LFW images are 250x250" in line
    elif size:  # Pillow's own check on the header's pixel count comes first
        assert "LFW images are 250x250" in line and "decompression bomb" in line
    else:
        assert "not a readable JPEG image" in line
    assert not out.exists()


def test_a_crop_box_outside_the_frame_is_refused_before_reading(lfw_tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_step(lfw_tree, out, threads=1, crop={"rows": [0, 300]}) == 1
    assert "config key data.crop.rows: [0, 300] must satisfy 0 <= start < stop <= 250" \
        in one_error(capsys)
    assert not out.exists()


# ----------------------------------------------------------------------------- point 9


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc: psutil may not be installed)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] not in "ZX":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> Path:
    """Two people of 3000 hard links each to one JPEG: seconds of decoding, milliseconds to make."""
    root = make_lfw_tree(tmp_path_factory.mktemp("big") / "lfw", {"Alice_Doe": 1, "Bob_Roe": 1})
    for person in ("Alice_Doe", "Bob_Roe"):
        first = root / person / f"{person}_0001.jpg"
        for number in range(2, 3001):
            os.link(first, root / person / f"{person}_{number:04d}.jpg")
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_workers_of_a_killed_prepare_end_with_it(big_tree, tmp_path, sig):
    out = tmp_path / "out"
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"data": {"min_images_per_person": 1}}))
    step = subprocess.Popen(
        [sys.executable, "-m", "lfwcnn", "prepare_dataset", f"images={big_tree}",
         f"npz={out / 'd.npz'}", f"manifest={out / 'm.csv'}", f"summary={out / 's.json'}",
         "threads=2", "--configfile", str(overlay)],
        env=tf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and step.poll() is None:
            workers = children(step.pid)
            time.sleep(0.05)
        assert len(workers) >= 2 and step.poll() is None, "the pool never started"
        time.sleep(0.3)  # the workers are decoding
        step.send_signal(sig)
        step.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "a worker outlived its step"
        assert not out.exists() or not any(out.iterdir())
    finally:
        if step.poll() is None:
            step.kill()
            step.wait()


# ----------------------------------------------------------------------------- point 3


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path]:
    data = make_dataset(n_classes=2, per_class=8)
    train_idx, test_idx = split_in_quarters(data)
    folder = tmp_path / "inputs"
    save_dataset(folder / "dataset.npz", data)
    save_split(folder / "split.csv", data.files, train_idx, test_idx)
    return folder / "dataset.npz", folder / "split.csv"


def one_epoch_config(inputs) -> Path:
    """The tiny training's config, beside the inputs (written before a test takes stock)."""
    return write_config(inputs[0].parent / "config.yaml", tiny_config(epochs=1))


def refused_training(tmp_path, capsys, inputs, out: Path, **options) -> str:
    config = one_epoch_config(inputs)
    before = snapshot(tmp_path)
    status = run(steps.main, train_argv(*inputs, out, configfile=config, **options))
    line = one_error(capsys)
    assert status == 1
    assert snapshot(tmp_path) == before  # nothing written, nothing removed
    return line


def test_a_backup_dir_holding_a_users_files_is_refused(tmp_path, capsys, inputs):
    mine = tmp_path / "my_folder"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out", backup=mine)
    assert f"backup {mine} holds files that lfwcnn.train did not make" in line
    assert MARKER in line


@pytest.mark.parametrize(("where", "message"), [
    ("out", "holds model_file"),  # the folder of the step's own outputs
    ("inputs", "holds dataset"),  # the folder of its inputs
    (".", "holds dataset"),  # above everything
    ("out/model.keras", "holds model_file"),  # an output itself
    ("out/model.keras/backup", "lies inside model_file"),
    ("inputs/split.csv", "holds split_csv"),
])
def test_a_backup_dir_that_overlaps_an_input_or_output_is_refused(tmp_path, capsys, inputs,
                                                                   where, message):
    backup = tmp_path / where
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out", backup=backup)
    assert line.startswith(f"error: backup {backup} ") and message in line


def test_a_backup_dir_reached_through_a_link_is_judged_by_its_target(tmp_path, capsys, inputs):
    (tmp_path / "link").symlink_to(tmp_path / "inputs", target_is_directory=True)
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out",
                            backup=tmp_path / "link")
    assert "holds dataset" in line


def test_an_output_over_an_input_or_a_folder_is_refused(tmp_path, capsys, inputs):
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out", history=inputs[1])
    assert f"history {inputs[1]} is also split_csv" in line
    (tmp_path / "out").mkdir()
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out", info=tmp_path / "out")
    assert "is a folder" in line
    line = refused_training(tmp_path, capsys, inputs, tmp_path / "out",
                            info=tmp_path / "out" / "model.keras")
    assert "is also model_file" in line


@pytest.mark.parametrize(("argv", "labels"), [
    (["split_dataset", "dataset={d}", "split_csv={d}", "seed=0"], "split_csv {d} is also dataset"),
    (["evaluate_model", "dataset={d}", "split_csv={s}", "model_file={d}",
      "info={o}/metrics.json", "metrics={o}/metrics.json", "per_class={o}/p.csv",
      "confusion={o}/c.csv", "figure={o}/c.png", "predictions={o}/r.csv"],
     "metrics {o}/metrics.json is also info"),
    (["aggregate_seeds", "metrics={o}/m.json", "summary={o}/m.json", "by_seed={o}/a"],
     "summary {o}/m.json is also metrics #1"),
])
def test_no_step_writes_an_output_over_its_input(tmp_path, capsys, inputs, argv, labels):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text("{}")
    (tmp_path / "o" / "m.json").write_text("{}")
    args = [a.format(d=inputs[0], s=inputs[1], o=tmp_path / "o") for a in argv]
    before = snapshot(tmp_path)
    assert run(steps.main, args) == 1
    line = one_error(capsys)
    assert "writing it would replace that file" in line
    assert labels.format(d=inputs[0], o=tmp_path / "o") in line  # named by parameter names
    assert snapshot(tmp_path) == before


def test_release_removes_only_what_the_step_made(tmp_path):
    backup = claim_backup_dir(tmp_path / "new" / "backup")
    assert backup.created and (backup.path / MARKER).is_file()
    for name in ("epoch-0001", "epoch-0002", "epoch-notes"):
        (backup.path / name).mkdir()
    (backup.path / "latest").write_text("epoch-0002\n")
    (backup.path / ".epoch-0003.abc.part").mkdir()
    prune_snapshots(backup, keep="epoch-0002")
    assert sorted(p.name for p in backup.path.iterdir()) == [
        ".epoch-0003.abc.part", MARKER, "epoch-0002", "epoch-notes", "latest"]
    release_backup_dir(backup)
    assert sorted(p.name for p in backup.path.iterdir()) == ["epoch-notes"]  # not the step's
    (backup.path / "epoch-notes").rmdir()

    adopted = tmp_path / "empty"
    adopted.mkdir()
    backup = claim_backup_dir(adopted)
    assert not backup.created
    release_backup_dir(claim_backup_dir(adopted))  # a rerun finds its own marker
    assert adopted.is_dir() and not any(adopted.iterdir())  # the user's folder stays


def test_training_removes_the_backup_it_made_and_keeps_an_adopted_folder(tmp_path, inputs):
    out = tmp_path / "out"
    config = one_epoch_config(inputs)
    assert run(steps.main, train_argv(*inputs, out, configfile=config)) == 0
    assert (out / "model.keras").is_file() and not (out / "backup").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(steps.main, train_argv(*inputs, tmp_path / "out2", configfile=config,
                                      backup=empty)) == 0
    assert empty.is_dir() and not any(empty.iterdir())


# ----------------------------------------------------------------------------- workflow


def workflow_overlay(source: Path, **extra) -> dict:
    return {"data": {"source": str(source), "min_images_per_person": 5, "image_size": 16},
            "seeds": [0], **extra}


def test_workflow_refuses_an_image_of_another_frame_in_the_prepare_job(lfw_tree, tmp_path):
    culprit = lfw_tree / "Bob_Roe" / "Bob_Roe_0003.jpg"
    Image.new("RGB", (300, 300), (90, 90, 90)).save(culprit, format="JPEG")
    project = make_project(tmp_path / "p", workflow_overlay(lfw_tree))
    result = snakemake(project, "data/split/funneled/seed0.csv")
    assert result.returncode != 0
    log = (project / "logs/data/prepare_funneled.log").read_text().strip().splitlines()
    errors = [line for line in log if line.startswith("error: ")]
    # the job reads the source through the link data/raw/<source>/images
    assert errors == ["error: data/raw/funneled/images/Bob_Roe/Bob_Roe_0003.jpg: image is "
                      "300x300, LFW images are 250x250 (the crop box refers to that frame)"]
    assert "Traceback" not in "\n".join(log)
    assert not (project / "data/prepared").exists() or not any(
        p.is_file() for p in (project / "data/prepared").rglob("*"))


TINY_RUN = {"model": {"filters": [4, 6], "dense_units": [8, 8]},
            "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
            "backprop": {"cases": 3},
            "views": {"enabled": False}}


def test_workflow_runs_people_with_hostile_names_into_the_report(hostile_tree, tmp_path):
    """prepare -> split -> train -> evaluate -> figures -> activations -> both reports."""
    overlay = workflow_overlay(hostile_tree, **TINY_RUN,
                               activations={"person": "Poe, Carol"})
    project = make_project(tmp_path / "p", overlay)
    result = snakemake(project, "results/report/index.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = load_dataset(project / "data/prepared/funneled/dataset.npz")
    assert sorted(data.class_names) == NAMES
    load_split(project / "data/split/funneled/seed0.csv", data)
    image = json.loads((project / "results/activations/funneled/seed0/image.json").read_text())
    assert image["person"] == "Poe, Carol"
    predictions = pd.read_csv(project / "results/eval/funneled/seed0/predictions.csv",
                              dtype=str, keep_default_na=False)
    assert set(predictions["true"]) <= set(NAMES)
    text = (project / "results/report/index.html").read_text(encoding="utf-8")
    assert str(escape("Poe, Carol")) in text and str(escape('O\'Brien "Jr"')) in text
    report_zip = project / "snakemake_report.zip"
    result = snakemake(project, "--report", str(report_zip), "results/report/index.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(report_zip) as archive:
        manifests = [n for n in archive.namelist() if n.endswith("manifest.csv")]
        assert manifests
        table = pd.read_csv(io.BytesIO(archive.read(manifests[0])), dtype=str,
                            keep_default_na=False)
    assert set(table["person"]) == set(NAMES)


def test_dataset_class_names_survive_npz_round_trip(tmp_path):
    data = make_dataset(n_classes=2, per_class=2)
    data = Dataset(data.images, data.labels, np.array(["Poe, Carol", "Zoë;Ünicode"]),
                   data.files)
    save_dataset(tmp_path / "d.npz", data)
    assert list(load_dataset(tmp_path / "d.npz").class_names) == ["Poe, Carol", "Zoë;Ünicode"]
