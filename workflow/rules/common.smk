# Helpers shared by every .smk file (config checks, the sweep's runs, datasets and sources,
# paths, per-wildcard parameters, the job environment). The sweep itself is planned by
# lfwcnn.sweep: a run ({run}) is one combination of sweep values, a dataset ({dataset}) the
# data/split part of a run, shared by runs that agree on it, and a source ({source}) the LFW
# images a dataset is prepared from. Without a sweep all three are named after data.variant.
# params carry numbers, enum values and paths built from names; a free-form string (title,
# person, path) goes through step_json, since Snakemake's --report embeds params unescaped.
import re
from pathlib import Path

from lfwcnn.config import check_config, step_json
from lfwcnn.errors import LfwcnnError
from lfwcnn.jobs import export_job_environment
from lfwcnn.sources import classify_source
from lfwcnn.sweep import plan_sweep
from lfwcnn.sweep import split_seed as plan_split_seed

export_job_environment(Path(workflow.basedir).parent / "src")
SCHEMA = Path(workflow.basedir, "schemas", "config.schema.yaml")

try:
    check_config(config, SCHEMA)
    SWEEP = plan_sweep(config, check=lambda merged: check_config(merged, SCHEMA))
    # url, archive or folder per source: decides whether download_lfw is part of the DAG.
    SOURCE_KIND = {
        name: "url" if source.config["source"] is None else classify_source(source.config["source"])
        for name, source in SWEEP.sources.items()
    }
except LfwcnnError as err:
    raise WorkflowError(str(err)) from None

RUNS = SWEEP.runs
DATASETS = SWEEP.datasets
SOURCES = SWEEP.sources
# the report describes one run in full (the first combination) and compares all of them
FIRST_RUN = SWEEP.first


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    run=_one_of(RUNS),
    dataset=_one_of(DATASETS),
    source=_one_of(SOURCES),
    seed=r"\d+",


# ----------------------------------------------------------------------------- lookups


def run_config(wildcards):
    return RUNS[wildcards.run].config


def dataset_config(wildcards):
    return DATASETS[wildcards.dataset].config


def source_config(wildcards):
    return SOURCES[wildcards.source].config


def job_config(wildcards):
    """The config a job works on: its run's, its dataset's, its source's, or the whole."""
    if "run" in wildcards.keys():
        return RUNS[wildcards.run].config
    if "dataset" in wildcards.keys():
        return DATASETS[wildcards.dataset].config
    if "source" in wildcards.keys():
        return {"data": source_config(wildcards)}
    return config


def config_section(name, without=()):
    """params: the job's config section ``name`` (less the keys ``without``, which do not
    change the step's output and so must not rerun it), as JSON (step_json), which the step
    receives as frozen lfwcnn.settings.Settings."""

    def section(wildcards):
        value = job_config(wildcards)[name]
        return step_json({key: item for key, item in value.items() if key not in without})

    return section


# ----------------------------------------------------------------------------- sources


def source_archive(wildcards):
    """Input of obtain_lfw: the downloaded archive, a local archive, or nothing (a folder)."""
    kind = SOURCE_KIND[wildcards.source]
    if kind == "url":
        return f"data/downloads/{wildcards.source}.tgz"
    if kind == "archive":
        return source_config(wildcards)["source"]
    return []


# ----------------------------------------------------------------------------- datasets


def dataset_raw(wildcards):
    return f"data/raw/{DATASETS[wildcards.dataset].source}"


def dataset_images(wildcards):
    return f"{dataset_raw(wildcards)}/images"


def dataset_record(wildcards):
    return f"{dataset_raw(wildcards)}/source.json"


def prepare_workers(wildcards):
    return dataset_config(wildcards)["data"]["workers"]


def dataset_split_seeds(name):
    """The distinct splits a dataset's runs use, the first seed's first."""
    split = DATASETS[name].config["split"]
    return list(dict.fromkeys(plan_split_seed(split, seed) for seed in config["seeds"]))


# ----------------------------------------------------------------------------- runs


def run_dataset_file(wildcards):
    return f"data/prepared/{RUNS[wildcards.run].dataset}/dataset.npz"


def run_source_record(wildcards):
    """The source.json of the images a run was trained and tested on."""
    return f"data/raw/{RUNS[wildcards.run].source}/source.json"


def run_split_seed(wildcards):
    return plan_split_seed(run_config(wildcards)["split"], wildcards.seed)


def run_split(wildcards):
    """The split file a run's training seed uses (its own, unless split.seed pins one)."""
    return f"data/split/{RUNS[wildcards.run].dataset}/seed{run_split_seed(wildcards)}.csv"


def run_backup(wildcards):
    """The training job's snapshot folder (a path: JSON, see step_json)."""
    return step_json(f"results/models/{wildcards.run}/seed{wildcards.seed}/backup")


def train_gpus(wildcards):
    return 0 if run_config(wildcards)["train"]["device"] == "cpu" else 1


def run_seed_files(run, pattern):
    return expand(pattern, run=run, seed=config["seeds"])


# ----------------------------------------------------------------------------- targets


def all_outputs():
    outputs = ["results/backprop/check.json", "results/report/index.html"]
    for name in DATASETS:
        outputs.append(f"data/prepared/{name}/dataset.npz")
        outputs += [f"data/split/{name}/seed{s}.csv" for s in dataset_split_seeds(name)]
    outputs += [f"results/eval/{name}/aggregate.json" for name in RUNS]
    if SWEEP.is_sweep:
        outputs.append("results/sweep/summary.csv")
    return sorted(set(outputs))
