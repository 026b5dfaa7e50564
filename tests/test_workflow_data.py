"""The data stage through Snakemake itself: archive, URL and folder sources on synthetic LFW."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from workflow_runner import make_project, snakemake

from lfwcnn.dataset import load_dataset, load_split

DATA_TARGETS = ["data/prepared/funneled/dataset.npz", "data/split/funneled/seed0.csv",
                "data/split/funneled/seed1.csv"]


def overlay(source: str, **data) -> dict:
    return {
        "data": {"source": source, "min_images_per_person": 5, "image_size": 32, **data},
        "seeds": [0, 1],
    }


def check_outputs(project: Path, kind: str) -> None:
    data = load_dataset(project / "data/prepared/funneled/dataset.npz")
    assert data.images.shape == (30, 32, 32, 3)
    summary = json.loads((project / "data/prepared/funneled/summary.json").read_text())
    assert summary["people"] == 3 and summary["source"]["kind"] == kind
    train0, test0 = load_split(project / "data/split/funneled/seed0.csv", data)
    train1, _ = load_split(project / "data/split/funneled/seed1.csv", data)
    assert (len(train0), len(test0)) == (22, 8)
    assert not np.array_equal(train0, train1)


def test_local_archive_source(lfw_archive: Path, tmp_path: Path):
    digest = hashlib.sha256(lfw_archive.read_bytes()).hexdigest()
    project = make_project(tmp_path / "p", overlay(str(lfw_archive), sha256=digest))
    result = snakemake(project, *DATA_TARGETS)
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(project, "archive")
    assert (project / "data/raw/funneled/images/Alice_Doe").is_dir()
    again = snakemake(project, "-n", *DATA_TARGETS)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_url_source_downloads_verifies_and_prepares(lfw_archive, http_server, tmp_path):
    body = lfw_archive.read_bytes()
    http_server.route("/lfw-funneled.tgz", body)
    url = http_server.url("/lfw-funneled.tgz")
    project = make_project(
        tmp_path / "p", overlay(url, sha256=hashlib.sha256(body).hexdigest())
    )
    result = snakemake(project, *DATA_TARGETS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "data/downloads/funneled.tgz").read_bytes() == body
    check_outputs(project, "archive")
    record = json.loads((project / "data/raw/funneled/source.json").read_text())
    assert record["origin"] == url


def test_folder_source_and_bad_image_fails_cleanly(lfw_tree, tmp_path):
    project = make_project(tmp_path / "p", overlay(str(lfw_tree)))
    result = snakemake(project, *DATA_TARGETS)
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(project, "folder")

    (lfw_tree / "Bob_Roe" / "Bob_Roe_0002.jpg").write_text("not a jpeg")
    broken = make_project(tmp_path / "q", overlay(str(lfw_tree)))
    result = snakemake(broken, *DATA_TARGETS)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Bob_Roe_0002.jpg: not a readable JPEG image" in output
    # the step (script:) wrote its one line into the job's log, as a shell rule's 2>&1 did
    log = (broken / "logs/data/prepare_funneled.log").read_text()
    assert "Traceback" not in log
    [line] = [line for line in log.splitlines() if line.startswith("error:")]
    assert "Bob_Roe_0002.jpg: not a readable JPEG image" in line
    assert not (broken / "data/prepared").exists() or not any(
        (broken / "data/prepared").rglob("*.*")
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [("/no/such/lfw", "LFW source /no/such/lfw does not exist"),
     ("ftp://example.org/lfw.tgz", "unsupported URL scheme 'ftp'")],
)
def test_bad_source_stops_before_any_job(tmp_path, source, message):
    project = make_project(tmp_path / "p", overlay(source))
    result = snakemake(project, "-n")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
