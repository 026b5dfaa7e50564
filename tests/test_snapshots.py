"""The snapshot format on its own (no TensorFlow): what is resumed, ignored or refused."""

import json

import numpy as np
import pytest
from test_steps import changed  # another value of the same kind

from lfwcnn.config import default_settings
from lfwcnn.dataset import Dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import LATEST
from lfwcnn.run_record import HISTORY_COLUMNS, history_csv, read_history_csv
from lfwcnn.settings import freeze
from lfwcnn.snapshots import data_fingerprint, load_snapshot, resume_fingerprint

FINGERPRINT = {"data": "abc", "seed": 0}


def rows(epochs: int) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5, "test_loss": 2.0,
             "test_accuracy": 0.25, "seconds": 0.5} for e in range(1, epochs + 1)]


def write_snapshot(backup, epoch: int, fingerprint=FINGERPRINT, history=None):
    folder = backup / f"epoch-{epoch:04d}"
    folder.mkdir(parents=True)
    (folder / "state.weights.h5").write_bytes(b"weights")
    (folder / "history.csv").write_text(history_csv(rows(epoch) if history is None else history))
    (folder / "state.json").write_text(json.dumps({"epoch": epoch, "fingerprint": fingerprint}))
    (backup / LATEST).write_text(folder.name + "\n")
    return folder


def test_the_history_round_trips_with_its_columns(tmp_path):
    (tmp_path / "h.csv").write_text(history_csv(rows(3)))
    assert read_history_csv(tmp_path / "h.csv") == rows(3)
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == ",".join(HISTORY_COLUMNS)


def test_the_snapshot_of_this_run_is_resumed(tmp_path):
    folder = write_snapshot(tmp_path, 2)
    snapshot = load_snapshot(tmp_path, FINGERPRINT, epochs=5)
    assert (snapshot.epoch, snapshot.weights, snapshot.history) == (
        2, folder / "state.weights.h5", rows(2))
    assert load_snapshot(tmp_path / "none", FINGERPRINT, epochs=5) is None  # no pointer


@pytest.mark.parametrize(("fingerprint", "epochs", "history"), [
    ({"data": "other", "seed": 0}, 5, None),  # other data or settings
    (FINGERPRINT, 1, None),  # more epochs done than this run asks for
    (FINGERPRINT, 5, rows(1)),  # a history that does not fit the epoch
])
def test_a_snapshot_of_another_run_is_ignored(tmp_path, fingerprint, epochs, history):
    write_snapshot(tmp_path, 2, fingerprint, history)
    assert load_snapshot(tmp_path, FINGERPRINT, epochs=epochs) is None


@pytest.mark.parametrize("damage", ["state", "pointer"])
def test_a_damaged_backup_is_one_line_naming_it(tmp_path, damage):
    folder = write_snapshot(tmp_path, 2)
    if damage == "state":
        (folder / "state.json").write_text("{not json")
    else:
        (tmp_path / LATEST).write_text("../elsewhere\n")
    with pytest.raises(LfwcnnError, match=f"is unreadable .*; delete {tmp_path} to start over"):
        load_snapshot(tmp_path, FINGERPRINT, epochs=5)


def test_the_data_fingerprint_changes_with_any_array_or_index():
    images, labels = np.zeros((4, 2, 2, 3), np.uint8), np.arange(4)
    train, test = np.array([0, 1, 2]), np.array([3])
    base = data_fingerprint(images, labels, train, test)
    assert base == data_fingerprint(images.copy(), labels, train, test)
    assert base != data_fingerprint(images, labels, np.array([0, 1, 3]), np.array([2]))
    assert base != data_fingerprint(images + 1, labels, train, test)


def test_the_resume_fingerprint_covers_every_setting_but_epochs_device_and_per_gpu():
    """Derived from the whole sections: a key added to the config is covered with no change
    here or in lfwcnn.snapshots, and only epochs, the device and the trainings per GPU may
    differ on resume."""
    config = default_settings()
    data = Dataset(images=np.zeros((4, 2, 2, 3), np.uint8), labels=np.array([0, 1, 0, 1]),
                   class_names=np.array(["A", "B"]), files=np.array(["A/1", "B/1", "A/2", "B/2"]))
    split = (np.array([0, 1, 2]), np.array([3]))

    def fingerprint(seed=0, **sections):
        plain = {name: getattr(config, name).as_dict() for name in ("model", "train")}
        for name, change in sections.items():
            plain[name].update(change)
        return json.loads(json.dumps(resume_fingerprint(
            data, *split, seed=seed, model=freeze(plain["model"], "model"),
            train=freeze(plain["train"], "train"))))  # as state.json holds it

    base = fingerprint()
    assert base == fingerprint() and fingerprint(seed=1) != base
    for name in ("model", "train"):
        for key, value in getattr(config, name).as_dict().items():
            other = fingerprint(**{name: {key: changed(value)}})
            if (name, key) in {("train", "epochs"), ("train", "device"), ("train", "per_gpu")}:
                assert other == base, key
            else:
                assert other != base, key
