"""The workflow profiles: both load, the slurm one keeps light rules off the cluster.

None of these needs a SLURM cluster (tests/test_slurm.py runs the workflow through one): a
dry run shows what a profile sets, and jobs of local rules never reach sbatch. The slurm
profile's tests need the executor plugin, the `slurm` extra: without it they skip (conftest's
slurm_plugin), and fail under LFWCNN_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from workflow_runner import ROOT, SNAKEFILE, make_project, planned_jobs

PROFILES = ROOT / "workflow" / "profiles"
# Rules that run on the submit host under the slurm profile (their rules file says localrules);
# add the report and plot rules here as they land.
LIGHT_RULES = {"download_lfw", "obtain_lfw", "split_dataset"}
# A slurm-profile run waits this long (s) before it first looks at SLURM, even with no job there.
QUICK_STATUS = ("--slurm-init-seconds-before-status-checks", "1")


def run_with_profile(project: Path, profile: str, *args: str,
                     python: tuple[str, ...] = (sys.executable,), env: dict | None = None):
    command = [*python, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(project),
               "--workflow-profile", str(PROFILES / profile), *args,
               "--configfile", str(project / "config" / "test.yaml")]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300,
                            check=False, env=env)
    return result.returncode, result.stdout + result.stderr


def overlay(source: str) -> dict:
    return {"data": {"source": source, "min_images_per_person": 5, "image_size": 32},
            "seeds": [0, 1], "backprop": {"cases": 5}}


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_profile_loads_and_sets_resources(profile, lfw_tree, tmp_path, request):
    if profile == "slurm":
        request.getfixturevalue("slurm_plugin")
    settings = yaml.safe_load((PROFILES / profile / "config.yaml").read_text())
    assert isinstance(settings, dict) and settings["default-resources"]["gpu"] == 0
    project = make_project(tmp_path / "p", overlay(str(lfw_tree)))
    # every key must be an option of Snakemake (or of its slurm plugin): else it stops here
    code, output = run_with_profile(project, profile, "-n", "results/report/index.html")
    assert code == 0, output
    assert f"Using workflow specific profile {PROFILES / profile}" in output
    jobs = job_resources(output)
    assert {"prepare_dataset", "train_model", "write_report"} <= set(jobs), output
    for rule, resources in jobs.items():
        assert int(resources["mem_mb"]) >= 2048, (rule, resources)
        assert resources["gpu"] == ("1" if rule == "train_model" else "0"), (rule, resources)
        # the slurm profile gives every job a wall time (sbatch -t, minutes), training more
        runtime = {"default": None, "slurm": "240" if rule == "train_model" else "60"}[profile]
        assert resources.get("runtime") == runtime, (rule, resources)


def job_resources(output: str) -> dict[str, dict]:
    """Each rule's ``resources:`` line in a dry run, as a mapping (the last job's per rule)."""
    found, rule = {}, None
    for line in output.splitlines():
        heading = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if heading:
            rule = heading.group(1)
        elif line.strip().startswith("resources:") and rule:
            items = line.split("resources:", 1)[1].split(", ")
            found[rule] = dict(item.strip().split("=", 1) for item in items)
    return found


def test_slurm_profile_runs_light_rules_on_the_submit_host(
    slurm_plugin, lfw_archive, http_server, tmp_path
):
    """download, obtain and split never reach sbatch: this passes on a machine without SLURM."""
    http_server.route("/lfw-funneled.tgz", lfw_archive.read_bytes())
    project = make_project(tmp_path / "p", overlay(http_server.url("/lfw-funneled.tgz")))
    code, output = run_with_profile(project, "slurm", *QUICK_STATUS,
                                    "data/raw/funneled/source.json")
    assert code == 0, output
    # the prepare step is a cluster job: make its output with the local profile instead
    code, local = run_with_profile(project, "default", "--cores", "2",
                                   "data/prepared/funneled/dataset.npz")
    assert code == 0, local
    code, split = run_with_profile(project, "slurm", *QUICK_STATUS,
                                   "data/split/funneled/seed0.csv", "data/split/funneled/seed1.csv")
    assert code == 0, split
    for rule in sorted(LIGHT_RULES):
        assert f"localrule {rule}:" in output + split, (rule, output + split)
    assert "SLURM jobid" not in output + split
    assert (project / "data/split/funneled/seed1.csv").is_file()


def test_slurm_trainings_sharing_gpus_ask_for_a_shard(slurm_plugin, tmp_path):
    """Under SLURM train.per_gpu > 1 asks sbatch for a GPU shard (--gres=shard:1, SLURM sets
    CUDA_VISIBLE_DEVICES for it) and no whole GPU, neither in sbatch nor in the job's srun;
    per_gpu 1 asks for a GPU as before; a CPU training for neither. The options are the
    plugins' own (set_gres_string, get_gpu_setting) for the jobs Snakemake plans: no cluster."""
    shares = {"one": {"train": {"per_gpu": 1}}, "three": {"train": {"per_gpu": 3}},
              "cpu": {"train": {"per_gpu": 3, "device": "cpu"}}}
    project = make_project(tmp_path / "p", {"seeds": [0], "sweep": {"share": shares}})
    jobs = planned_jobs(project, *(f"results/models/{run}/seed0/model.keras" for run in shares),
                        executor="slurm")
    trainings = {job["wildcards"]["run"]: job for job in jobs if job["rule"] == "train_model"}
    options = {run: (job["sbatch"].strip(), job["srun"].strip(), job["resources"]["gpu"])
               for run, job in trainings.items()}
    assert options == {"one": ("--gpus=1", "--gpus=1", 1), "three": ("--gres=shard:1", "", 0),
                       "cpu": ("", "", 0)}
    assert trainings["three"]["resources"]["per_gpu"] == 3


def test_missing_executor_plugin_is_named(lfw_tree, tmp_path, request):
    """A Python without snakemake-executor-plugin-slurm: Snakemake names the executor it lacks.

    The environment is this one with the plugin's files left out: its site-packages, entry by
    entry, as links in an overlay folder (python -S: the overlay replaces site-packages). Without
    the `slurm` extra that is the environment as it is, and the second half is skipped.
    """
    site = Path(sysconfig.get_paths()["purelib"])
    overlay_dir = tmp_path / "site-packages-without-slurm-plugin"
    overlay_dir.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith("snakemake_executor_plugin_slurm"):
            (overlay_dir / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(overlay_dir), str(ROOT / "src")])}
    project = make_project(tmp_path / "p", overlay(str(lfw_tree)))
    code, output = run_with_profile(project, "slurm", python=(sys.executable, "-S"), env=env)
    assert code != 0
    assert "argument --executor/-e: invalid choice: 'slurm'" in output, output[-2000:]
    assert not (project / "data").exists()
    # the same interpreter with the plugin back (site-packages restored) gets past that point
    request.getfixturevalue("slurm_plugin")
    code, output = run_with_profile(project, "slurm", "-n")
    assert code == 0, output
