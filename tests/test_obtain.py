"""Obtaining LFW from a folder (linked, untouched) or a local archive (checked, unpacked)."""

import hashlib
import json
from pathlib import Path

import pytest

from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.errors import LfwcnnError
from lfwcnn.obtain import obtain
from lfwcnn.steps import main, run_step


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_is_linked_not_copied(lfw_tree: Path, tmp_path: Path):
    images = tmp_path / "raw" / "images"
    record = obtain(str(lfw_tree), variant="deepfunneled", images=images)
    assert images.is_symlink() and images.resolve() == lfw_tree.resolve()
    assert record == {
        "variant": "deepfunneled", "source": str(lfw_tree), "kind": "folder",
        "path": str(lfw_tree.resolve()), "people_folders": 4,
        "note_file": None, "note": None, "approximate": False,
    }


def test_archive_is_verified_and_unpacked_to_the_person_folders(lfw_archive, tmp_path):
    images = tmp_path / "raw" / "images"
    record = obtain(str(lfw_archive), variant="funneled", images=images,
                    sha256=sha256(lfw_archive))
    assert sorted(p.name for p in images.iterdir()) == ["Alice_Doe", "Bob_Roe", "Carol_Poe",
                                                        "Dan_Moe"]
    assert record["sha256"] == sha256(lfw_archive) and record["checksum_verified"]
    assert record["matches_published"] is False  # a synthetic archive is not lfw-funneled.tgz
    assert [p.name for p in images.parent.iterdir()] == ["images"], "no scratch left behind"


def test_wrong_checksum_leaves_nothing(lfw_archive, tmp_path):
    images = tmp_path / "raw" / "images"
    with pytest.raises(LfwcnnError, match=r"checksum mismatch for .*lfw-funneled.tgz: expected"):
        obtain(str(lfw_archive), variant="funneled", images=images, sha256="0" * 64)
    assert not images.exists() and not images.is_symlink()


def test_existing_target_is_never_replaced(lfw_tree, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "mine.txt").write_text("keep me")
    with pytest.raises(LfwcnnError, match="already exists"):
        obtain(str(lfw_tree), variant="funneled", images=images)
    assert (images / "mine.txt").read_text() == "keep me"


def obtain_step(tmp_path: Path, source: str, **values) -> int:
    """``python -m lfwcnn obtain_lfw`` of ``source`` into ``tmp_path``, as its rule runs it."""
    config = tmp_path / "overlay.yaml"
    config.write_text(json.dumps({"data": {"variant": "funneled", "source": source}}))
    return run(main, ["obtain_lfw", f"images={tmp_path / 'i'}", f"record={tmp_path / 'r.json'}",
                      *(f"{name}={value}" for name, value in values.items()),
                      "--configfile", str(config)])


def test_cli_missing_and_empty_sources(tmp_path, capsys):
    assert obtain_step(tmp_path, str(tmp_path / "absent")) == 1
    missing = tmp_path / "absent"
    assert capsys.readouterr().err.strip() == f"error: LFW source {missing} does not exist"
    (tmp_path / "empty").mkdir()
    assert obtain_step(tmp_path, str(tmp_path / "empty")) == 1
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "i").exists()


def test_cli_writes_the_record(lfw_archive, tmp_path):
    """A downloaded archive is recorded with the URL it came from."""
    assert obtain_step(tmp_path, "http://example/lfw.tgz", archive=lfw_archive) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["origin"] == "http://example/lfw.tgz"
    assert record["sha256"] == sha256(lfw_archive)


def test_a_url_source_without_its_archive_is_one_error(tmp_path):
    with pytest.raises(LfwcnnError, match="^LFW source http://example/lfw.tgz: the archive is "
                                          "missing$"):
        run_step("obtain_lfw", {"images": tmp_path / "i", "record": tmp_path / "r.json"},
                 default_settings({"data": {"source": "http://example/lfw.tgz"}}))
    assert not (tmp_path / "i").exists() and not (tmp_path / "r.json").exists()


def test_a_folder_that_calls_itself_an_approximation_is_recorded_as_one(lfw_tree, tmp_path):
    (lfw_tree / "SOURCE.txt").write_text("LFW, funneled variant -- APPROXIMATION, thumbnails\n"
                                         "upscaled from 150 px\n")
    record = obtain(str(lfw_tree), variant="funneled", images=tmp_path / "a" / "images")
    assert record["approximate"] is True
    assert record["note"] == "LFW, funneled variant -- APPROXIMATION, thumbnails"
    assert record["note_file"] == str((lfw_tree / "SOURCE.txt").resolve())

    # "approximately" is not "approximation": the real LFW's note gives its size that way
    (lfw_tree / "SOURCE.txt").write_text(
        "LFW deep-funneled, complete\nSize: approximately 111 MiB\n")
    record = obtain(str(lfw_tree), variant="deepfunneled", images=tmp_path / "b" / "images")
    assert record["approximate"] is False and record["note"] == "LFW deep-funneled, complete"


def test_a_folder_without_a_note_and_an_archive_are_not_approximations(lfw_tree, lfw_archive,
                                                                          tmp_path):
    record = obtain(str(lfw_tree), variant="funneled", images=tmp_path / "a" / "images")
    assert record["approximate"] is False and record["note"] is None
    record = obtain(str(lfw_archive), variant="funneled", images=tmp_path / "b" / "images")
    assert record["approximate"] is False
