"""Downloads against a real local HTTP server, archive extraction, and source classification."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from lfw_fixtures import make_lfw_archive

import lfwcnn.download as download_module
from lfwcnn.config import SCHEMA, default_settings
from lfwcnn.download import download, extract_archive, file_digests, verify_checksum
from lfwcnn.errors import LfwcnnError
from lfwcnn.sources import ARCHIVES, classify_source

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = {"backoff": 0.0, "progress": False}


def digests(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def leftovers(folder: Path) -> list[str]:
    """Temporary ``.part`` files or folders that a failed step must not leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# --------------------------------------------------------------------------- download


def test_download_writes_verified_file(http_server, lfw_archive, tmp_path):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes())
    dest = tmp_path / "out" / "lfw.tgz"

    result = download(url, dest, **digests(lfw_archive), **FAST)

    assert result == dest
    assert dest.read_bytes() == lfw_archive.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lfw.tgz"]
    assert http_server.hits("/lfw.tgz") == 1


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_wrong_checksum_fails_and_leaves_nothing(http_server, lfw_archive, tmp_path, algorithm):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes())
    dest = tmp_path / "out" / "lfw.tgz"
    wrong = "0" * (64 if algorithm == "sha256" else 32)

    with pytest.raises(LfwcnnError) as caught:
        download(url, dest, **{algorithm: wrong}, **FAST)

    message = str(caught.value)
    assert message == (
        f"checksum mismatch for {url}: expected {algorithm} {wrong}, "
        f"got {digests(lfw_archive)[algorithm]}"
    )
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_404_fails_at_once(http_server, tmp_path):
    url = http_server.route("/missing.tgz", b"gone", status=404)

    with pytest.raises(LfwcnnError, match=r"failed: HTTP 404") as caught:
        download(url, tmp_path / "x.tgz", retries=3, **FAST)

    assert url in str(caught.value)
    assert http_server.hits("/missing.tgz") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried(http_server, lfw_archive, tmp_path, status):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes(), fail_times=2, fail_status=status)
    dest = tmp_path / "lfw.tgz"

    download(url, dest, retries=3, **digests(lfw_archive), **FAST)

    assert dest.read_bytes() == lfw_archive.read_bytes()
    assert http_server.hits("/lfw.tgz") == 3


def test_retries_are_bounded(http_server, tmp_path):
    url = http_server.route("/lfw.tgz", b"data", fail_times=100, fail_status=500)

    with pytest.raises(LfwcnnError) as caught:
        download(url, tmp_path / "lfw.tgz", retries=2, **FAST)

    assert str(caught.value).startswith(f"download of {url} failed after 3 attempts: HTTP 500")
    assert http_server.hits("/lfw.tgz") == 3
    assert list(tmp_path.iterdir()) == []


def test_backoff_doubles_between_attempts(http_server, tmp_path, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", slept.append)
    url = http_server.route("/lfw.tgz", b"data", fail_times=100, fail_status=503)

    with pytest.raises(LfwcnnError, match="failed after 4 attempts"):
        download(url, tmp_path / "lfw.tgz", retries=3, backoff=0.5, progress=False)

    assert slept == [0.5, 1.0, 2.0]


def test_dropped_connection_once_is_retried(http_server, lfw_archive, tmp_path):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes(), drop_times=1)
    dest = tmp_path / "lfw.tgz"

    download(url, dest, **digests(lfw_archive), **FAST)

    assert dest.read_bytes() == lfw_archive.read_bytes()
    assert http_server.hits("/lfw.tgz") == 2


def test_dropped_connection_always_fails_clearly(http_server, lfw_archive, tmp_path):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes(), drop_times=None)
    dest = tmp_path / "lfw.tgz"

    with pytest.raises(LfwcnnError) as caught:
        download(url, dest, retries=2, **digests(lfw_archive), **FAST)

    size = lfw_archive.stat().st_size
    assert str(caught.value) == (
        f"download of {url} failed after 3 attempts: "
        f"connection dropped after {size // 2} of {size} bytes"
    )
    assert http_server.hits("/lfw.tgz") == 3
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_refused_connection_is_retried_then_reported(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/lfw.tgz"

    with pytest.raises(LfwcnnError) as caught:
        download(url, tmp_path / "lfw.tgz", retries=1, **FAST)

    assert str(caught.value) == (
        f"download of {url} failed after 2 attempts: cannot connect: Connection refused"
    )
    assert list(tmp_path.iterdir()) == []


def test_timeout_is_retried(http_server, tmp_path):
    payload = gzip.compress(b"payload")
    url = http_server.route("/slow.tgz", payload, stall_times=1, stall_s=1.5)
    dest = tmp_path / "slow.tgz"

    download(url, dest, timeout=0.3, md5=hashlib.md5(payload).hexdigest(), **FAST)

    assert dest.read_bytes() == payload
    assert http_server.hits("/slow.tgz") == 2


def test_existing_matching_file_is_reused(http_server, lfw_archive, tmp_path, caplog):
    url = http_server.route("/lfw.tgz", b"must not be fetched")
    dest = tmp_path / "lfw.tgz"
    dest.write_bytes(lfw_archive.read_bytes())

    with caplog.at_level("INFO", logger="lfwcnn.download"):
        result = download(url, dest, **digests(lfw_archive), **FAST)

    assert result == dest
    assert dest.read_bytes() == lfw_archive.read_bytes()
    assert http_server.hits("/lfw.tgz") == 0
    assert "reusing existing" in caplog.text


def test_existing_mismatching_file_is_left_alone(http_server, lfw_archive, tmp_path):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes())
    dest = tmp_path / "lfw.tgz"
    dest.write_bytes(b"the user's own file")

    with pytest.raises(LfwcnnError, match=r"existing file .*lfw\.tgz does not match"):
        download(url, dest, sha256=digests(lfw_archive)["sha256"], **FAST)

    assert dest.read_bytes() == b"the user's own file"
    assert http_server.hits("/lfw.tgz") == 0


def test_bad_backoff_fails_before_the_network(http_server, tmp_path):
    url = http_server.route("/lfw.tgz", b"data")

    with pytest.raises(LfwcnnError, match=re.escape("backoff must be >= 0 seconds, got -1")):
        download(url, tmp_path / "lfw.tgz", **{**FAST, "backoff": -1})

    assert http_server.hits("/lfw.tgz") == 0


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"sha256": "abc"}, "config key data.sha256: 'abc' does not match"),
        ({"md5": "z" * 32}, f"config key data.md5: '{'z' * 32}' does not match"),
        ({"download": {"retries": -1}}, "data.download.retries: -1 is less than the minimum of 0"),
        ({"download": {"timeout_s": 0}}, "data.download.timeout_s: 0 is less than or equal"),
        ({"download": {"deadline_s": -5}}, "data.download.deadline_s: -5 is less than or equal"),
    ],
)
def test_bad_settings_fail_before_the_network(http_server, tmp_path, data, fragment):
    """The schema checks what download() is given (the digests and data.download)."""
    url = http_server.route("/lfw.tgz", b"data")

    done = run_cli(tmp_path / "lfw.tgz", source=url, **data)

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert fragment in done.stderr.splitlines()[-1]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        done.stderr.splitlines()[-1]
    ]
    assert http_server.hits("/lfw.tgz") == 0
    assert not (tmp_path / "lfw.tgz").exists()


def test_progress_bar_can_be_turned_off(http_server, tmp_path, capsys):
    url = http_server.route("/lfw.tgz", b"\x1f\x8b" + b"x" * 5000)  # gzip magic, then filler

    download(url, tmp_path / "on.tgz", backoff=0.0, progress=True)
    shown = capsys.readouterr().err
    download(url, tmp_path / "off.tgz", backoff=0.0, progress=False)
    hidden = capsys.readouterr().err

    assert "on.tgz" in shown and "100%" in shown
    assert hidden == ""


def test_verify_checksum(lfw_archive):
    expected = digests(lfw_archive)
    verify_checksum(lfw_archive, **expected)

    with pytest.raises(LfwcnnError, match=r"checksum mismatch for .*lfw-funneled\.tgz: .*md5"):
        verify_checksum(lfw_archive, sha256=expected["sha256"], md5="f" * 32)
    with pytest.raises(LfwcnnError, match=r"cannot read .*nope\.tgz"):
        verify_checksum(lfw_archive.parent / "nope.tgz", md5="f" * 32)


def test_file_digests_match_hashlib(lfw_archive, monkeypatch):
    monkeypatch.setattr(download_module, "CHUNK_SIZE", 1000)  # many chunks, one ragged
    assert file_digests(lfw_archive) == digests(lfw_archive)


# --------------------------------------------------------------------------- command line


def run_cli(archive: Path, **data) -> subprocess.CompletedProcess:
    """``python -m lfwcnn download_lfw archive=ARCHIVE`` with ``data`` keys in an overlay."""
    overlay = archive.parent / "overlay.yaml"
    overlay.write_text(json.dumps({"data": data}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "lfwcnn", "download_lfw", f"archive={archive}",
         "--configfile", str(overlay)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_reports_one_error_line(http_server, tmp_path):
    url = http_server.route("/missing.tgz", b"", status=404)

    done = run_cli(tmp_path / "x.tgz", source=url)

    assert done.returncode == 1
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [done.stderr.splitlines()[-1]]
    assert url in error_lines[0] and "404" in error_lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.tgz").exists()


def test_cli_downloads_and_verifies(http_server, lfw_archive, tmp_path):
    url = http_server.route("/lfw.tgz", lfw_archive.read_bytes())
    dest = tmp_path / "lfw.tgz"
    expected = digests(lfw_archive)

    done = run_cli(dest, source=url, sha256=expected["sha256"], md5=expected["md5"],
                   download={"retries": 1, "timeout_s": 5})

    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == lfw_archive.read_bytes()


# --------------------------------------------------------------------------- extraction


def test_extract_returns_inner_folder(lfw_archive, lfw_tree, tmp_path):
    dest = tmp_path / "extracted"

    inner = extract_archive(lfw_archive, dest)

    assert inner == dest / "lfw_funneled"
    assert sorted(p.name for p in inner.iterdir()) == sorted(p.name for p in lfw_tree.iterdir())
    assert len(list((inner / "Alice_Doe").glob("Alice_Doe_*.jpg"))) == 12
    sample = Path("Dan_Moe") / "Dan_Moe_0003.jpg"
    assert (inner / sample).read_bytes() == (lfw_tree / sample).read_bytes()
    assert leftovers(tmp_path) == []


def test_extract_without_single_top_folder_returns_target(lfw_tree, tmp_path):
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:
        for person in sorted(lfw_tree.iterdir()):
            tar.add(person, arcname=person.name)

    assert extract_archive(archive, tmp_path / "flat") == tmp_path / "flat"
    assert (tmp_path / "flat" / "Bob_Roe" / "Bob_Roe_0010.jpg").is_file()


def test_extract_refuses_to_overwrite(lfw_archive, tmp_path):
    dest = tmp_path / "extracted"
    (dest / "mine").mkdir(parents=True)

    with pytest.raises(LfwcnnError, match="already exists"):
        extract_archive(lfw_archive, dest)

    assert [p.name for p in dest.iterdir()] == ["mine"]


def _tar_with(archive: Path, evil: tarfile.TarInfo) -> Path:
    """A .tgz with one harmless file, then ``evil``: nothing at all may be extracted."""
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("lfw/Alice_Doe/Alice_Doe_0001.jpg")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"jpg"))
        if evil.isreg():
            evil.size = 4
            tar.addfile(evil, io.BytesIO(b"evil"))
        else:
            tar.addfile(evil)
    return archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("make_member", "fragment"),
    [
        (lambda out: _member("../evil"), "outside its folder: ../evil"),
        (lambda out: _member("lfw/../../evil"), "outside its folder: lfw/../../evil"),
        (lambda out: _member(str(out / "evil")), "absolute path: /"),
        (lambda out: _member("lfw/link", tarfile.SYMTYPE, "../../evil"), "lfw/link -> ../../evil"),
        (lambda out: _member("lfw/link", tarfile.SYMTYPE, str(out)), "has a symbolic link"),
        (lambda out: _member("lfw/in", tarfile.SYMTYPE, "Alice_Doe"), "symbolic link, which"),
        (lambda out: _member("lfw/hard", tarfile.LNKTYPE, "../evil"), "lfw/hard -> ../evil"),
        (lambda out: _member("lfw/fifo", tarfile.FIFOTYPE), "not a file or folder: lfw/fifo"),
    ],
)
def test_extract_refuses_unsafe_members(tmp_path, make_member, fragment):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = _tar_with(tmp_path / "evil.tgz", make_member(outside))
    dest = tmp_path / "sandbox" / "extracted"

    with pytest.raises(LfwcnnError) as caught:
        extract_archive(archive, dest)

    assert str(archive) in str(caught.value) and fragment in str(caught.value)
    assert not dest.exists()
    assert list((tmp_path / "sandbox").iterdir()) == []
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "evil",
    [_member("../evil"), _member("lfw/link", tarfile.SYMTYPE, "/etc")],
    ids=["dotdot", "symlink"],
)
def test_writer_checks_members_on_its_own(tmp_path, monkeypatch, evil):
    """Should the first pass miss a case, the writing pass refuses it too, in one line."""
    real_pass = download_module._read_members

    def writing_pass_only(archive, limits, root_fd=None):
        if root_fd is not None:  # the first pass, which only checks, is skipped
            real_pass(archive, limits, root_fd)

    monkeypatch.setattr(download_module, "_read_members", writing_pass_only)
    archive = _tar_with(tmp_path / "evil.tgz", evil)
    dest = tmp_path / "sandbox" / "extracted"

    with pytest.raises(LfwcnnError, match=rf"^archive {re.escape(str(archive))} has a "):
        extract_archive(archive, dest)

    assert list((tmp_path / "sandbox").iterdir()) == []
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_extract_rejects_corrupt_archive(lfw_archive, tmp_path, damage):
    data = lfw_archive.read_bytes()
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 2])
    dest = tmp_path / "extracted"

    with pytest.raises(
        LfwcnnError, match=rf"cannot extract {re.escape(str(broken))}: not a readable tar"
    ):
        extract_archive(broken, dest)

    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_archive_fixture_is_reproducible(lfw_tree, lfw_archive, tmp_path):
    again = make_lfw_archive(lfw_tree, tmp_path / "again.tgz")
    assert again.read_bytes() == lfw_archive.read_bytes()


# --------------------------------------------------------------------------- sources


def test_classify_source(lfw_archive, lfw_tree, tmp_path):
    plain_tar = tmp_path / "lfw.TAR"
    plain_tar.write_bytes(b"")
    assert classify_source("https://ndownloader.figshare.com/files/5976015") == "url"
    assert classify_source("HTTP://example.org/lfw.tgz") == "url"
    assert classify_source(str(lfw_archive)) == "archive"
    assert classify_source(str(plain_tar)) == "archive"
    assert classify_source(str(lfw_tree)) == "folder"


def test_classify_source_rejects_bad_sources(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"")
    other = tmp_path / "faces.zip"
    other.write_bytes(b"PK")

    with pytest.raises(LfwcnnError, match=rf"^LFW source folder {re.escape(str(empty))} is empty$"):
        classify_source(str(empty))
    with pytest.raises(
        LfwcnnError, match=rf"^LFW source {re.escape(str(other))} is neither a folder"
    ):
        classify_source(str(other))
    with pytest.raises(
        LfwcnnError, match=rf"^LFW source {re.escape(str(tmp_path / 'nope'))} does not exist$"
    ):
        classify_source(str(tmp_path / "nope"))
    with pytest.raises(LfwcnnError, match=r"unsupported URL scheme 'ftp'"):
        classify_source("ftp://example.org/lfw.tgz")


def test_every_variant_has_a_verifiable_archive():
    """The schema's variants are the published ones; another name fails as the config loads,
    one line naming it, not as a 404 later."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    assert schema["properties"]["data"]["properties"]["variant"]["enum"] == list(ARCHIVES)
    for variant, archive in ARCHIVES.items():
        assert archive.sha256 or archive.md5, variant
    with pytest.raises(LfwcnnError, match="^config key data.variant: 'deep_funneled' is not one"):
        default_settings({"data": {"variant": "deep_funneled"}})
