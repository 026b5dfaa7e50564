"""Progress a user can see: the training's line per epoch with its estimate, and
``python -m lfwcnn progress`` on a finished, a killed, a running and a not-started training."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import logging
import re
import shutil
import subprocess
import sys
import time

import pytest
from helpers_training import tf_env, tiny_config, write_config, write_synthetic

from lfwcnn import train
from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.steps import main, run_step

EPOCHS, KILLED_AFTER = 4, 2
RUN = default_settings().data.variant  # a config without a sweep names its one run so


class Killed(Exception):
    """Stands for a kill right after a snapshot: the backup stays as a killed run leaves it."""


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def train_step(results, npz, split, seed, settings):
    out = results / "models" / RUN / f"seed{seed}"
    run_step("train_model", {
        "dataset": npz, "split_csv": split, "seed": seed, "split_seed": 0, "threads": 1,
        "backup": out / "backup", "model_file": out / "model.keras",
        "history": out / "history.csv", "info": out / "train.json"}, settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """results/ with seed 0 finished and seed 1 killed after epoch 2 of 4; the config plans
    seeds 0-2, so seed 2 is not started. Returns the folder, the config and the log lines."""
    tmp = tmp_path_factory.mktemp("progress")
    npz, split = write_synthetic(tmp)
    overlay = {**tiny_config(epochs=EPOCHS), "seeds": [0, 1, 2]}
    settings, results = default_settings(overlay), tmp / "results"
    lines, logger = Lines(), logging.getLogger("lfwcnn.train")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    real = train.save_snapshot

    def killed_after(backup, model, epoch, *args, **kwargs):
        real(backup, model, epoch, *args, **kwargs)
        if epoch == KILLED_AFTER:
            raise Killed

    try:
        train_step(results, npz, split, 0, settings)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train, "save_snapshot", killed_after)
            with pytest.raises(Killed):
                train_step(results, npz, split, 1, settings)
    finally:
        logger.removeHandler(lines)
    return results, write_config(tmp / "config.yaml", overlay), lines.lines


def progress(capsys, results, config, *options):
    status = run(main, ["progress", "--results", str(results), "--configfile", str(config),
                        *options])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out) if "--json" in options else out.splitlines()


def by_seed(rows):
    return {row["seed"]: row for row in rows}


def snapshot(results, seed):
    backup = results / "models" / RUN / f"seed{seed}" / "backup"
    return backup, backup / (backup / "latest").read_text().strip() / "state.json"


def edit_state(results, seed, change, age=None):
    """Rewrite the snapshot's state.json as another writer would have left it."""
    backup, path = snapshot(results, seed)
    state = json.loads(path.read_text())
    path.write_text(json.dumps(change(state)))
    if age is not None:
        then = time.time() - age
        os.utime(backup / "latest", (then, then))


def test_each_epoch_logs_its_line_with_the_time_left(trained):
    *_, lines = trained
    epochs = [line for line in lines if re.match(r"seed \d epoch", line)]
    # seed 1 was killed right after its second snapshot, before that epoch's line
    expected = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1)]
    number = r"\d+\.\d{3}"
    for line, (seed, epoch) in zip(epochs, expected, strict=True):
        left = "done" if epoch == EPOCHS else r"about (\d+ min )?\d+ s left"
        assert re.fullmatch(rf"seed {seed} epoch {epoch}/{EPOCHS}: loss {number} acc {number} "
                            rf"test_acc {number}, \d+\.\d s \(elapsed (\d+ min )?\d+ s, {left}\)",
                            line), line


def test_a_finished_training_shows_all_its_epochs_and_its_accuracy(trained, capsys):
    results, config, _ = trained
    row = by_seed(progress(capsys, results, config, "--json"))[0]
    folder = results / "models" / RUN / "seed0"
    info = json.loads((folder / "train.json").read_text())
    assert not (folder / "backup").exists()
    assert row["state"] == "finished" and (row["epoch"], row["epochs"]) == (EPOCHS, EPOCHS)
    assert row["test_accuracy"] == info["final"]["test_accuracy"]
    assert row["seconds"] > 0 and row["seconds_left"] is None
    [line] = [line for line in progress(capsys, results, config) if " finished " in line]
    assert line.split()[:4] == [RUN, "0", "finished", f"{EPOCHS}/{EPOCHS}"]
    assert f"{100 * info['final']['test_accuracy']:.2f} %" in line


def test_a_training_killed_half_way_shows_its_epoch_and_the_time_left(trained, capsys,
                                                                       tmp_path):
    results = shutil.copytree(trained[0], tmp_path / "results")
    # the writer's pid, here the test's own process, is alive: "running"
    running = by_seed(progress(capsys, results, trained[1], "--json"))[1]
    assert running["state"] == "running"
    assert (running["epoch"], running["epochs"]) == (KILLED_AFTER, EPOCHS)
    mean = running["seconds"] / KILLED_AFTER
    assert 0 <= running["seconds_left"] <= mean * (EPOCHS - KILLED_AFTER) + 0.1
    # the process that wrote the snapshot is gone: a killed run, its work left at its pace
    gone = subprocess.Popen(["true"])
    gone.wait()
    edit_state(results, 1, lambda state: {**state, "pid": gone.pid})
    row = by_seed(progress(capsys, results, trained[1], "--json"))[1]
    assert row["state"] == "stopped" and row["epoch"] == KILLED_AFTER
    assert row["seconds_left"] == pytest.approx(mean * (EPOCHS - KILLED_AFTER), abs=0.2)
    assert 0 < row["test_accuracy"] <= 1
    [line] = [line for line in progress(capsys, results, trained[1]) if " stopped " in line]
    assert line.split()[:4] == [RUN, "1", "stopped", f"{KILLED_AFTER}/{EPOCHS}"]
    assert line.endswith(" ago")


def test_a_planned_training_without_files_is_not_started(trained, capsys, tmp_path):
    results, config = shutil.copytree(trained[0], tmp_path / "results"), trained[1]
    # a training the config does not plan, whose step has claimed its backup folder
    (results / "models" / RUN / "seed7" / "backup").mkdir(parents=True)
    rows = progress(capsys, results, config, "--json")
    assert [(row["run"], row["seed"]) for row in rows] == [(RUN, 0), (RUN, 1), (RUN, 2), (RUN, 7)]
    assert (rows[3]["state"], rows[3]["epoch"], rows[3]["epochs"]) == ("no epoch yet", 0, None)
    assert by_seed(rows)[2] == {
        "run": RUN, "seed": 2, "state": "not started", "epoch": 0, "epochs": EPOCHS,
        "test_accuracy": None, "seconds": None, "seconds_left": None, "last_epoch_age": None}
    lines = progress(capsys, results, config)
    assert lines[0].split()[:4] == ["run", "seed", "state", "epoch"]
    assert lines[3].split() == [RUN, "2", "not", "started", f"0/{EPOCHS}"]
    assert lines[4].split() == [RUN, "7", "no", "epoch", "yet", "0/?"]


@pytest.mark.parametrize(("age", "state"), [(5, "running?"), (3600, "stopped?")])
def test_a_snapshot_of_another_host_or_an_older_version_is_judged_by_its_age(
        trained, capsys, tmp_path, age, state):
    """Without the writer's pid on this host only the snapshot's age hints at a live run; an
    older snapshot has no target either, so the config's epochs stand in."""
    results = shutil.copytree(trained[0], tmp_path / "results")
    edit_state(results, 1, lambda s: {"epoch": s["epoch"], "fingerprint": s["fingerprint"]}, age)
    row = by_seed(progress(capsys, results, trained[1], "--json"))[1]
    assert (row["state"], row["epoch"], row["epochs"]) == (state, KILLED_AFTER, EPOCHS)
    assert row["last_epoch_age"] == pytest.approx(age, abs=5)


def test_a_missing_results_folder_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lfwcnn", "progress", "--results",
                           str(tmp_path / "nowhere")], env=tf_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {tmp_path / 'nowhere'}: no such folder (give the results folder with "
        "--results)"]


def test_help_lists_the_progress_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "  progress: how far every training of a results folder is" in capsys.readouterr().out
