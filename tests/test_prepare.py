"""The prepare step: scikit-learn's pixels and order, clear errors, nothing half-written."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from lfw_fixtures import make_lfw_tree
from sklearn.datasets import fetch_lfw_people

from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.dataset import load_dataset
from lfwcnn.prepare import prepare
from lfwcnn.steps import main


def data_section(**overlay):
    """The config's data section with ``overlay`` over it, as the step receives it."""
    return default_settings({"data": overlay}).data


SMALL = data_section(min_images_per_person=5, image_size=32)


def sklearn_people(lfw_root: Path, data_home: Path, min_faces: int, resize: float):
    """scikit-learn's loader on ``lfw_root`` without network (it only checks the pairs files)."""
    home = data_home / "lfw_home"
    home.mkdir(parents=True)
    (home / "lfw_funneled").symlink_to(lfw_root.resolve())
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        (home / name).write_text("")
    return fetch_lfw_people(
        data_home=data_home, min_faces_per_person=min_faces, resize=resize, color=True,
        slice_=(slice(61, 189), slice(61, 189)), download_if_missing=False,
    )


def test_equals_scikit_learn_pixels_labels_and_order(lfw_tree: Path, tmp_path: Path):
    ours = prepare(lfw_tree, data_section(min_images_per_person=5, image_size=64), workers=2).data
    theirs = sklearn_people(lfw_tree, tmp_path / "sk", min_faces=5, resize=0.5)
    np.testing.assert_array_equal(ours.images, np.round(theirs.images * 255).astype(np.uint8))
    np.testing.assert_array_equal(ours.labels, theirs.target)
    assert [n.replace("_", " ") for n in ours.class_names] == list(theirs.target_names)


def test_filters_people_and_summarises(lfw_tree: Path):
    prepared = prepare(lfw_tree, SMALL, workers=1)
    data = prepared.data
    assert data.images.shape == (30, 32, 32, 3) and data.images.dtype == np.uint8
    assert list(data.class_names) == ["Alice_Doe", "Bob_Roe", "Carol_Poe"]
    assert prepared.summary["people"] == 3 and prepared.summary["images"] == 30
    assert prepared.summary["images_per_person"] == {"Alice_Doe": 12, "Bob_Roe": 10, "Carol_Poe": 8}
    assert prepared.summary["people_in_source"] == 4
    assert sorted(np.bincount(data.labels)) == [8, 10, 12]
    for file, label in zip(data.files, data.labels, strict=True):
        assert file.startswith(str(data.class_names[label]) + "/")


def test_worker_count_does_not_change_the_result(lfw_tree: Path):
    one = prepare(lfw_tree, SMALL, workers=1)
    two = prepare(lfw_tree, SMALL, workers=2)
    np.testing.assert_array_equal(one.data.images, two.data.images)
    np.testing.assert_array_equal(one.data.files, two.data.files)
    assert one.sha256 == two.sha256


def test_non_jpeg_files_are_ignored_and_counted(lfw_tree: Path):
    (lfw_tree / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (lfw_tree / "README.txt").write_text("not a person")
    (lfw_tree / "Alice_Doe" / ".DS_Store").write_bytes(b"junk")
    (lfw_tree / "Alice_Doe" / "._Alice_Doe_0001.jpg").write_bytes(b"apple double")
    (lfw_tree / "Alice_Doe" / "notes.txt").write_text("x")
    prepared = prepare(lfw_tree, SMALL, workers=1)
    assert prepared.summary["images"] == 30
    assert prepared.summary["ignored_files"] == 5


def overlay_file(folder: Path, **data) -> str:
    """A config overlay setting ``data`` keys, for ``--configfile``."""
    path = folder / "overlay.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return str(path)


def test_cli_writes_npz_manifest_and_summary(lfw_tree: Path, tmp_path: Path):
    out = tmp_path / "out"
    main([
        "prepare_dataset", f"images={lfw_tree}", f"npz={out / 'd.npz'}",
        f"manifest={out / 'm.csv'}", f"summary={out / 's.json'}", "threads=2",
        "--configfile", overlay_file(tmp_path, min_images_per_person=5, image_size=16),
    ])
    data = load_dataset(out / "d.npz")
    assert data.images.shape == (30, 16, 16, 3)
    rows = (out / "m.csv").read_text().splitlines()
    assert rows[0] == "file,person,label,sha256" and len(rows) == 31
    file, person, label, digest = rows[1].split(",")
    assert file == data.files[0] and int(label) == data.labels[0]
    assert person == data.class_names[data.labels[0]]
    assert digest == hashlib.sha256((lfw_tree / file).read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["d.npz", "m.csv", "s.json"]


def run_cli(lfw_root: Path, out: Path, **data) -> int:
    """``python -m lfwcnn prepare_dataset`` with ``data`` keys from a config overlay."""
    args = ["prepare_dataset", f"images={lfw_root}", f"npz={out / 'd.npz'}",
            f"manifest={out / 'm.csv'}", f"summary={out / 's.json'}", "threads=2",
            "--configfile", overlay_file(out.parent, **data)]
    return run(main, args)


def break_tree(lfw_tree: Path, how: str) -> Path:
    target = lfw_tree / "Bob_Roe" / "Bob_Roe_0003.jpg"
    if how == "truncated":
        target.write_bytes(target.read_bytes()[:600])
    elif how == "not_an_image":
        target.write_text("this is not a JPEG")
    elif how == "small":
        from PIL import Image

        Image.new("RGB", (120, 120)).save(target)
    elif how == "empty_person":
        shutil.rmtree(lfw_tree / "Dan_Moe")
        (lfw_tree / "Dan_Moe").mkdir()
        return lfw_tree / "Dan_Moe"
    return target


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "not a readable JPEG image"),
        ("not_an_image", "not a readable JPEG image"),
        ("small", "image is 120x120, LFW images are 250x250 (the crop box refers to that frame)"),
        ("empty_person", "holds no JPEG images"),
    ],
)
def test_bad_images_fail_with_the_file_named(lfw_tree, tmp_path, capsys, how, message):
    culprit = break_tree(lfw_tree, how)
    out = tmp_path / "out"
    assert run_cli(lfw_tree, out, min_images_per_person=5) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert str(culprit) in err[0] and message in err[0]
    assert not out.exists() or not any(out.iterdir()), "no partial output"


def test_fewer_than_two_people_left(lfw_tree, tmp_path, capsys):
    assert run_cli(lfw_tree, tmp_path / "out", min_images_per_person=11) == 1
    err = capsys.readouterr().err
    assert "only 1 people in" in err and "at least 11 images" in err


def test_missing_or_empty_source(tmp_path, capsys):
    assert run_cli(tmp_path / "nowhere", tmp_path / "out") == 1
    assert "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(tmp_path / "empty", tmp_path / "out") == 1
    assert "holds no person folders" in capsys.readouterr().err


def test_grayscale_images_become_rgb(tmp_path):
    root = make_lfw_tree(tmp_path / "lfw", {"A_A": 2, "B_B": 2})
    from PIL import Image

    path = root / "A_A" / "A_A_0001.jpg"
    Image.open(path).convert("L").save(path)
    data = prepare(root, data_section(min_images_per_person=2, image_size=8), workers=1).data
    assert data.images.shape == (4, 8, 8, 3)


def test_a_damaged_source_record_is_one_line_and_writes_nothing(lfw_tree: Path, tmp_path, capsys):
    record = tmp_path / "source.json"
    record.write_text('{"variant": "funn')  # a write killed half-way
    out = tmp_path / "out"
    code = run(main, ["prepare_dataset", f"images={lfw_tree}", f"record={record}",
                      f"npz={out / 'd.npz'}", f"manifest={out / 'm.csv'}",
                      f"summary={out / 's.json'}"])
    assert code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {record}: cannot read")
    assert not out.exists() or not any(out.iterdir())
