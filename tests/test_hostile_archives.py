"""Hostile archives and downloads (issue 13, points 1, 2 and 7): refused in one line, nothing kept.

Every archive here is crafted by the test: links of every kind (including the chain of long
symbolic links that gets past tarfile's ``data`` filter on Python 3.11 before 3.11.13), hard
links onto a file outside, devices and FIFOs, size bombs; and a 127.0.0.1 server that trickles
or answers with an HTML page. Each case checks the step's exit, its one error line naming the
culprit, that nothing is left at the target, and that nothing outside changed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from lfw_fixtures import make_lfw_archive
from workflow_runner import make_project, snakemake

import lfwcnn.download as download_module
from lfwcnn.config import default_settings
from lfwcnn.download import download, extract_archive
from lfwcnn.errors import LfwcnnError

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = {"backoff": 0.0, "progress": False}


def caps(**values) -> object:
    """The ``data.extract`` section with ``values`` over the config's defaults."""
    return default_settings({"data": {"extract": values}}).data.extract


HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>" + b" " * 400 + b"</html>"

# --------------------------------------------------------------------------- crafting


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, size, 0o644
    return info


def write_tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tgz of exactly ``members`` (a harmless file first, so there is something to write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        good = b"jpeg bytes"
        tar.addfile(_info("lfw/Alice_Doe/Alice_Doe_0001.jpg", size=len(good)), io.BytesIO(good))
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def link_chain(depth: int = 16) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Nested 247-character folders, each reached by a one-letter symbolic link, so that the
    chain resolves past PATH_MAX; a link climbing out through it; a file written through that.

    tarfile's own ``data`` filter lets this write outside on Python 3.11 < 3.11.13 and
    3.12 < 3.12.11 (it gives up resolving a path that long).
    """
    comp, steps = "d" * 247, "abcdefghijklmnop"[:depth]
    members, parent = [], ""
    for step in steps:
        members.append((_info(os.path.join(parent, comp), tarfile.DIRTYPE), None))
        members.append((_info(os.path.join(parent, step), tarfile.SYMTYPE, comp), None))
        parent = os.path.join(parent, comp)
    deep = os.path.join(*steps, "l" * 254)
    members.append((_info(deep, tarfile.SYMTYPE, os.path.join(*[".."] * depth)), None))
    members.append((_info("escape", tarfile.SYMTYPE, deep + "/../outside"), None))
    members.append((_info("escape/evil"), b"written outside"))
    return members


def zero_bomb(path: Path, member_bytes: int, *, name: str = "lfw/bomb.jpg") -> Path:
    """A .tgz of one member of ``member_bytes`` zeros, small on disk.

    Written as many gzip members of 1 MiB of zeros each (one valid gzip stream), so that a
    1 GiB bomb is about 1 MB and takes milliseconds to build.
    """
    chunk = 1 << 20
    header = _info(name, size=member_bytes).tobuf(format=tarfile.GNU_FORMAT)
    padding = -member_bytes % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE  # then end of archive
    zeros = gzip.compress(bytes(chunk), compresslevel=9, mtime=0)
    with open(path, "wb") as out:
        out.write(gzip.compress(header, mtime=0))
        for _ in range(member_bytes // chunk):
            out.write(zeros)
        out.write(gzip.compress(bytes(member_bytes % chunk + padding), mtime=0))
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` with its bytes and mtime: to show that nothing changed."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """An extraction target's parent, and an ``outside`` folder with a victim file in it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("the user's file\n")
    box = tmp_path / "box"
    box.mkdir()
    return {"outside": outside, "box": box, "dest": box / "extracted"}


def run_step(overlay: Path, data: dict, *argv: str) -> subprocess.CompletedProcess:
    """``python -m lfwcnn STEP NAME=VALUE...`` (``argv``) with ``data`` keys from ``overlay``,
    as the workflow runs a step; output captured."""
    overlay.write_text(json.dumps({"data": data}))
    return subprocess.run(
        [sys.executable, "-m", "lfwcnn", *argv, "--configfile", str(overlay)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, check=False,
    )


def assert_refused(archive: Path, sandbox: dict, before: dict, *fragments: str, limits=None):
    """``extract_archive`` raises one line naming the archive and ``fragments``; nothing
    is left in the target's folder, and nothing outside changed."""
    with pytest.raises(LfwcnnError) as caught:
        extract_archive(archive, sandbox["dest"], *([limits] if limits else []))
    message = str(caught.value)
    assert "\n" not in message and str(archive) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert list(sandbox["box"].iterdir()) == []
    assert snapshot(sandbox["outside"]) == before
    return message


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- point 1: links


def test_symlink_chain_past_path_max_is_refused_before_writing(sandbox, tmp_path, monkeypatch):
    archive = write_tgz(tmp_path / "chain.tgz", link_chain())
    before = snapshot(sandbox["outside"])
    writes, real_pass = [], download_module._read_members

    def recorded_pass(archive, limits, root_fd=None):
        if root_fd is not None:  # the writing pass
            writes.append(archive)
        real_pass(archive, limits, root_fd)

    monkeypatch.setattr(download_module, "_read_members", recorded_pass)

    message = assert_refused(archive, sandbox, before, "symbolic link", "a -> " + "d" * 247)

    assert writes == [], "the writing pass must not start when any member is refused"
    assert message.count("->") == 1
    assert not (sandbox["outside"] / "evil").exists()


@pytest.mark.parametrize(
    ("members", "fragments"),
    [
        pytest.param([(_info("lfw/ok", tarfile.SYMTYPE, "Alice_Doe"), None)],
                     ["has a symbolic link", "lfw/ok -> Alice_Doe"], id="symlink-inside"),
        pytest.param([(_info("lfw/out", tarfile.SYMTYPE, "VICTIM_DIR"), None),
                      (_info("lfw/out/evil"), b"through the link")],
                     ["symbolic link", "lfw/out -> "], id="written-through-symlink"),
        pytest.param([(_info("lfw/hard", tarfile.LNKTYPE, "VICTIM"), None),
                      (_info("lfw/hard"), b"overwritten")],
                     ["has a hard link", "lfw/hard -> "], id="hardlink-to-outside-file"),
        pytest.param([(_info("lfw/twin", tarfile.LNKTYPE, "lfw/Alice_Doe/Alice_Doe_0001.jpg"),
                       None)], ["hard link", "lfw/twin"], id="hardlink-inside"),
        pytest.param([(_info("lfw/tty", tarfile.CHRTYPE), None)],
                     ["not a file or folder: lfw/tty"], id="char-device"),
        pytest.param([(_info("lfw/disk", tarfile.BLKTYPE), None)],
                     ["not a file or folder: lfw/disk"], id="block-device"),
        pytest.param([(_info("lfw/pipe", tarfile.FIFOTYPE), None)],
                     ["not a file or folder: lfw/pipe"], id="fifo"),
        pytest.param([(_info("lfw/../../outside/evil"), b"x")],
                     ["outside its folder: lfw/../../outside/evil"], id="dotdot"),
        pytest.param([(_info("lfw/new\nline", tarfile.SYMTYPE, "x"), None)],
                     ["'lfw/new\\nline'"], id="name-with-newline-stays-one-line"),
    ],
)
def test_links_devices_and_fifos_are_refused(sandbox, tmp_path, members, fragments):
    victim = sandbox["outside"] / "victim.txt"
    for info, _ in members:
        info.linkname = info.linkname.replace("VICTIM_DIR", str(sandbox["outside"]))
        info.linkname = info.linkname.replace("VICTIM", str(victim))
    archive = write_tgz(tmp_path / "evil.tgz", members)
    before = snapshot(sandbox["outside"])

    assert_refused(archive, sandbox, before, *fragments)


def test_duplicate_and_clashing_members_are_refused(sandbox, tmp_path):
    before = snapshot(sandbox["outside"])
    twice = write_tgz(tmp_path / "twice.tgz", [(_info("lfw/Alice_Doe/Alice_Doe_0001.jpg"), b"2")])
    inside_file = write_tgz(
        tmp_path / "inside.tgz", [(_info("lfw/Alice_Doe/Alice_Doe_0001.jpg/x"), b"x")]
    )

    assert_refused(twice, sandbox, before, "member twice: lfw/Alice_Doe/Alice_Doe_0001.jpg")
    assert_refused(
        inside_file, sandbox, before, "inside a file: lfw/Alice_Doe/Alice_Doe_0001.jpg/x"
    )


def test_obtain_command_refuses_a_link_in_one_line(sandbox, tmp_path):
    archive = write_tgz(tmp_path / "evil.tgz", link_chain(depth=4))
    out = tmp_path / "raw"
    before = snapshot(sandbox["outside"])

    result = run_step(tmp_path / "overlay.yaml", {"variant": "funneled", "source": str(archive)},
                      "obtain_lfw", f"archive={archive}", f"images={out / 'images'}",
                      f"record={out / 'source.json'}")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert str(archive) in line and "symbolic link" in line and "a -> " in line
    assert not out.exists() or list(out.iterdir()) == []
    assert snapshot(sandbox["outside"]) == before


# --------------------------------------------------------------------------- point 2: bombs


def test_gigabyte_bomb_stops_at_its_header_with_default_caps(sandbox, tmp_path):
    archive = zero_bomb(tmp_path / "bomb.tgz", 1 << 30)
    assert archive.stat().st_size < 2 << 20  # a 1 GiB member in about 1 MB
    before = snapshot(sandbox["outside"])

    start = time.monotonic()
    assert_refused(archive, sandbox, before, "member lfw/bomb.jpg holds more than 67108864 bytes",
                   "data.extract.max_member_bytes")
    assert time.monotonic() - start < 2.0


def test_small_cap_stops_a_bomb(sandbox, tmp_path):
    archive = zero_bomb(tmp_path / "bomb.tgz", 8 << 20)
    limits = caps(max_member_bytes=1 << 20)

    assert_refused(archive, sandbox, {"victim.txt": snapshot(sandbox["outside"])["victim.txt"]},
                   "member lfw/bomb.jpg holds more than 1048576 bytes", limits=limits)


def test_bytes_written_are_counted_not_the_headers(sandbox, tmp_path, monkeypatch):
    """With both header checks switched off, the writer still stops at the cap, counting the
    bytes that come out of the gzip stream, and removes the partial tree."""
    archive = zero_bomb(tmp_path / "bomb.tgz", 8 << 20)
    monkeypatch.setattr(download_module, "_check_caps", lambda *a, **k: None)
    written = []
    real_write = download_module._write_file
    monkeypatch.setattr(download_module, "_write_file",
                        lambda *a: written.append(a[2].name) or real_write(*a))
    before = snapshot(sandbox["outside"])

    assert_refused(archive, sandbox, before, "lfw/bomb.jpg holds more than 2097152 bytes",
                   limits=caps(max_member_bytes=2 << 20))
    assert written == ["lfw/bomb.jpg"]


def test_total_and_member_count_caps(sandbox, tmp_path):
    members = [(_info(f"lfw/P/P_{i:04d}.jpg"), bytes(3000)) for i in range(10)]
    archive = write_tgz(tmp_path / "many.tgz", members)
    before = snapshot(sandbox["outside"])

    assert_refused(archive, sandbox, before, "unpacks to more than 20000 bytes",
                   "data.extract.max_total_bytes", "refused at lfw/P/P_0006.jpg",
                   limits=caps(max_total_bytes=20_000))
    assert_refused(archive, sandbox, before, "more than 5 members", "data.extract.max_members",
                   "refused at lfw/P/P_0004.jpg", limits=caps(max_members=5))
    assert extract_archive(archive, sandbox["dest"]).name == "lfw"  # the defaults let it through


def test_huge_pax_header_is_refused_before_it_is_read(sandbox, tmp_path):
    """tarfile reads a pax header's data in one piece: a header claiming 1 GiB of it must not
    make it try, whatever member follows."""
    header = _info("././@PaxHeader", tarfile.XHDTYPE, size=1 << 30)
    archive = tmp_path / "pax.tgz"
    archive.write_bytes(gzip.compress(header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(1 << 16)))
    before = snapshot(sandbox["outside"])

    assert_refused(archive, sandbox, before, "declares more than 1048576 bytes",
                   limits=caps(max_member_bytes=1 << 20))


# --------------------------------------------------------------------------- point 7: downloads


def test_trickling_server_stops_at_the_deadline(http_server, tmp_path):
    body = gzip.compress(bytes(4096))
    url = http_server.route("/lfw.tgz", body, trickle_s=0.05)
    dest = tmp_path / "downloads" / "lfw.tgz"

    start = time.monotonic()
    with pytest.raises(LfwcnnError) as caught:
        download(url, dest, timeout=5, deadline=1.0, **FAST)
    elapsed = time.monotonic() - start

    message = str(caught.value)
    assert message.startswith(f"download of {url} did not finish within its deadline of 1 s")
    assert "data.download.deadline_s" in message and "\n" not in message
    assert elapsed < 2.5
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("body", [HTML, b"<html>short</html>"], ids=["page", "shorter-than-head"])
def test_html_body_is_refused_and_the_next_run_downloads_again(
    http_server, lfw_archive, tmp_path, body
):
    url = http_server.route("/lfw.tgz", body, content_type="text/html; charset=utf-8")
    dest = tmp_path / "downloads" / "lfw.tgz"
    good = lfw_archive.read_bytes()

    with pytest.raises(LfwcnnError) as caught:
        download(url, dest, sha256=hashlib.sha256(good).hexdigest(), **FAST)

    message = str(caught.value)
    assert message.startswith(f"download of {url} is not a .tgz or .tar archive")
    assert "text/html" in message and "<html" in message.lower() and "\n" not in message
    assert http_server.hits("/lfw.tgz") == 1  # not retried: the same page would come back
    assert list(dest.parent.iterdir()) == []

    http_server.route("/lfw.tgz", good)
    assert download(url, dest, sha256=hashlib.sha256(good).hexdigest(), **FAST) == dest
    assert dest.read_bytes() == good


def test_an_existing_page_at_the_destination_is_named_not_reused(http_server, tmp_path):
    url = http_server.route("/lfw.tgz", gzip.compress(b"archive"))
    dest = tmp_path / "lfw.tgz"
    dest.write_bytes(HTML)

    with pytest.raises(LfwcnnError, match=rf"^existing file {dest} is not a .tgz or .tar archive"):
        download(url, dest, **FAST)

    assert dest.read_bytes() == HTML and http_server.hits("/lfw.tgz") == 0


def test_plain_tar_body_is_accepted(http_server, lfw_tree, tmp_path):
    archive = tmp_path / "lfw.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(lfw_tree, arcname="lfw")
    url = http_server.route("/lfw.tar", archive.read_bytes())

    dest = download(url, tmp_path / "downloads" / "lfw.tar", **FAST)

    assert extract_archive(dest, tmp_path / "x").name == "lfw"


def test_download_command_refuses_html_in_one_line(http_server, tmp_path):
    url = http_server.route("/lfw.tgz", HTML, content_type="text/html")
    dest = tmp_path / "downloads" / "lfw.tgz"

    result = run_step(tmp_path / "overlay.yaml", {"source": url, "download": {"deadline_s": 30}},
                      "download_lfw", f"archive={dest}")

    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert url in line and "text/html" in line
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------- through the workflow

OBTAINED = "data/raw/funneled/source.json"


def data_overlay(source: str, **data) -> dict:
    return {"data": {"source": source, "min_images_per_person": 5, "image_size": 32, **data},
            "seeds": [0]}


def assert_job_failed(project: Path, result, log: str, *fragments: str) -> None:
    """Snakemake failed, the job's log holds exactly one error line naming ``fragments``, and
    neither the images nor a download were left behind."""
    assert result.returncode != 0, result.stdout + result.stderr
    text = (project / log).read_text()
    assert "Traceback" not in text
    [line] = error_lines(text)
    for fragment in fragments:
        assert fragment in line, line
    assert not (project / "data/raw/funneled/images").exists()
    assert not (project / "data/raw/funneled/images").is_symlink()
    downloads = project / "data/downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []


def test_workflow_refuses_a_linked_archive(sandbox, tmp_path):
    archive = write_tgz(tmp_path / "evil.tgz", link_chain(depth=4))
    before = snapshot(sandbox["outside"])
    project = make_project(tmp_path / "p", data_overlay(str(archive)))

    result = snakemake(project, OBTAINED)

    assert_job_failed(project, result, "logs/data/obtain_funneled.log", str(archive),
                      "symbolic link")
    assert snapshot(sandbox["outside"]) == before


def test_workflow_stops_a_bomb_at_the_configured_cap(tmp_path):
    archive = zero_bomb(tmp_path / "bomb.tgz", 4 << 20)
    project = make_project(
        tmp_path / "p", data_overlay(str(archive), extract={"max_member_bytes": 1 << 20})
    )

    result = snakemake(project, OBTAINED)

    assert_job_failed(project, result, "logs/data/obtain_funneled.log", str(archive),
                      "lfw/bomb.jpg holds more than 1048576 bytes")


def test_workflow_refuses_an_html_download_then_retries(http_server, lfw_tree, tmp_path):
    url = http_server.route("/lfw-funneled.tgz", HTML, content_type="text/html")
    project = make_project(tmp_path / "p", data_overlay(url, download={"deadline_s": 60}))

    result = snakemake(project, OBTAINED)

    assert_job_failed(project, result, "logs/data/download_funneled.log", url, "text/html")

    http_server.route("/lfw-funneled.tgz",
                      make_lfw_archive(lfw_tree, tmp_path / "lfw.tgz").read_bytes())
    again = snakemake(project, OBTAINED)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (project / "data/raw/funneled/images/Alice_Doe").is_dir()
