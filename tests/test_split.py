"""The seeded split reproduces scikit-learn's train_test_split, and round-trips through CSV."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.dataset import Dataset, load_split, save_dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.split import split_indices
from lfwcnn.steps import main


def toy_dataset(n: int = 40, classes: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        images=rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8),
        labels=np.arange(n) % classes,
        class_names=np.array([f"P{i}" for i in range(classes)]),
        files=np.array([f"P{i % classes}/P{i % classes}_{i:04d}.jpg" for i in range(n)]),
    )


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_same_partition_as_train_test_split_on_the_arrays(seed):
    data = toy_dataset()
    train, test = split_indices(data.labels, test_fraction=0.25, seed=seed)
    x_train, x_test, *_ = train_test_split(data.images, data.labels, test_size=0.25,
                                           random_state=seed)
    np.testing.assert_array_equal(data.images[train], x_train)
    np.testing.assert_array_equal(data.images[test], x_test)


def test_paper_sizes_on_2370_images():
    train, test = split_indices(np.zeros(2370, dtype=int), test_fraction=0.25, seed=0)
    assert (len(train), len(test)) == (1777, 593)


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 32 + [1] * 8)
    train, test = split_indices(labels, test_fraction=0.25, seed=1, stratify=True)
    assert np.bincount(labels[test]).tolist() == [8, 2]


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_fraction_outside_open_interval(fraction):
    """The schema keeps it strictly between 0 and 1 (scikit-learn would read 1 as one row)."""
    with pytest.raises(LfwcnnError, match=rf"^config key split.test_fraction: {fraction} is "
                       r"(less|greater) than or equal to the (minimum of 0|maximum of 1)$"):
        default_settings({"split": {"test_fraction": fraction}})


def test_cli_round_trip_and_different_seeds_differ(tmp_path):
    data = toy_dataset()
    save_dataset(tmp_path / "d.npz", data)
    for seed in (0, 1):
        assert run(main, ["split_dataset", f"dataset={tmp_path / 'd.npz'}",
                          f"split_csv={tmp_path / f's{seed}.csv'}", f"seed={seed}"]) == 0
    lines = (tmp_path / "s0.csv").read_text().splitlines()
    assert lines[0] == "file,subset" and len(lines) == 41
    train0, test0 = load_split(tmp_path / "s0.csv", data)
    expected_train, expected_test = split_indices(data.labels, test_fraction=0.25, seed=0)
    np.testing.assert_array_equal(train0, expected_train)
    np.testing.assert_array_equal(test0, expected_test)
    _, test1 = load_split(tmp_path / "s1.csv", data)
    assert set(test0) != set(test1)


def test_cli_bad_fraction_writes_nothing(tmp_path, capsys):
    save_dataset(tmp_path / "d.npz", toy_dataset())
    (tmp_path / "bad.yaml").write_text("split: {test_fraction: 1.5}\n")
    code = run(main, ["split_dataset", f"dataset={tmp_path / 'd.npz'}",
                      f"split_csv={tmp_path / 's.csv'}", "seed=0",
                      "--configfile", str(tmp_path / "bad.yaml")])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        "error: config key split.test_fraction: 1.5 is greater than or equal to the maximum of 1"
    )
    assert not (tmp_path / "s.csv").exists()


def test_load_split_rejects_empty_subset_and_unknown_file(tmp_path):
    data = toy_dataset()
    (tmp_path / "only_train.csv").write_text("file,subset\n" + f"{data.files[0]},train\n")
    with pytest.raises(LfwcnnError, match="the test subset is empty"):
        load_split(tmp_path / "only_train.csv", data)
    (tmp_path / "stranger.csv").write_text("file,subset\nX/X_0001.jpg,test\n")
    with pytest.raises(LfwcnnError, match=r"stranger.csv:2: X/X_0001.jpg is not in the dataset"):
        load_split(tmp_path / "stranger.csv", data)
