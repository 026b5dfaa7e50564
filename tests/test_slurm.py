"""The workflow through a real one-node SLURM cluster, with workflow/profiles/slurm.

`bash .ci/slurm/start-slurm.sh` (root) installs and starts the cluster; .ci/run does so before
the tests. They also need the executor plugin, the `slurm` extra (`pip install -e '.[slurm]'`).
Where either is missing these tests are skipped with the reason, unless LFWCNN_REQUIRE_SLURM=1,
which makes that a failure (CI sets it, so it cannot pass by skipping).
Every job's rule is read back from SLURM's accounting (sacct), not from Snakemake's word.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_runner import ROOT, SNAKEFILE, make_project

from lfwcnn.dataset import load_dataset

pytestmark = pytest.mark.slurm

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
START_SCRIPT = ".ci/slurm/start-slurm.sh"
# What the pipeline test asks for: the report, so every stage; rules of the stages below.
TARGETS = ["results/report/index.html"]
# Rules that must go through sbatch; the others run on the submit host (localrules).
CLUSTER_RULES = {"prepare_dataset", "verify_backprop", "train_model", "evaluate_model",
                 "export_activations"}
LOCAL_RULES = {"obtain_lfw", "split_dataset", "aggregate_seeds", "draw_training",
               "draw_activations", "write_report"}
GPU_RULES = {"train_model"}  # declare gpu=1 (train.device auto)
# Tiny jobs: look at them after 2 s, not the profile's 20 s. The status command stays the
# profile's (squeue, which reports a cancelled job as CANCELLED).
QUICK_STATUS = ("--slurm-init-seconds-before-status-checks", "2")


def _run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None when a cluster with accounting is up."""
    if shutil.which("sbatch") is None:
        return "no SLURM on this machine (sbatch not found)"
    nodes = _run("sinfo", "-h", "-o", "%T")
    if nodes.returncode != 0:
        return f"SLURM is installed but slurmctld does not answer ({nodes.stderr.strip()})"
    if not re.search(r"^(idle|mixed|allocated|completing)", nodes.stdout, re.MULTILINE):
        return f"no SLURM node is up (sinfo: {' '.join(nodes.stdout.split())})"
    accounting = _run("sacct", "-n", "-X", "-S", "now")
    if accounting.returncode != 0:
        return f"SLURM accounting does not answer (sacct: {accounting.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(slurm_plugin) -> None:
    """The plugin first (conftest's slurm_plugin), then a cluster that answers."""
    problem = cluster_problem()
    if problem:
        message = f"{problem}; `bash {START_SCRIPT}` as root installs and starts a one-node cluster"
        if os.environ.get("LFWCNN_REQUIRE_SLURM") == "1":
            pytest.fail(f"LFWCNN_REQUIRE_SLURM=1 but {message}")
        pytest.skip(message)


def snakemake_command(folder: Path, *args: str, snakefile: Path = SNAKEFILE) -> list[str]:
    """Snakemake with the slurm profile, as a user would run it on a login node."""
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(folder),
            "--workflow-profile", str(PROFILE), *QUICK_STATUS, *args]


def slurm_snakemake(folder: Path, *args: str, timeout: float = 300) -> str:
    """Run the workflow through SLURM in ``folder``; return everything it printed."""
    command = snakemake_command(folder, *args, "--configfile", str(folder / "config/test.yaml"))
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                            timeout=timeout, check=False)
    return f"[exit {result.returncode}]\n{result.stdout}{result.stderr}"


def exit_code(output: str) -> int:
    return int(re.match(r"\[exit (-?\d+)\]", output).group(1))


def run_id(output: str) -> str:
    """The SLURM job name the executor gave every job of one Snakemake run."""
    found = re.search(r"SLURM run ID: (\S+)", output)
    assert found, output
    return found.group(1)


def sacct_jobs(name: str) -> list[dict]:
    """SLURM's accounting of the jobs named ``name``: id, state, rule, allocated resources."""
    result = _run("sacct", "-X", "-n", "-P", "-S", "now-6hours", "--name", name,
                  "--format=JobIDRaw,State,Comment,AllocTRES")
    assert result.returncode == 0, result.stderr
    jobs = []
    for line in result.stdout.splitlines():
        job_id, state, comment, tres = line.split("|")
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        jobs.append({"id": job_id, "state": state.split()[0], "rule": rule,
                     "comment": comment, "tres": tres})
    return jobs


def overlay(lfw_tree: Path) -> dict:
    return {
        "data": {"source": str(lfw_tree), "min_images_per_person": 5, "image_size": 32},
        "seeds": [0, 1],
        "train": {"epochs": 1},
        "backprop": {"cases": 5},
        "views": {"enabled": False},
    }


def wait_until_running(name: str, rule: str, timeout: float = 120) -> str:
    """The SLURM id of ``rule``'s job in run ``name`` once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = _run("squeue", "-h", "--name", name, "-o", "%i|%T|%k")
        for line in queue.stdout.splitlines():
            job_id, state, comment = line.split("|")
            if state == "RUNNING" and comment.startswith(f"rule_{rule}"):
                return job_id
        time.sleep(0.2)
    raise AssertionError(f"{rule} of run {name} did not start running in SLURM in {timeout} s")


def test_pipeline_through_slurm_survives_a_bad_partition_and_a_killed_job(
    slurm_cluster, lfw_tree, tmp_path
):
    project = make_project(tmp_path / "p", overlay(lfw_tree))

    # 1. A partition the cluster lacks: sbatch's own message; the local obtain step still ran.
    bad = slurm_snakemake(
        project, *TARGETS, "--set-resources",  # takes several values: after the targets
        *(f"{rule}:slurm_partition=no_such_partition" for rule in sorted(CLUSTER_RULES)),
    )
    assert exit_code(bad) != 0, bad
    assert "SLURM sbatch failed" in bad and "invalid partition specified" in bad, bad
    assert sacct_jobs(run_id(bad)) == []
    assert "localrule obtain_lfw:" in bad, bad
    assert (project / "data/raw/funneled/source.json").is_file()

    # 2. The right partition; SLURM kills verify_backprop while it runs (scancel, as it would
    #    at its time or memory limit). The other jobs finish (keep-going in the profile).
    log_path = tmp_path / "killed-run.log"
    command = snakemake_command(project, *TARGETS, "--configfile",
                                str(project / "config/test.yaml"))
    with open(log_path, "w") as log:
        running = subprocess.Popen(command, cwd=project, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "SLURM run ID:" not in log_path.read_text():
                assert running.poll() is None and time.monotonic() < deadline, (
                    log_path.read_text())
                time.sleep(0.1)
            name = run_id(log_path.read_text())
            victim = wait_until_running(name, "verify_backprop")
            assert _run("scancel", victim).returncode == 0
            returncode = running.wait(timeout=600)
        finally:
            if running.poll() is None:
                running.kill()
    killed = log_path.read_text()
    assert returncode != 0, killed
    assert f"SLURM-job '{victim}' failed, SLURM status is: 'CANCELLED'" in killed, killed
    jobs = sacct_jobs(name)
    assert {job["rule"] for job in jobs} == CLUSTER_RULES, jobs
    for job in jobs:
        expected = "CANCELLED" if job["rule"] == "verify_backprop" else "COMPLETED"
        assert job["state"] == expected, job
        # the gpu resource became sbatch --gpus: SLURM allotted a GPU to those jobs only
        assert ("gres/gpu=1" in job["tres"]) == (job["rule"] in GPU_RULES), job
    # run 1 obtained the images; the report waits for the killed job
    for rule in LOCAL_RULES - {"obtain_lfw", "write_report"}:
        assert f"localrule {rule}:" in killed, (rule, killed)
    assert not (project / "results/backprop/check.json").exists()
    assert not (project / TARGETS[0]).exists()
    # each training job saw the GPU SLURM gave it as its CUDA_VISIBLE_DEVICES
    for seed in (0, 1):
        info = json.loads((project / f"results/models/funneled/seed{seed}/train.json").read_text())
        assert info["cuda_visible_devices"] in {"0", "1"}, info
        assert info["gpu_source"] == "slurm", info

    # 3. The rerun picks up where it stopped: the killed job again, then the report.
    again = slurm_snakemake(project, *TARGETS)
    assert exit_code(again) == 0, again
    rerun = sacct_jobs(run_id(again))
    assert [(job["rule"], job["state"]) for job in rerun] == [("verify_backprop", "COMPLETED")]
    assert "localrule write_report:" in again, again
    assert not re.search(r"^(local)?rule (?!verify_backprop|write_report)", again, re.MULTILINE)

    data = load_dataset(project / "data/prepared/funneled/dataset.npz")
    assert data.images.shape == (30, 32, 32, 3)
    assert json.loads((project / "results/backprop/check.json").read_text())["pass"] is True
    assert "<html" in (project / TARGETS[0]).read_text()[:500].lower()
    done = slurm_snakemake(project, "-n", *TARGETS)
    assert "Nothing to be done" in done, done


PROBE_SNAKEFILE = """
# Three jobs through SLURM: two declare gpu=1 and wait for each other, so that they hold their
# GPUs at the same time on the one node; one declares none.
from lfwcnn.jobs import export_job_environment

export_job_environment({src!r})


rule all:
    input:
        expand("claims/{{name}}.json", name=["gpu_a", "gpu_b", "cpu"]),


rule claim:
    output:
        "claims/{{name}}.json",
    threads: 1
    resources:
        gpu=lambda wildcards: 0 if wildcards.name == "cpu" else 1,
    shell:
        "python -m lfwcnn.devices --gpus {{resources.gpu}} --json {{output:q}}"
        " && if [ {{resources.gpu}} -gt 0 ]; then for i in $(seq 600);"
        " do [ -e claims/gpu_a.json ] && [ -e claims/gpu_b.json ] && exit 0; sleep 0.1; done;"
        " exit 1; fi"
"""


def test_gpu_resource_reaches_the_job_as_its_visible_devices(slurm_cluster, tmp_path):
    gres = _run("sinfo", "-h", "-o", "%G").stdout
    if not re.search(r"gpu:(\d+)", gres) or int(re.search(r"gpu:(\d+)", gres).group(1)) < 2:
        pytest.skip(f"the cluster has fewer than 2 GPUs as gres ({gres.strip()});"
                    f" {START_SCRIPT} gives 2 stand-ins on a machine without GPUs")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(PROBE_SNAKEFILE.format(src=str(ROOT / "src")))
    command = snakemake_command(tmp_path, snakefile=snakefile)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output

    claims = {name: json.loads((tmp_path / f"claims/{name}.json").read_text())
              for name in ("gpu_a", "gpu_b", "cpu")}
    for name in ("gpu_a", "gpu_b"):
        assert claims[name]["gpu_source"] == "slurm", claims[name]
        assert claims[name]["slurm_job_id"], claims[name]
    # one card each, and not the same card: SLURM's gres reached CUDA_VISIBLE_DEVICES
    assert {claims["gpu_a"]["cuda_visible_devices"], claims["gpu_b"]["cuda_visible_devices"]} \
        == {"0", "1"}, claims
    assert claims["cpu"]["cuda_visible_devices"] == "" and claims["cpu"]["gpus_requested"] == 0

    jobs = {job["comment"].removeprefix("rule_claim_wildcards_"): job
            for job in sacct_jobs(run_id(output))}
    assert set(jobs) == {"gpu_a", "gpu_b", "cpu"}, jobs
    for name, claim in claims.items():
        assert jobs[name]["id"] == claim["slurm_job_id"]
        assert ("gres/gpu=1" in jobs[name]["tres"]) == (name != "cpu"), jobs[name]
