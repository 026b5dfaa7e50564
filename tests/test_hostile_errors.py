"""Hostile and careless input (issue 13, points 6, 8 and 9): markup in config and data strings,
files that cannot be read, full disks, denied permissions, and temporaries of killed steps.

Each failing case asserts: non-zero exit, exactly one ``error:`` line naming the culprit, no
traceback, no output left behind and nothing else changed.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from lfw_fixtures import make_lfw_tree
from workflow_runner import ROOT, make_project, snakemake

from lfwcnn.atomic import atomic_dir, remove_dead_temporaries
from lfwcnn.cli import describe_os_error
from lfwcnn.config import read_config_file, read_step_json, step_json
from lfwcnn.dataset import Dataset, load_dataset, save_dataset, save_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.loading import load_keras_model, load_npz

# ============================================================================ 6: markup

# Closes a <script> block and adds an element whose handler marks the page as injected.
INJECTED = "</script><img src=x onerror=window.__injected=1>"
# A person folder may hold markup but no '/' (nor a control character, which prepare refuses):
# an element, and "<!--<script>", which raw inside a <script> block makes the parser skip its
# end tag.
MARKUP_PERSON = "Eve <img src=x onerror=window.__injected=2><!--<script>"
MARKUP_TITLE = f"A & B {INJECTED}"
# the source folder's path holds the same markup, as folders of a user's path may
MARKUP_FOLDER = "data</script><img src=x onerror=window.__injected=3>"
MARKUP_OVERLAY = {
    "data": {"min_images_per_person": 5, "image_size": 32},
    "seeds": [0],
    "model": {"filters": [4, 6, 8], "dense_units": [16, 8]},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    "backprop": {"cases": 2},
    "views": {"enabled": False},
    "activations": {"person": MARKUP_PERSON},
    "report": {"title": MARKUP_TITLE},
}
REPORT = "results/report/index.html"


def test_step_json_has_no_markup_and_round_trips():
    value = {"title": MARKUP_TITLE, "person": MARKUP_PERSON, "n": [1, 2.5, None], "é": "\u2028"}
    text = step_json(value)
    assert not set("<>&") & set(text)
    assert read_step_json(text, "--x") == value == json.loads(text)


def markup_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole (tiny) workflow, run once per session with markup in the title, a person's
    name and the source path, and Snakemake's own report of it (report.html); its folder."""
    base = tmp_path_factory.getbasetemp() / "markup_run"
    project = base / "project"
    if (project / "report.html").is_file():
        return project
    tree = make_lfw_tree(base / MARKUP_FOLDER / "lfw",
                         {"Alice_Doe": 8, MARKUP_PERSON: 8, "Bob_Roe": 6})
    overlay = {**MARKUP_OVERLAY, "data": {**MARKUP_OVERLAY["data"], "source": str(tree)}}
    make_project(project, overlay)
    result = snakemake(project, REPORT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    result = snakemake(project, "--report", "report.html", REPORT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return project


def test_markup_in_config_and_names_stays_out_of_snakemakes_report(tmp_path_factory):
    project = markup_run(tmp_path_factory)
    text = (project / "report.html").read_text(encoding="utf-8")
    for raw in (INJECTED, MARKUP_PERSON, "<img src=x", "<!--<script>",
                MARKUP_FOLDER):
        assert raw not in text, raw
    # the values are there, as JSON escapes (the page shows them as text)
    for marker in ("window.__injected=1", "window.__injected=2", "window.__injected=3"):
        assert marker in text, marker
    # the steps got the strings themselves, not their escapes
    record = json.loads((project / "results/activations/funneled/seed0/image.json")
                        .read_text(encoding="utf-8"))
    assert record["person"] == MARKUP_PERSON
    assert f"<h1>{html.escape(MARKUP_TITLE, quote=False)}</h1>" in (project / REPORT).read_text(
        encoding="utf-8")


# ============================================================================ 8: one line

STEP_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def python_m(module: str, *args: str, prefix: tuple[str, ...] = (),
             **kwargs) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` with this checkout's lfwcnn; output captured."""
    return subprocess.run([*prefix, sys.executable, "-m", module, *args],
                          env=STEP_ENV, capture_output=True, text=True, timeout=300,
                          check=False, **kwargs)


def step(module: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m lfwcnn.<module> ARGS``: a module with a command line of its own."""
    return python_m(f"lfwcnn.{module}", *args, **kwargs)


def pipeline_step(name: str, *values: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m lfwcnn STEP NAME=VALUE...``, the step as its rule runs it."""
    return python_m("lfwcnn", name, *values, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, *culprits: str) -> str:
    """The step failed with exactly one ``error:`` line naming every culprit, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    for culprit in culprits:
        assert culprit in errors[0], (culprit, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders), to see what changed."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def tiny_dataset(path: Path) -> Dataset:
    rng = np.random.default_rng(0)
    data = Dataset(images=rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8),
                   labels=np.repeat([0, 1, 2], 4), class_names=np.array(["A_a", "B_b", "C_c"]),
                   files=np.array([f"P/P_{i:04d}.jpg" for i in range(12)]))
    save_dataset(path, data)
    return data


def broken_copies(good: Path, folder: Path) -> dict[str, Path]:
    """Damaged versions of a zip-based file (.npz, .keras): each a different failure."""
    body = good.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    damaged = bytearray(body)
    middle = len(body) // 2
    damaged[middle:middle + 64] = bytes(64)  # a member's bytes zeroed: CRC or format error
    cases = {"truncated": body[: len(body) // 3], "empty": b"", "text": b"<html>login</html>\n",
             "zeroed": bytes(damaged), "end_cut": body[:-10]}
    paths = {}
    for name, content in cases.items():
        paths[name] = folder / f"{name}{good.suffix}"
        paths[name].write_bytes(content)
    return paths


def test_every_damaged_npz_is_one_line_naming_it(tmp_path: Path):
    good = tmp_path / "good.npz"
    tiny_dataset(good)
    cases = broken_copies(good, tmp_path / "bad")
    with zipfile.ZipFile(tmp_path / "bad" / "foreign.npz", "w") as archive:
        archive.writestr("other.npy", b"not an array")
    cases["foreign"] = tmp_path / "bad" / "foreign.npz"
    np.savez(tmp_path / "bad" / "missing.npz", images=np.zeros((1, 2, 2, 3), np.uint8))
    cases["missing"] = tmp_path / "bad" / "missing.npz"
    cases["absent"] = tmp_path / "bad" / "absent.npz"
    for name, path in cases.items():
        with pytest.raises(LfwcnnError) as caught:
            load_dataset(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value), name
        with pytest.raises(LfwcnnError, match=f"^{re.escape(str(path))}: "):
            load_npz(path, ["x"])
    before = snapshot(tmp_path)
    result = pipeline_step("split_dataset", f"dataset={cases['truncated']}",
                           f"split_csv={tmp_path / 'split.csv'}", "seed=0")
    one_error_line(result, str(cases["truncated"]), "cannot read as prepared dataset")
    assert snapshot(tmp_path) == before


def test_every_model_keras_refuses_is_one_line_naming_it(tmp_path: Path):
    import keras

    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(3, activation="softmax")]).save(good)
    cases = broken_copies(good, tmp_path / "bad")
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "bad" / "config.keras",
                                                          "w") as target:
        for item in source.namelist():  # a config Keras cannot build a model from
            target.writestr(item, b'{"class_name": 3}' if item == "config.json"
                            else source.read(item))
    cases["config"] = tmp_path / "bad" / "config.keras"
    cases["folder"] = tmp_path / "bad" / "folder.keras"
    cases["folder"].mkdir()
    for name, path in cases.items():
        with pytest.raises(LfwcnnError) as caught:
            load_keras_model(path)
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value), name

    tiny_dataset(tmp_path / "dataset.npz")
    data = load_dataset(tmp_path / "dataset.npz")
    save_split(tmp_path / "split.csv", data.files, np.arange(8), np.arange(8, 12))
    before = snapshot(tmp_path)
    out = tmp_path / "eval"
    result = pipeline_step(
        "evaluate_model", f"dataset={tmp_path / 'dataset.npz'}",
        f"split_csv={tmp_path / 'split.csv'}", f"model_file={cases['config']}",
        f"metrics={out / 'metrics.json'}", f"per_class={out / 'per_class.csv'}",
        f"confusion={out / 'confusion.csv'}", f"figure={out / 'confusion.png'}",
        f"predictions={out / 'predictions.csv'}")
    one_error_line(result, str(cases["config"]), "Keras cannot load this model")
    assert snapshot(tmp_path) == before


def test_yaml_syntax_error_in_the_config_names_file_and_line(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("data:\n  variant: funneled\n  crop: [1, 2\nseeds: [0]\n")
    with pytest.raises(LfwcnnError, match=rf"^{broken}:4:\d+: not valid YAML \("):
        read_config_file(broken)
    broken.write_text("- a list\n")
    with pytest.raises(LfwcnnError, match="must map keys to values, got list"):
        read_config_file(broken)

    project = make_project(tmp_path / "p", {"seeds": [0]})
    config = project / "config" / "config.yaml"
    config.write_text(config.read_text() + "train:\n\tepochs: 3\n")
    before = snapshot(project)
    result = snakemake(project, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    lines = [line for line in output.splitlines() if "not valid YAML" in line]
    assert len(lines) == 1 and re.match(r"config/config\.yaml:\d+:\d+: ", lines[0]), output
    assert {k: v for k, v in snapshot(project).items() if not k.startswith(".snakemake")} \
        == {k: v for k, v in before.items() if not k.startswith(".snakemake")}


def test_a_broken_overlay_stops_snakemake_before_any_job(tmp_path: Path):
    """An overlay given with --configfile is read by Snakemake itself, before the workflow
    runs: its message names neither file nor line (a known limit, config/README.md), but the
    run stops at once, with no traceback and nothing written; ``python -m lfwcnn.config``
    names both."""
    project = make_project(tmp_path / "p", {"seeds": [0]})
    (project / "config" / "test.yaml").write_text("seeds: [0,\n")
    result = snakemake(project, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "Config file is not valid JSON or YAML" in output
    assert not (project / "results").exists() and not (project / "data").exists()
    overlay = project / "config" / "test.yaml"
    checked = step("config", str(project / "config" / "config.yaml"), str(overlay))
    one_error_line(checked, f"{overlay}:2:1: not valid YAML (")


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs filled up (root may mount one); skipped where mounting is refused."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        filler = folder / "users_file.bin"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"x" * 4096)
                handle.flush()
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_disk_full_is_one_line_naming_the_output_and_leaves_nothing(tmp_path, full_disk):
    data = tiny_dataset(tmp_path / "dataset.npz")
    out = full_disk / "split" / "seed0.csv"
    (full_disk / "split").mkdir(exist_ok=True)
    before = snapshot(full_disk)
    result = pipeline_step("split_dataset", f"dataset={tmp_path / 'dataset.npz'}",
                           f"split_csv={out}", "seed=0")
    one_error_line(result, f"{out}: cannot write (No space left on device)")
    assert snapshot(full_disk) == before  # no temporary, no output, the user's file intact
    # the same through the writers of arrays (np.savez into the temporary)
    with pytest.raises(LfwcnnError, match=rf"^{full_disk / 'd.npz'}: cannot write \("):
        save_dataset(full_disk / "d.npz", data)
    assert snapshot(full_disk) == before


def _file_size_limit(limit: int):
    """For a child process: writes past ``limit`` bytes fail with EFBIG, as on a full disk."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_that_fails_midway_is_one_line_and_leaves_no_temporary(tmp_path: Path):
    """Wherever a tmpfs cannot be mounted: the kernel refuses writes past a size limit."""
    tiny_dataset(tmp_path / "dataset.npz")
    out = tmp_path / "out" / "dataset.npz"
    before = snapshot(tmp_path)
    code = ("import sys; from lfwcnn.cli import run; from lfwcnn.dataset import load_dataset,"
            " save_dataset; sys.exit(run(lambda argv: save_dataset(sys.argv[2],"
            " load_dataset(sys.argv[1])), []))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dataset.npz"), str(out)],
                            env=STEP_ENV, capture_output=True, text=True, timeout=120,
                            check=False, preexec_fn=_file_size_limit(1024))
    one_error_line(result, f"{out}: cannot write (File too large)")
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "out"} == before


def permissions_hold() -> tuple[str, ...]:
    """A command prefix under which file permissions hold: root drops its power to bypass
    them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) for the child, as an ordinary user has."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to hold")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_permission_denied_is_one_line_naming_the_file(tmp_path: Path):
    folder, user = tmp_path, {"prefix": permissions_hold()}
    tiny_dataset(folder / "dataset.npz")
    (folder / "dataset.npz").chmod(0o000)
    result = pipeline_step("split_dataset", f"dataset={folder / 'dataset.npz'}",
                           f"split_csv={folder / 'split.csv'}", "seed=0", **user)
    one_error_line(result, f"{folder / 'dataset.npz'}: ", "Permission denied")
    (folder / "dataset.npz").chmod(0o644)

    locked = folder / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    before = snapshot(folder)
    result = pipeline_step("split_dataset", f"dataset={folder / 'dataset.npz'}",
                           f"split_csv={locked / 'split.csv'}", "seed=0", **user)
    one_error_line(result, f"{locked / 'split.csv'}: cannot write (", "Permission denied")
    assert snapshot(folder) == before
    # the last line of defence: an OSError no step turned into a message
    assert describe_os_error(PermissionError(13, "Permission denied", "/x/y")) \
        == "/x/y: Permission denied"


# ============================================================================ 9: temporaries

KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from lfwcnn.atomic import atomic_dir, atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half a table")
    with atomic_dir(sys.argv[2]) as folder:
        (folder / "half.txt").write_text("half a folder")
        if len(sys.argv) > 3:  # a live writer: hold on until told to stop
            print("ready", flush=True)
            sys.stdin.read()
            sys.exit(0)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def start_writer(out: Path, folder: Path, *, live: bool) -> subprocess.Popen:
    """A step writing ``out`` and ``folder`` through atomic.py: killed midway, or kept alive."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(out), str(folder), *(["live"] * live)],
        env=STEP_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if live:
        assert process.stdout.readline().strip() == "ready"
    else:
        assert process.wait(timeout=60) == -signal.SIGKILL
    return process


def test_temporaries_of_a_killed_step_go_when_it_runs_again_and_live_ones_stay(tmp_path):
    tiny_dataset(tmp_path / "dataset.npz")
    out_dir = tmp_path / "split"
    out = out_dir / "seed0.csv"
    start_writer(out, out_dir / "folder", live=False)
    dead = temporaries(out_dir)
    assert len(dead) == 2, dead  # the table's and the folder's, both left by the kill
    foreign = out_dir / ".seed0.csv.otherhost-1.abcd1234.part"  # another host's: unknown
    foreign.write_text("another machine's")
    users = out_dir / ".seed0.csv.mine.part.txt"  # not of our form
    users.write_text("a user's file")
    live = start_writer(out, out_dir / "folder", live=True)
    alive = sorted(set(temporaries(out_dir)) - set(dead) - {foreign.name})
    assert len(alive) == 2, alive
    try:
        result = pipeline_step("split_dataset", f"dataset={tmp_path / 'dataset.npz'}",
                               f"split_csv={out}", "seed=0")
        assert result.returncode == 0, result.stderr
        assert out.read_text().startswith("file,subset\n")
        # the dead step's table temporary is gone; the live run's and the foreign host's stay
        left = temporaries(out_dir)
        assert foreign.name in left and users.exists()
        assert not any(name in left for name in dead if name.startswith(".seed0.csv."))
        assert all(name in left for name in alive)
        # the next writer of the folder removes the dead folder temporary too, not the live one
        with atomic_dir(out_dir / "folder") as folder:
            (folder / "whole.txt").write_text("done")
        assert set(temporaries(out_dir)) == set(alive) | {foreign.name}
    finally:
        live.communicate("", timeout=60)
    assert live.returncode == 0
    assert temporaries(out_dir) == [foreign.name]  # the live run finished and cleaned up


def test_remove_dead_temporaries_touches_only_dead_ones_of_this_output(tmp_path):
    final = tmp_path / "a.csv"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(done.stdout)
    host = socket.gethostname()
    host = re.sub(r"[^A-Za-z0-9]", "-", host)
    names = {
        "dead": f".a.csv.{host}-{dead_pid}.x1y2z3ab.part",
        "dead_dir": f".a.csv.{host}-{dead_pid}.q1w2e3r4.part",
        "mine": f".a.csv.{host}-{os.getpid()}.abcdefgh.part",
        "other_output": f".a.csv.bak.{host}-{dead_pid}.abcdefgh.part",
        "old_style": ".a.csv.k2j3h4g5.part",
    }
    for key, name in names.items():
        if key == "dead_dir":
            (tmp_path / name).mkdir()
            (tmp_path / name / "inner.txt").write_text("x")
        else:
            (tmp_path / name).write_text(key)
    removed = remove_dead_temporaries(final)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["dead_dir"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["mine"], names["other_output"], names["old_style"]])


def test_workflow_run_removes_temporaries_a_killed_job_left(lfw_tree, tmp_path):
    project = make_project(tmp_path / "p", {
        "data": {"source": str(lfw_tree), "min_images_per_person": 5, "image_size": 32},
        "seeds": [0]})
    split_dir = project / "data" / "split" / "funneled"
    split_dir.mkdir(parents=True)
    start_writer(split_dir / "seed0.csv", split_dir / "scratch", live=False)
    assert len(temporaries(split_dir)) == 2
    result = snakemake(project, "data/split/funneled/seed0.csv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the split job removed the dead temporary of its output; the other is no output's of
    # this run (a dead folder temporary waits for the next writer of that folder)
    assert [name for name in temporaries(split_dir) if name.startswith(".seed0.csv.")] == []
    assert (split_dir / "seed0.csv").read_text().startswith("file,subset\n")
