"""Keep Snakemake from rebuilding what ``dvc pull`` or ``dvc checkout`` put in place.

DVC stores file contents, not modification times: after ``dvc pull`` into a fresh clone, or
``dvc checkout`` of another revision, the files of one pipeline carry the times at which
DVC happened to write them, in no particular order. Snakemake reruns a job whose input is
newer than its oldest output (unless it recorded that input's checksum itself, which a
fresh clone has not), so it would retrain models that are perfectly up to date.

The workflow calls :func:`sync_workspace` when Snakemake reads the Snakefile. It reads
``dvc.lock`` and, for every stage whose outputs have exactly the contents recorded there and
whose data dependencies have the contents that stage was built from, gives all those files
one and the same modification time (the newest among them). Snakemake counts an input as
updated only when it is strictly newer than an output, so none of these files triggers a
rerun, whatever order DVC wrote them in. Nothing else is touched:

* a file whose content differs from ``dvc.lock`` (edited, rebuilt, half-pulled) keeps its
  time, and so does every output of a stage built from a different upstream content; so a
  real change still reruns what depends on it;
* times only move forward, to a time one of the verified files already has;
* contents are never written; parameters and code are compared with ``dvc.lock`` only to
  warn that a stage is out of date (``dvc repro`` rebuilds it; plain Snakemake has no record
  of the parameters of files it did not build itself).

One more thing goes stale when DVC swaps files: Snakemake's own record of the job that last
wrote a file (``.snakemake/metadata``: its parameters, code, start and end). After ``dvc
exp run -S train.epochs=5`` and a return to the baseline with ``dvc checkout``, the record
still says five epochs and Snakemake would retrain the baseline models DVC put back. So for
files of stages that match ``dvc.lock`` in every respect (contents, data, parameters,
code), a record whose job ended before the file was written is removed: the file was not
written by that job. Records of files Snakemake wrote itself are never touched.

Hashes are DVC's own (md5 of the bytes; a directory is the md5 of its sorted JSON listing,
with ``.dir`` appended) and are cached in ``.dvc/tmp`` by size, inode and modification time,
so a run where nothing changed costs one ``stat`` per tracked file. A corrupted file in
DVC's cache (which ``dvc checkout`` copies without a word) is named in a warning.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCK_FILE = "dvc.lock"
CACHE_FILE = Path(".dvc", "tmp", "lfwcnn-dvc-sync.json")
DISABLE_VARIABLE = "LFWCNN_DVC_SYNC"  # set to 0 to switch the alignment off
DIR_SUFFIX = ".dir"
CHUNK = 1 << 20
METADATA_DIR = Path(".snakemake", "metadata")
WINDOW_SLACK_S = 2.0  # file times vs the start and end Snakemake records for a job


@dataclass(frozen=True)
class Entry:
    """One ``path`` of a dvc.lock stage with its recorded md5 (``None``: not an md5 record)."""

    path: str
    md5: str | None


@dataclass(frozen=True)
class LockStage:
    name: str
    deps: tuple[Entry, ...]
    outs: tuple[Entry, ...]
    params: Mapping[str, Mapping[str, Any]]


@dataclass
class SyncReport:
    """What :func:`sync_workspace` found and did, for the log."""

    verified: list[str] = field(default_factory=list)  # stages whose files were aligned
    touched: list[str] = field(default_factory=list)  # files whose time was moved
    missing: list[str] = field(default_factory=list)  # outputs in dvc.lock, not on disk
    forgotten: list[str] = field(default_factory=list)  # stale Snakemake records removed
    notes: list[str] = field(default_factory=list)  # warnings: stale stages, corrupted cache


def _entry(record: Mapping[str, Any]) -> Entry:
    md5 = record.get("md5") if record.get("hash") == "md5" else None
    return Entry(str(record["path"]), md5)


def read_lock(root: str | os.PathLike) -> list[LockStage]:
    """The stages of ``root/dvc.lock`` (an empty list without one)."""
    path = Path(root, LOCK_FILE)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = []
    for name, stage in (data.get("stages") or {}).items():
        stages.append(
            LockStage(
                name=name,
                deps=tuple(_entry(d) for d in stage.get("deps") or ()),
                outs=tuple(_entry(o) for o in stage.get("outs") or ()),
                params=stage.get("params") or {},
            )
        )
    return stages


class Hasher:
    """DVC-compatible md5 of files and directories, cached by (size, inode, mtime).

    The cache file also remembers, per file, the version (size, inode, mtime) whose
    Snakemake record was last checked, so that each version is checked once.
    """

    def __init__(self, root: Path, state: Mapping[str, Any] | None = None):
        self.root = root
        state = state or {}
        self.cache: dict[str, list] = dict(state.get("hashes") or {})
        self.checked: dict[str, list] = dict(state.get("records_checked") or {})
        self.changed = False

    @classmethod
    def load(cls, root: Path) -> Hasher:
        try:
            state = json.loads((root / CACHE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        return cls(root, state if isinstance(state, dict) else {})

    def save(self) -> None:
        if not self.changed or not (self.root / ".dvc").is_dir():
            return
        path = self.root / CACHE_FILE
        state = {"hashes": self.cache, "records_checked": self.checked}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(json.dumps(state), encoding="utf-8")
            os.replace(scratch, path)
        except OSError:
            pass  # the cache only saves time

    def key(self, relpath: str) -> list[int]:
        st = (self.root / relpath).stat()
        return [st.st_size, st.st_ino, st.st_mtime_ns]

    def file(self, relpath: str) -> str | None:
        try:
            key = self.key(relpath)
        except OSError:
            return None
        cached = self.cache.get(relpath)
        if cached and cached[:3] == key:
            return cached[3]
        digest = hashlib.md5(usedforsecurity=False)
        with open(self.root / relpath, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        self.cache[relpath] = [*key, digest.hexdigest()]
        self.changed = True
        return digest.hexdigest()

    def files(self, relpath: str) -> list[str]:
        """The files of an output: itself, or every file below a directory (sorted)."""
        path = self.root / relpath
        if path.is_file():
            return [relpath]
        found = []
        for folder, _, names in os.walk(path):
            for name in names:
                full = Path(folder, name)
                if full.is_file():
                    found.append(full.relative_to(self.root).as_posix())
        return sorted(found)

    def entry(self, relpath: str) -> str | None:
        """md5 of a file, or DVC's ``<md5>.dir`` of a directory; ``None`` if missing."""
        path = self.root / relpath
        if path.is_file():
            return self.file(relpath)
        if not path.is_dir():
            return None
        listing = []
        for name in self.files(relpath):
            md5 = self.file(name)
            if md5 is None:
                return None
            listing.append({"md5": md5, "relpath": Path(name).relative_to(relpath).as_posix()})
        listing.sort(key=lambda item: item["relpath"])
        body = json.dumps(listing, sort_keys=True).encode("utf-8")
        return hashlib.md5(body, usedforsecurity=False).hexdigest() + DIR_SUFFIX

    def record_checked(self, relpath: str) -> bool:
        """Whether the Snakemake record of this version of the file was checked already."""
        return self.checked.get(relpath) == self.key(relpath)

    def mark_checked(self, relpath: str) -> None:
        self.checked[relpath] = self.key(relpath)
        self.changed = True

    def touch(self, relpath: str, mtime_ns: int) -> None:
        """Set the modification time; the cached hash and check stay with the file."""
        before = self.key(relpath)
        path = self.root / relpath
        os.utime(path, ns=(path.stat().st_atime_ns, mtime_ns))
        after = self.key(relpath)
        cached = self.cache.get(relpath)
        if cached and cached[:3] == before:
            self.cache[relpath] = [*after, cached[3]]
        if self.checked.get(relpath) == before:
            self.checked[relpath] = after
        self.changed = True


def cache_dir(root: Path) -> Path:
    """DVC's cache folder: ``cache.dir`` of .dvc/config(.local) if set, else .dvc/cache."""
    found = root / ".dvc" / "cache"
    for name in ("config", "config.local"):  # config.local wins, as in DVC
        try:
            lines = (root / ".dvc" / name).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        section = None
        for line in lines:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]").strip().strip("'\"")
            elif section == "cache" and line.partition("=")[0].strip() == "dir":
                found = root / ".dvc" / line.partition("=")[2].strip().strip("'\"")
    return found


def cache_object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def corrupted_cache(hasher: Hasher, cache: Path, out: Entry) -> list[tuple[str, str]]:
    """(workspace file, cache file) where the file differs from dvc.lock and DVC's cached
    copy of the recorded contents does not match its own name: DVC copies such a file into
    the workspace without a word (``dvc checkout``), and keeps believing it is right."""
    if out.md5 is None:
        return []
    expected = {out.path: out.md5}
    if out.md5.endswith(DIR_SUFFIX):
        try:
            listing = json.loads(cache_object(cache, out.md5).read_text(encoding="utf-8"))
            expected = {f"{out.path}/{item['relpath']}": item["md5"] for item in listing}
        except (OSError, ValueError, TypeError, KeyError):
            return []
    found = []
    for path, md5 in expected.items():
        copy = cache_object(cache, md5)
        if hasher.file(path) != md5 and copy.is_file() and hasher.file(str(copy)) != md5:
            found.append((path, str(copy)))
    return found


def snakemake_record(root: Path, relpath: str) -> Path | None:
    """Where Snakemake keeps what it knows of the job that wrote ``relpath`` (its params,
    code, start and end time): ``.snakemake/metadata/<urlsafe base64 of the path>``."""
    name = base64.urlsafe_b64encode(relpath.encode()).decode()
    return None if len(name) > 250 else root / METADATA_DIR / name


def _job_window(record: Path) -> tuple[float, float] | None:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        start, end = float(data["starttime"]), float(data["endtime"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return start, end


def job_wrote(root: Path, relpath: str) -> bool | None:
    """Whether the job Snakemake recorded for ``relpath`` wrote the file that is there now
    (its time lies within the job's start and end); ``None`` without a record.

    When it did not, something else put the file there (``dvc checkout`` of another
    experiment, ``dvc exp apply``, DVC's run cache), and the record (say, ``train.epochs:
    5``) describes a file that is gone. Left alone, Snakemake would rebuild a file DVC
    vouches for because of a parameter it no longer has.
    """
    record = snakemake_record(root, relpath)
    window = _job_window(record) if record is not None else None
    if window is None:
        return None
    written = (root / relpath).stat().st_mtime
    return window[0] - WINDOW_SLACK_S <= written <= window[1] + WINDOW_SLACK_S


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    """``values['a']['b']`` for ``'a.b'``; :data:`_MISSING` when a key is missing."""
    current: Any = values
    for key in dotted.split("."):
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return current


_MISSING = object()


def _differences(key: str, recorded: Any, current: Any) -> list[str]:
    """``key old -> new`` for each leaf that differs (dicts compared key by key, over the
    keys dvc.lock has: a key only the running config has is a schema default or an overlay,
    which DVC does not see either)."""
    if isinstance(recorded, Mapping) and isinstance(current, Mapping):
        found = []
        for sub in sorted(recorded):
            found += _differences(
                f"{key}.{sub}", recorded.get(sub, _MISSING), current.get(sub, _MISSING)
            )
        return found
    if recorded is not _MISSING and current is not _MISSING and recorded == current:
        return []

    def show(value: Any) -> str:
        return "(missing)" if value is _MISSING else json.dumps(value)

    return [f"{key} {show(recorded)} -> {show(current)}"]


def _changed_params(
    stage: LockStage, root: Path, config_file: str, config: Mapping[str, Any] | None
) -> list[str]:
    changes = []
    for file, recorded in stage.params.items():
        if file == config_file and config is not None:
            current: Mapping[str, Any] = config
        else:
            try:
                current = yaml.safe_load((root / file).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                current = {}
        for key, value in (recorded or {}).items():
            changes += _differences(key, value, _lookup(current, key))
    return changes


def sync_workspace(
    root: str | os.PathLike = ".",
    config: Mapping[str, Any] | None = None,
    *,
    config_file: str = "config/config.yaml",
) -> SyncReport:
    """Align the modification times of the files ``dvc.lock`` vouches for; see the module doc.

    ``config`` is the configuration Snakemake runs with (overlays included); it stands in
    for ``config_file`` when parameters are compared with ``dvc.lock``.
    """
    report = SyncReport()
    root = Path(root)
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return report
    stages = read_lock(root)
    if not stages:
        return report
    hasher = Hasher.load(root)
    owners = [(out.path, stage.name) for stage in stages for out in stage.outs]
    outs_ok: dict[str, bool] = {}
    for stage in stages:
        found = {out.path: hasher.entry(out.path) for out in stage.outs}
        report.missing += [path for path, md5 in found.items() if md5 is None]
        outs_ok[stage.name] = bool(stage.outs) and all(
            out.md5 is not None and found[out.path] == out.md5 for out in stage.outs
        )

    cache = cache_dir(root)
    for stage in stages:
        for out in stage.outs if not outs_ok[stage.name] else ():
            for path, copy in corrupted_cache(hasher, cache, out):
                report.notes.append(
                    f"{path} does not have the contents dvc.lock records, and DVC's cached "
                    f"copy {copy} is corrupted (its contents do not match its name): delete "
                    "both files, then `dvc pull` fetches a good copy from the remote."
                )

    verified, clean = [], []
    for stage in stages:
        if not outs_ok[stage.name]:
            continue
        data_deps, code_deps = [], []
        for dep in stage.deps:
            from_stage = any(
                _inside(dep.path, out) or _inside(out, dep.path)
                for out, owner in owners
                if owner != stage.name
            )
            (data_deps if from_stage else code_deps).append(dep)
        if not all(dep.md5 is not None and hasher.entry(dep.path) == dep.md5 for dep in data_deps):
            continue
        verified.append(stage)
        changes = _changed_params(stage, root, config_file, config)
        changes += [
            f"{dep.path} changed"
            for dep in code_deps
            if dep.md5 is None or hasher.entry(dep.path) != dep.md5
        ]
        if not changes:
            clean.append(stage)
        else:
            report.notes.append(
                f"dvc.lock: stage '{stage.name}' is out of date ({'; '.join(changes)}). "
                f"`dvc repro` rebuilds it; plain Snakemake does so only for files it built "
                "itself, not for files from `dvc pull` or `dvc checkout`."
            )

    # Snakemake's records of files DVC put back: each version of a file is looked at once,
    # before its time is moved; a stale record goes once the stage matches dvc.lock fully.
    for stage in verified:
        for out in stage.outs:
            for name in hasher.files(out.path):
                if hasher.record_checked(name):
                    continue
                if job_wrote(root, name) is False:
                    if stage not in clean:
                        continue  # decided when parameters and code match dvc.lock again
                    snakemake_record(root, name).unlink()
                    report.forgotten.append(name)
                hasher.mark_checked(name)

    files = sorted(
        {name for stage in verified for out in stage.outs for name in hasher.files(out.path)}
    )
    report.verified = [stage.name for stage in verified]
    if files:
        times = {name: (root / name).stat().st_mtime_ns for name in files}
        newest = max(times.values())
        for name in files:
            if times[name] < newest:
                hasher.touch(name, newest)
                report.touched.append(name)
    hasher.save()
    return report


def describe(report: SyncReport) -> Iterable[str]:
    """Log lines for a report (nothing when there is nothing to say)."""
    if report.touched:
        yield (
            f"dvc.lock: {len(report.touched)} files have the contents it records; gave them "
            f"one modification time so that Snakemake does not rebuild them (stages: "
            f"{', '.join(report.verified)})"
        )
    if report.forgotten:
        yield (
            f"dvc.lock: {len(report.forgotten)} files were put back by DVC after Snakemake "
            "built other versions of them; dropped Snakemake's records of those versions "
            "(.snakemake/metadata), which no longer describe them"
        )
    if report.missing:
        shown = ", ".join(report.missing[:3]) + (", ..." if len(report.missing) > 3 else "")
        yield (
            f"dvc.lock: {len(report.missing)} recorded outputs are not here ({shown}); "
            "`dvc pull` fetches them from the DVC remote instead of rebuilding them"
        )
