"""DVC on top of the Snakemake workflow: dvc.yaml, pull into a fresh clone, file times, exps.

The end-to-end test runs the real pipeline (synthetic LFW, tiny network, two epochs) in a
temporary git repository: ``dvc repro`` -> ``dvc push`` to a folder remote -> ``git clone``
-> ``dvc pull`` -> nothing to do for DVC nor Snakemake -> one parameter changed -> only the
stages it touches rerun -> ``dvc exp run``. The other tests check lfwcnn.dvc_glue on a
small DVC pipeline of shell commands, and that dvc.yaml is what lfwcnn.dvc_stages writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from snakemake.io import IOFile
from snakemake.persistence import MetadataRecord
from snakemake.persistence.file import FilePersistence
from workflow_runner import SNAKEFILE, make_project

from lfwcnn.dvc_glue import DISABLE_VARIABLE, sync_workspace

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTHING_TO_DO = "Nothing to be done"


def tool_env(tmp_path: Path) -> dict[str, str]:
    """The venv first on PATH (as if activated), DVC and git kept away from the user's setup."""
    env = dict(os.environ)
    env.pop("DVC_STAGE", None)
    env.pop(DISABLE_VARIABLE, None)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
        DVC_STUDIO_OFFLINE="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site"),
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


class Shell:
    """Run ``dvc``, ``git`` and ``python -m snakemake`` in a folder; output captured."""

    def __init__(self, tmp_path: Path):
        self.env = tool_env(tmp_path)

    def __call__(self, cwd: Path, *command: str, check: bool = True, timeout: float = 900):
        if command[0] in ("dvc", "snakemake"):
            command = (sys.executable, "-m", *command)
        started = time.time()
        done = subprocess.run(
            command,
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        if os.environ.get("LFWCNN_TEST_TIMES"):
            print(f"{time.time() - started:6.1f} s  {' '.join(command[1:4])}", file=sys.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n{output}")
        return done.returncode, output


def git_commit(run: Shell, repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def snapshot(
    folder: Path, skip: tuple[str, ...] = (".git", ".dvc", ".snakemake")
) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes (tools' own state left out)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] in skip or not path.is_file():
            continue
        files[relative.as_posix()] = path.read_bytes()
    return files


# ---------------------------------------------------------------- lfwcnn.dvc_glue, small DVC

TOY_DVC_YAML = """\
vars:
  - config/config.yaml
stages:
  first:
    cmd: mkdir -p out/first && echo ${n} > out/first/x.txt && echo two > out/first/y.txt
    params:
      - config/config.yaml:
          - n
    outs:
      - out/first
  second:
    cmd: cat out/first/x.txt out/first/y.txt > out/second.txt
    deps:
      - out/first
    outs:
      - out/second.txt
  third:
    cmd: cat out/second.txt code.txt > out/third.txt
    deps:
      - out/second.txt
      - code.txt
    outs:
      - out/third.txt
"""
TOY_FILES = ["out/first/x.txt", "out/first/y.txt", "out/second.txt", "out/third.txt"]


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Shell]:
    """A git + DVC repository with three stages of shell commands, reproduced once."""
    run = Shell(tmp_path)
    repo = tmp_path / "toy"
    (repo / "config").mkdir(parents=True)
    (repo / "config" / "config.yaml").write_text("n: 1\nother: a\n")
    (repo / "code.txt").write_text("code\n")
    (repo / "dvc.yaml").write_text(TOY_DVC_YAML)
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "init", "-q")
    run(repo, "dvc", "repro")
    return repo, run


def set_mtimes(repo: Path, seconds: dict[str, float]) -> None:
    for name, value in seconds.items():
        os.utime(repo / name, ns=(int(value * 1e9), int(value * 1e9)))


def mtimes(repo: Path, names=TOY_FILES) -> dict[str, int]:
    return {name: (repo / name).stat().st_mtime_ns for name in names}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def records(repo: Path) -> FilePersistence:
    """Snakemake's job records of ``repo`` (its own persistence class, as the workflow uses)."""
    return FilePersistence(nolock=True, path=repo / ".snakemake")


def age_like_after_pull(repo, now: float) -> None:
    """As after `dvc pull`: the downstream files older than the upstream ones."""
    set_mtimes(repo, {"out/third.txt": now - 300, "out/second.txt": now - 200,
                      "out/first/x.txt": now - 100, "out/first/y.txt": now - 150})


def test_files_dvc_vouches_for_get_one_time_and_times_only_move_forward(toy):
    repo, _ = toy
    now = time.time()
    age_like_after_pull(repo, now)
    before = mtimes(repo)
    report = sync_workspace(repo)
    after = mtimes(repo)
    assert report["verified"] == ["first", "second", "third"]
    assert len(set(after.values())) == 1
    assert set(after.values()) == {max(before.values())}
    assert sorted(report["touched"]) == sorted(n for n in TOY_FILES if before[n] < after[n])
    assert report["notes"] == []
    # nothing to do a second time
    assert sync_workspace(repo)["touched"] == []


def test_changed_content_keeps_its_time_and_so_does_what_was_built_from_it(toy):
    repo, _ = toy
    now = time.time()
    (repo / "out/second.txt").write_text("edited by hand\n")
    age_like_after_pull(repo, now)
    report = sync_workspace(repo)
    after = mtimes(repo)
    # first still matches dvc.lock; second was edited; third was built from the old second
    assert report["verified"] == ["first"]
    assert after["out/first/y.txt"] == after["out/first/x.txt"] == int((now - 100) * 1e9)
    assert after["out/second.txt"] == int((now - 200) * 1e9)
    assert after["out/third.txt"] == int((now - 300) * 1e9)


def test_changed_parameters_and_code_are_reported_not_hidden(toy):
    repo, _ = toy
    (repo / "config" / "config.yaml").write_text("n: 2\nother: a\n")
    (repo / "code.txt").write_text("new code\n")
    report = sync_workspace(repo)
    assert report["verified"] == ["first", "second", "third"]  # the contents still agree
    first, third = report["notes"]
    assert "stage 'first'" in first and "n modified" in first and "dvc repro" in first
    assert "stage 'third'" in third and "code.txt modified" in third


def test_missing_outputs_point_to_dvc_pull(toy):
    repo, _ = toy
    shutil.rmtree(repo / "out" / "first")
    report = sync_workspace(repo)
    assert report["notes"] == ["out/first is not here: dvc pull fetches it"]
    # second was built from a first that is not here; third from a second that is
    assert report["verified"] == ["third"]


def write_record(repo: Path, name: str, start: float, end: float) -> None:
    """A Snakemake job record for ``name`` (another version's parameters)."""
    record = MetadataRecord(rule="r", params=["'--epochs 5'"], starttime=start, endtime=end,
                            record_format_version=6)
    records(repo)._write_record(name, record)


def has_record(repo: Path, name: str) -> bool:
    return records(repo).metadata(IOFile(name)) is not None


def test_snakemake_records_of_files_dvc_put_back_are_dropped_others_kept(toy):
    repo, _ = toy
    written = (repo / "out/second.txt").stat().st_mtime
    # a job that ended before DVC wrote the file: it describes another version of it
    write_record(repo, "out/second.txt", written - 600, written - 500)
    # a job that wrote the file: its record stays
    write_record(repo, "out/third.txt", written - 5, (repo / "out/third.txt").stat().st_mtime)
    report = sync_workspace(repo, records(repo))
    assert report["forgotten"] == ["out/second.txt"]
    assert not has_record(repo, "out/second.txt") and has_record(repo, "out/third.txt")


def test_records_stay_when_the_stage_is_out_of_date(toy):
    repo, _ = toy
    written = (repo / "out/first/x.txt").stat().st_mtime
    write_record(repo, "out/first/x.txt", written - 600, written - 500)
    (repo / "config" / "config.yaml").write_text("n: 2\nother: a\n")
    assert sync_workspace(repo, records(repo))["forgotten"] == []
    assert has_record(repo, "out/first/x.txt")  # Snakemake sees the changed parameter
    # back to the parameter dvc.lock records: the file is DVC's, the record another job's
    (repo / "config" / "config.yaml").write_text("n: 1\nother: a\n")
    assert sync_workspace(repo, records(repo))["forgotten"] == ["out/first/x.txt"]
    assert not has_record(repo, "out/first/x.txt")


def test_records_of_files_snakemake_wrote_are_kept_after_their_time_moves(toy):
    repo, _ = toy
    written = (repo / "out/second.txt").stat().st_mtime
    write_record(repo, "out/second.txt", written - 1, written)  # the job wrote it
    set_mtimes(repo, {"out/first/x.txt": written + 100})  # an upstream file looks newer
    assert "out/second.txt" in sync_workspace(repo, records(repo))["touched"]  # moved forward...
    upstream = (repo / "out/first/x.txt").stat().st_mtime_ns
    assert (repo / "out/second.txt").stat().st_mtime_ns == upstream
    assert sync_workspace(repo, records(repo))["forgotten"] == []  # ...its record stays
    assert has_record(repo, "out/second.txt")


def test_a_corrupted_dvc_cache_file_is_named(toy):
    repo, _ = toy
    with Repo(str(repo)) as dvc:
        cache = dvc.cache.local
        copies = {}
        for name in ("out/second.txt", "out/first/x.txt"):  # a file output; one in a folder
            copy = Path(cache.oid_to_path(md5(repo / name)))
            copy.chmod(0o644)
            copy.write_text("garbage\n")
            (repo / name).write_text("garbage\n")  # what `dvc checkout` then puts in place
            copies[name] = copy.relative_to(repo).as_posix()
    notes = " ".join(sync_workspace(repo)["notes"])
    for out, name in (("out/second.txt", "out/second.txt"), ("out/first", "out/first/x.txt")):
        assert f"{out} may not have the contents dvc.lock records" in notes
        assert f"{copies[name]} is corrupted" in notes
    assert notes.count("is corrupted") == 2


def test_nothing_happens_without_dvc_lock_or_when_switched_off(toy, monkeypatch):
    repo, _ = toy
    set_mtimes(repo, {"out/third.txt": 1000, "out/second.txt": 2000})
    monkeypatch.setenv(DISABLE_VARIABLE, "0")
    assert sync_workspace(repo)["touched"] == []
    monkeypatch.delenv(DISABLE_VARIABLE)
    (repo / "dvc.lock").unlink()
    assert sync_workspace(repo)["touched"] == []
    assert mtimes(repo, ["out/third.txt", "out/second.txt"]) == {
        "out/third.txt": 1000 * 10**9,
        "out/second.txt": 2000 * 10**9,
    }


# ---------------------------------------------------------------- dvc.yaml against the rules

RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", re.S | re.M)


def test_the_committed_dvc_yaml_is_what_the_generator_writes():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "lfwcnn.dvc_stages"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "dvc.yaml").read_text(), (
        "dvc.yaml is stale: run `python -m lfwcnn.dvc_stages > dvc.yaml`"
    )


def test_every_computing_rule_belongs_to_one_dvc_stage():
    """The target rules name every rule whose outputs DVC should version, once."""
    rules = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        rules.update(RULE.findall(smk.read_text()))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    owner: dict[str, str] = {}
    for stage in stages:
        for rule in re.findall(r"rules\.(\w+)", rules[f"dvc_{stage}"]):
            assert owner.setdefault(rule, stage) == stage, f"{rule} in two stages"
    computing = {name for name, body in rules.items() if "shell:" in body or "script:" in body}
    # not DVC outputs (docs/dvc.md): the LFW archive (the user's input, 233 MB), and the
    # sweep summary (a sweep is refused under DVC, see the next test)
    assert computing - set(owner) == {"download_lfw", "summarize_sweep"}


def test_stage_deps_follow_the_import_closure(tmp_path):
    """A module a stage's code imports is a dependency, computed: add one, it appears."""
    from lfwcnn.dvc_stages import modules

    (tmp_path / "lfwcnn").mkdir()
    (tmp_path / "lfwcnn" / "__init__.py").write_text("")
    (tmp_path / "lfwcnn" / "a.py").write_text("from lfwcnn import b\n")
    (tmp_path / "lfwcnn" / "b.py").write_text("import lfwcnn.c\nimport numpy\n")
    (tmp_path / "lfwcnn" / "c.py").write_text('LOADER = ("lfwcnn", "templates")\n')
    (tmp_path / "lfwcnn" / "d.py").write_text("")
    (tmp_path / "lfwcnn" / "templates").mkdir()
    found = modules({"a"}, tmp_path)
    names = [p.split("/", 1)[1] for p in found]
    assert names == ["lfwcnn/__init__.py", "lfwcnn/a.py", "lfwcnn/b.py", "lfwcnn/c.py",
                     "lfwcnn/templates"]


def test_a_sweep_is_refused_inside_dvc_with_a_clear_message(lfw_tree, tmp_path):
    sweep = {
        "rate": {
            "slow": {"train": {"learning_rate": 0.0001}},
            "fast": {"train": {"learning_rate": 0.01}},
        }
    }
    project = make_project(tmp_path / "p", {"data": {"source": str(lfw_tree)}, "sweep": sweep})
    env = {**os.environ, "DVC_STAGE": "train"}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "-d",
        str(project),
        "-n",
        "dvc_train",
        "--configfile",
        str(project / "config" / "test.yaml"),
    ]
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "config.sweep is set" in done.stdout + done.stderr
    # without DVC the same sweep is planned as usual
    env.pop("DVC_STAGE")
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train_model" in done.stdout + done.stderr


# ---------------------------------------------------------------- end to end, real pipeline

PROJECT_FILES = [
    "workflow",
    "config",
    "src",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
]


def make_repo(repo: Path, lfw_tree: Path, run: Shell) -> None:
    """This project's workflow in a new git repository, configured for a small, fast run."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache")
    for name in PROJECT_FILES:
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy(source, target)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"].update(source=str(lfw_tree), min_images_per_person=5, image_size=24, workers=1)
    config["seeds"] = [0, 1]
    config["model"].update(filters=[4, 8, 8], dense_units=[16, 16])
    config["train"].update(epochs=2, device="cpu")
    config["backprop"]["cases"] = 5
    config["views"]["inversion"].update(faces=2, steps=5)
    config["views"]["filter_patterns"]["steps"] = 3
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run(repo, "git", "init", "-q")
    git_commit(run, repo, "workflow")


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w@-]+)'", output)


def lock_out_paths(repo: Path) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return [out["path"] for stage in lock.values() for out in stage["outs"]]


@pytest.mark.slow
def test_repro_push_clone_pull_change_and_experiment(lfw_tree, tmp_path):
    run = Shell(tmp_path)
    origin, remote = tmp_path / "origin", tmp_path / "remote"
    make_repo(origin, lfw_tree, run)

    # --- build everything through DVC
    _, output = run(origin, "dvc", "repro")
    assert stages_run(output) == [
        "source",
        "prepare",
        "split",
        "backprop",
        "train",
        "evaluate",
        "activations",
        "views",
        "report",
    ]
    assert "up to date" in run(origin, "dvc", "status")[1]
    assert NOTHING_TO_DO in run(origin, "snakemake", "-n")[1]
    # every output of the run is inside a DVC output (logs and the LFW link aside)
    tracked = lock_out_paths(origin)
    produced = [
        p.relative_to(origin).as_posix()
        for top in ("data", "results")
        for p in (origin / top).rglob("*")
        if p.is_file()
    ]
    assert produced
    for path in produced:
        assert any(path == out or path.startswith(out + "/") for out in tracked), path
    assert not (origin / "data/raw/funneled/images").is_symlink() or all(
        not out.startswith("data/raw/funneled/images") for out in tracked
    )
    assert sorted(lfw_tree.rglob("*.jpg"))  # the user's LFW copy is untouched

    # --- a machine-local folder remote (config.local: not committed), push, commit
    run(origin, "dvc", "remote", "add", "--local", "-d", "store", str(remote))
    run(origin, "dvc", "push")
    git_commit(run, origin, "pipeline run")

    # --- plain Snakemake still reruns what a changed parameter touches
    config_path = origin / "config" / "config.yaml"
    config_text = config_path.read_text()
    config_path.write_text(config_text.replace("epochs: 2", "epochs: 3"))
    dry = run(origin, "snakemake", "-n")[1]
    assert "train_model" in dry and "Params have changed" in dry, dry
    config_path.write_text(config_text)

    # --- a fresh clone: no remote configured -> clear message, nothing lost
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    before = snapshot(clone)
    code, output = run(clone, "dvc", "pull", check=False)
    assert code != 0 and "no default remote set" in output.lower(), output
    assert snapshot(clone) == before

    run(clone, "dvc", "remote", "add", "--local", "-d", "store", str(remote))
    run(clone, "dvc", "pull")
    assert "up to date" in run(clone, "dvc", "status")[1]
    dry = run(clone, "snakemake", "-n")[1]
    assert NOTHING_TO_DO in dry, dry
    report = (clone / "results/report/index.html").read_text()
    assert report.lstrip().lower().startswith("<!doctype html") and "</html>" in report
    assert "Rolling in the Deep" in report

    # same contents, newer time: still nothing to do; changed contents: rerun what uses it
    os.utime(clone / "data/prepared/funneled/dataset.npz")
    assert NOTHING_TO_DO in run(clone, "snakemake", "-n")[1]
    split0 = clone / "data/split/funneled/seed0.csv"
    rows = split0.read_text().splitlines()
    train_row = next(i for i, row in enumerate(rows) if row.endswith(",train"))
    test_row = next(i for i, row in enumerate(rows) if row.endswith(",test"))
    rows[train_row], rows[test_row] = rows[test_row], rows[train_row]
    split0.write_text("\n".join(rows) + "\n")
    dry = run(clone, "snakemake", "-n")[1]
    assert re.search(r"train_model\s+1\b", dry), dry  # seed 0 only
    run(clone, "dvc", "checkout", "--force", "data/split/funneled")
    assert NOTHING_TO_DO in run(clone, "snakemake", "-n")[1]

    # --- one parameter changed: only the stages that read it rerun
    models = snapshot(clone / "results/models")
    clone_config = clone / "config" / "config.yaml"
    clone_config.write_text(clone_config.read_text().replace("confidence: 0.95", "confidence: 0.9"))
    _, output = run(clone, "dvc", "repro")
    assert stages_run(output) == ["evaluate", "report"], output
    assert snapshot(clone / "results/models") == models
    aggregate = json.loads((clone / "results/eval/funneled/aggregate.json").read_text())
    assert aggregate["confidence"] == 0.9
    assert "up to date" in run(clone, "dvc", "status")[1]
    assert NOTHING_TO_DO in run(clone, "snakemake", "-n")[1]
    git_commit(run, clone, "confidence 0.9")
    run(clone, "dvc", "push")

    # --- an experiment with one more epoch, beside the baseline
    _, output = run(clone, "dvc", "exp", "run", "-S", "config/config.yaml:train.epochs=3")
    assert stages_run(output) == ["train", "evaluate", "activations", "views", "report"], output
    shown = json.loads(run(clone, "dvc", "exp", "show", "--json")[1])
    baseline = next(entry for entry in shown if entry["rev"] != "workspace")
    (experiment,) = baseline["experiments"]

    def first_seed_metrics(entry):
        data = entry["revs"][0]["data"] if "revs" in entry else entry["data"]
        return data["metrics"]["results/eval/funneled/seed0/metrics.json"]["data"]

    assert first_seed_metrics(experiment)["train"]["epochs"] == 3
    assert first_seed_metrics(baseline)["train"]["epochs"] == 2
    diff = run(clone, "dvc", "metrics", "diff", "--json")[1]
    assert json.loads(diff)["results/eval/funneled/seed0/metrics.json"]["train.epochs"] == {
        "old": 2,
        "new": 3,
        "diff": 1,
    }
    # every seed's accuracy is a metric of its own (a mapping, not the by_seed list)
    (workspace,) = json.loads(run(clone, "dvc", "metrics", "show", "--json")[1]).values()
    metrics = workspace["data"]["results/eval/funneled/aggregate.json"]["data"]
    assert set(metrics["accuracy_by_seed"]) == {"seed0", "seed1"}, metrics

    # back to the baseline: Snakemake's records of the 3-epoch models no longer apply
    run(clone, "git", "checkout", "-q", "--", ".")
    run(clone, "dvc", "checkout", "--force")
    assert "up to date" in run(clone, "dvc", "status")[1]
    dry = run(clone, "snakemake", "-n")[1]
    assert NOTHING_TO_DO in dry and "dropped Snakemake's records" in dry, dry

    # --- bad input: a remote that lacks objects; a corrupted cache file
    broken = tmp_path / "broken-remote"
    shutil.copytree(remote, broken)
    model_md5 = md5(clone / "results/models/funneled/seed0/model.keras")
    (broken / "files" / "md5" / model_md5[:2] / model_md5[2:]).unlink()
    run(clone, "dvc", "remote", "add", "--local", "-d", "-f", "store", str(broken))
    shutil.rmtree(clone / ".dvc" / "cache")
    shutil.rmtree(clone / "results" / "models")
    kept = snapshot(clone)
    code, output = run(clone, "dvc", "pull", check=False)
    assert code != 0 and "failed to" in output and model_md5 in output, output
    assert {k: v for k, v in snapshot(clone).items() if k in kept} == kept

    run(clone, "dvc", "remote", "add", "--local", "-d", "-f", "store", str(remote))
    run(clone, "dvc", "pull")
    dataset = clone / "data/prepared/funneled/dataset.npz"
    dataset_md5 = md5(dataset)
    cached = clone / ".dvc" / "cache" / "files" / "md5" / dataset_md5[:2] / dataset_md5[2:]
    cached.chmod(0o644)
    corrupted = bytearray(cached.read_bytes())
    corrupted[100] ^= 0xFF
    cached.write_bytes(bytes(corrupted))
    dataset.unlink()
    kept = snapshot(clone)
    code, output = run(clone, "dvc", "checkout", check=False)
    if code == 0:  # DVC copied the corrupted bytes without a word: the workflow says it
        output = run(clone, "snakemake", "-n")[1]
        named = f"{cached.relative_to(clone)} is corrupted"
        assert named in output.replace("\n", " "), output
        dataset.unlink()
        cached.unlink(missing_ok=True)  # DVC's check removed it already
    else:  # DVC noticed and refused
        assert "Checkout failed" in output, output
        assert not dataset.exists()
    after = snapshot(clone)
    assert [k for k in kept if after.get(k) != kept[k]] == []
    run(clone, "dvc", "pull")
    assert md5(dataset) == dataset_md5
    assert "up to date" in run(clone, "dvc", "status")[1]
    assert NOTHING_TO_DO in run(clone, "snakemake", "-n")[1]
