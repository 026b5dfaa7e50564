"""Run the real Snakemake workflow in a scratch project folder, as a user would from the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SHARED_LFW = ROOT.parent / "shared" / "lfw"
SHARED_LFW_REASON = f"needs the real LFW images in {SHARED_LFW} (absent in this checkout)"


def make_project(folder: Path, overlay: dict) -> Path:
    """A working folder with the repo's config.yaml and ``overlay`` as config/test.yaml."""
    (folder / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", folder / "config" / "config.yaml")
    (folder / "config" / "test.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return folder


def snakemake(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``snakemake`` from the venv, in ``folder``, with the overlay config; output captured."""
    command = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(folder),
        "--cores", "2", *args, "--configfile", str(folder / "config" / "test.yaml"),
    ]  # --configfile last: it takes several values and would swallow the targets
    return subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
    )


PLANNED_JOBS_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

snakefile, folder, executor, *targets = sys.argv[1:]
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    flow = api.workflow(ResourceSettings(), ConfigSettings(
        configfiles=[Path(folder, "config", "test.yaml")]), snakefile=Path(snakefile),
        workdir=Path(folder))
    flow.dag(DAGSettings(targets=set(targets)))
    workflow = flow._workflow  # Snakemake's DAG, read only (as lfwcnn.dvc_stages reads it)
    options = lambda job: {}
    if executor:  # the executor a run would submit with, as workflow.execute() sets it
        from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry
        workflow._executor_plugin = ExecutorPluginRegistry().get_plugin(executor)
        if executor == "slurm":  # the GPU options of its sbatch and of the job's srun
            from snakemake_executor_plugin_slurm.utils import set_gres_string
            from snakemake_executor_plugin_slurm_jobstep import get_gpu_setting
            options = lambda job: {"sbatch": set_gres_string(job), "srun": get_gpu_setting(job)}
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    print(json.dumps([{"rule": job.rule.name, "wildcards": dict(job.wildcards.items()),
                       "input": dict(job.input.items()), "params": dict(job.params.items()),
                       "resources": dict(job.resources.items()), **options(job)}
                      for job in workflow.dag.jobs], default=str))
"""


def planned_jobs(folder: Path, *targets: str, executor: str = "") -> list[dict]:
    """The jobs Snakemake plans for ``targets`` in ``folder`` (with the overlay config): each
    one's rule, wildcards, named inputs, params and resources, as a step would be given them.
    ``executor``: plan as that executor plugin would run them (default: locally); with
    ``slurm`` each job also shows the GPU options of its sbatch and of its job step's srun."""
    done = subprocess.run([sys.executable, "-c", PLANNED_JOBS_SCRIPT, str(SNAKEFILE),
                           str(folder), executor, *targets], cwd=folder, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
