"""Keep Snakemake from rebuilding what ``dvc pull`` or ``dvc checkout`` put in place.

DVC stores contents, not times, so after a pull outputs may look older than their inputs.
At Snakemake's start, DVC's own API says which dvc.lock stages have exactly the recorded
outputs and data dependencies; their files get one time, the newest among them (times only
move forward). For stages matching dvc.lock fully, Snakemake's record of a file's last job
is dropped (its own persistence class, as ``--cleanup-metadata`` does) when that job did not
write the file there now: DVC did, after another experiment. See docs/dvc.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DISABLE_VARIABLE = "LFWCNN_DVC_SYNC"  # set to 0 to switch the alignment off
MOVED = Path(".dvc", "tmp", "lfwcnn-moved.json")  # times we moved of files Snakemake wrote
SLACK_S = 2.0  # file times vs the start and end Snakemake records for a job


def files(outs: list[Any], root: Path) -> set[str]:
    """The files of DVC outputs, relative to ``root``: each file, or all below a folder."""
    paths = [Path(out.fs_path) for out in outs]
    found = [q for p in paths for q in ([p] if p.is_file() else p.rglob("*")) if q.is_file()]
    return {p.relative_to(root.resolve()).as_posix() for p in found}


def inside(path: str, folder: str) -> bool:
    return (path + os.sep).startswith(folder + os.sep)


def corrupted(out: Any) -> list[str]:
    """DVC's cache files of ``out`` that do not match their names (DVC's check removes them;
    ``dvc checkout`` copies them without a word)."""
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.errors import ObjectFormatError

    obj = out.get_obj()
    found = []
    for oid in [h.value for _, _, h in obj] if isinstance(obj, Tree) else [obj.oid] * bool(obj):
        try:
            out.cache.check(oid)
        except ObjectFormatError:
            found.append(os.path.relpath(out.cache.oid_to_path(oid), out.repo.root_dir))
        except FileNotFoundError:
            pass
    return found


def sync_workspace(root: str | os.PathLike = ".", records: Any = None) -> dict[str, list]:
    """Align the times of the files dvc.lock vouches for; ``records``: Snakemake's
    persistence object, or None. Returns what it did and found, for the log."""
    report: dict[str, list] = {k: [] for k in ("verified", "touched", "forgotten", "notes")}
    root = Path(root)
    if os.environ.get(DISABLE_VARIABLE) == "0" or not (root / "dvc.lock").is_file():
        return report
    from dvc.repo import Repo
    from snakemake.io import IOFile

    with Repo(os.fspath(root)) as repo:
        stages = [stage for stage in repo.index.stages if stage.cmd]
        outs = [out.fs_path for stage in stages for out in stage.outs]
        verified, clean = [], []
        for stage in stages:
            changed = {str(o): status for o in stage.outs if (status := o.workspace_status())}
            # DVC's hash cache trusts a file `dvc checkout` copied from a corrupted cache file
            for out in (o for o in stage.outs if "deleted" not in changed.get(str(o), {}).values()):
                bad = corrupted(out)
                changed.update({str(out): {str(out): "corrupted"}} if bad else {})
                report["notes"] += [
                    f"{out} may not have the contents dvc.lock records: DVC's cached copy "
                    f"{copy} is corrupted (DVC removed it): delete {out}, then `dvc pull`."
                    for copy in bad
                ]
            data = [d for d in stage.deps if any(inside(d.fs_path, o) for o in outs)]
            missing = [name for name, status in changed.items() if "deleted" in status.values()]
            report["notes"] += [f"{name} is not here: dvc pull fetches it" for name in missing]
            if changed or any(dep.workspace_status() for dep in data):
                continue
            verified.append(stage)
            stale = [
                f"{path}: {', '.join(f'{k} {v}' for k, v in state.items())}"
                if isinstance(state, dict)  # parameters: key -> modified, new, deleted
                else f"{path} {state}"
                for dep in stage.deps
                if dep not in data
                for path, state in dep.workspace_status().items()
            ]
            if stale:
                report["notes"].append(
                    f"dvc.lock: stage '{stage.name}' is out of date ({'; '.join(stale)}); "
                    "`dvc repro` rebuilds it (plain Snakemake only what it built itself)"
                )
            else:
                clean.append(stage)
        moved_path = root / MOVED
        try:  # unreadable (a killed write): as if nothing had been moved
            moved = json.loads(moved_path.read_text()) if moved_path.is_file() else {}
        except ValueError:
            moved = {}
        names = sorted(files([out for stage in verified for out in stage.outs], root))
        clean_files = files([out for stage in clean for out in stage.outs], root)
        times = {name: (root / name).stat().st_mtime_ns for name in names}
        own = set()
        for name in names if records is not None else ():
            record = records.metadata(IOFile(name))
            if record is None or record.starttime is None or record.endtime is None:
                continue
            window = record.starttime - SLACK_S, record.endtime + SLACK_S
            if moved.get(name) == times[name] or window[0] <= times[name] / 1e9 <= window[1]:
                own.add(name)  # the job wrote it (and we may have moved its time since)
            elif name in clean_files and records.cleanup_metadata(IOFile(name)):
                report["forgotten"].append(name)
        report["verified"] = [stage.name for stage in verified]
        newest = max(times.values(), default=0)
        for name in (name for name in names if times[name] < newest):
            os.utime(root / name, ns=(newest, newest))
            report["touched"].append(name)
            moved.update({name: newest} if name in own else {})
        if own & set(report["touched"]):
            moved_path.parent.mkdir(parents=True, exist_ok=True)
            moved_path.write_text(json.dumps(moved))
    return report


def describe(report: dict[str, list]) -> list[str]:
    """Log lines for a report (none when there is nothing to say)."""
    lines = []
    if report["touched"]:
        lines.append(
            f"dvc.lock: {len(report['touched'])} files have the contents it records; gave them "
            f"one time so that Snakemake does not rebuild them ({', '.join(report['verified'])})"
        )
    if report["forgotten"]:
        lines.append(
            f"dvc.lock: dropped Snakemake's records of {len(report['forgotten'])} files that DVC "
            "put back after Snakemake built other versions of them"
        )
    return lines
