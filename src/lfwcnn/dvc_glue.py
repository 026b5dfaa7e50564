"""Keep Snakemake from rebuilding what ``dvc pull`` or ``dvc checkout`` put in place.

DVC stores contents, not times: after a pull the files carry the times DVC wrote them at, in
no order, and Snakemake would rebuild outputs older than their inputs. At Snakemake's start
(workflow/rules/targets.smk) DVC itself (its Python API) says which stages of dvc.lock have
exactly the recorded outputs and data dependencies; their files get one modification time,
the newest among them (times only move forward; contents are never written). A stage whose
parameters or code differ from dvc.lock is named in a note. For the stages that match
dvc.lock fully, Snakemake's record of the job that last wrote a file (read and dropped with
Snakemake's own persistence class, the one behind ``--cleanup-metadata``) is dropped when
that job did not write the file there now: DVC did, after another experiment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DISABLE_VARIABLE = "LFWCNN_DVC_SYNC"  # set to 0 to switch the alignment off
OWN_FILE = Path(".dvc", "tmp", "lfwcnn-moved.json")  # files Snakemake wrote, times we moved
SLACK_S = 2.0  # file times vs the start and end Snakemake records for a job


@dataclass
class SyncReport:
    verified: list[str] = field(default_factory=list)  # stages whose files were aligned
    touched: list[str] = field(default_factory=list)  # files whose time was moved
    missing: list[str] = field(default_factory=list)  # outputs in dvc.lock, not on disk
    forgotten: list[str] = field(default_factory=list)  # stale Snakemake records dropped
    notes: list[str] = field(default_factory=list)  # stale stages, corrupted cache files


def files(out: Any, root: Path) -> list[str]:
    """The files of a DVC output, relative to ``root``: itself, or every file below it."""
    path = Path(out.fs_path)
    found = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    return [p.relative_to(root.resolve()).as_posix() for p in found]


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + os.sep)


def corrupted(out: Any) -> list[str]:
    """DVC's cache files of ``out`` whose contents do not match their names (DVC's own
    check, which also removes them): ``dvc checkout`` copies them without a word."""
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.errors import ObjectFormatError

    obj = out.get_obj()
    oids = [h.value for _, _, h in obj] if isinstance(obj, Tree) else [obj.oid] if obj else []
    found = []
    for oid in oids:
        try:
            out.cache.check(oid)
        except FileNotFoundError:
            pass
        except ObjectFormatError:
            found.append(os.path.relpath(out.cache.oid_to_path(oid), out.repo.root_dir))
    return found


def job_wrote(record: Any, path: Path, name: str, moved: dict[str, int]) -> bool:
    """Whether Snakemake's recorded job wrote the file that is there now (or we moved
    the time of the file it wrote)."""
    stat = path.stat()
    if moved.get(name) == stat.st_mtime_ns:
        return True
    return record.starttime - SLACK_S <= stat.st_mtime <= record.endtime + SLACK_S


def sync_workspace(root: str | os.PathLike = ".", records: Any = None) -> SyncReport:
    """Align the times of the files dvc.lock vouches for (see the module doc); ``records``
    is a Snakemake persistence object (``metadata``, ``cleanup_metadata``) or None."""
    report, root = SyncReport(), Path(root)
    if os.environ.get(DISABLE_VARIABLE, "1") == "0" or not Path(root, "dvc.lock").is_file():
        return report
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo
    from snakemake.io import IOFile

    with Repo(os.fspath(root)) as repo:
        stages = [s for s in repo.index.stages if s.cmd]
        outs = [out.fs_path for s in stages for out in s.outs]
        verified, clean = [], []
        for stage in stages:
            status = [out.workspace_status() for out in stage.outs]
            report.missing += [k for st in status for k, v in st.items() if v == "deleted"]
            if any(status):
                for out, st in zip(stage.outs, status, strict=True):
                    for copy in corrupted(out) if "modified" in st.values() else ():
                        report.notes.append(
                            f"{out} does not have the contents dvc.lock records, and DVC's "
                            f"cached copy {copy} is corrupted (DVC removed it): delete {out}, "
                            "then `dvc pull` fetches a good copy from the remote."
                        )
                continue
            data = [d for d in stage.deps if any(inside(d.fs_path, o) for o in outs)]
            if any(dep.workspace_status() for dep in data):
                continue
            verified.append(stage)
            changed = [
                f"{dep}: {', '.join(dep.workspace_status().get(str(dep), {}))} changed"
                if isinstance(dep, ParamsDependency)
                else f"{dep} changed"
                for dep in stage.deps
                if dep not in data and dep.workspace_status()
            ]
            if changed:
                report.notes.append(
                    f"dvc.lock: stage '{stage.name}' is out of date ({'; '.join(changed)}). "
                    "`dvc repro` rebuilds it; plain Snakemake does so only for files it built "
                    "itself, not for files from `dvc pull` or `dvc checkout`."
                )
            else:
                clean.append(stage)
        own_path = Path(root, OWN_FILE)
        try:
            moved = json.loads(own_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {}
        names = sorted({n for s in verified for out in s.outs for n in files(out, root)})
        clean_files = {n for s in clean for out in s.outs for n in files(out, root)}
        own = set()
        for name in names if records is not None else ():
            record = records.metadata(IOFile(name))
            if record is None or record.starttime is None or record.endtime is None:
                continue
            if job_wrote(record, root / name, name, moved):
                own.add(name)
            elif name in clean_files:
                records.cleanup_metadata(IOFile(name))
                report.forgotten.append(name)
        report.verified = [stage.name for stage in verified]
        times = {name: (root / name).stat().st_mtime_ns for name in names}
        newest = max(times.values(), default=0)
        for name in names:
            if times[name] < newest:
                os.utime(root / name, ns=(newest, newest))
                report.touched.append(name)
                if name in own:
                    moved[name] = newest
        if own & set(report.touched):
            own_path.parent.mkdir(parents=True, exist_ok=True)
            own_path.write_text(json.dumps(moved), encoding="utf-8")
    return report


def describe(report: SyncReport) -> list[str]:
    """Log lines for a report (none when there is nothing to say)."""
    lines = []
    if report.touched:
        lines.append(
            f"dvc.lock: {len(report.touched)} files have the contents it records; gave them one "
            f"modification time so that Snakemake does not rebuild them (stages: "
            f"{', '.join(report.verified)})"
        )
    if report.forgotten:
        lines.append(
            f"dvc.lock: {len(report.forgotten)} files were put back by DVC after Snakemake "
            "built other versions of them; dropped Snakemake's records of those versions"
        )
    if report.missing:
        shown = ", ".join(report.missing[:3]) + (", ..." if len(report.missing) > 3 else "")
        lines.append(
            f"dvc.lock: {len(report.missing)} recorded outputs are not here ({shown}); "
            "`dvc pull` fetches them from the DVC remote instead of rebuilding them"
        )
    return lines
