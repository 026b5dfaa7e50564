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
REPORT_RUN = FIRST_RUN.name
REPORT_DATASET = FIRST_RUN.dataset
# the views of what the network learned (views.smk), of the reported run
VIEWS_ENABLED = FIRST_RUN.config["views"]["enabled"]


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    run=_one_of(RUNS),
    dataset=_one_of(DATASETS),
    source=_one_of(SOURCES),
    seed=r"\d+",


def job_config(wildcards):
    """The config a job works on: its run's, its dataset's, its source's, or the whole."""
    if "run" in wildcards.keys():
        return RUNS[wildcards.run].config
    if "dataset" in wildcards.keys():
        return DATASETS[wildcards.dataset].config
    if "source" in wildcards.keys():
        return {"data": SOURCES[wildcards.source].config}
    return config


def config_section(name, without=()):
    """params: the job's config section ``name`` (less the keys ``without``, which do not
    change the step's output and so must not rerun it), as JSON (step_json), which the step
    receives as frozen lfwcnn.settings.Settings."""

    def section(wildcards):
        value = job_config(wildcards)[name]
        return step_json({key: item for key, item in value.items() if key not in without})

    return section


def views_part(part):
    """params: the views section (views.smk) with only its key ``part``, the others do not
    change the job's outputs, so changing them must not rerun it. A dataset's job (landmarks)
    has no run, so it reads the views section of the whole config."""

    def section(wildcards):
        views = job_config(wildcards).get("views", config["views"])
        return step_json({part: views[part]})

    return section


def source_archive(wildcards):
    """Input of obtain_lfw: the downloaded archive, a local archive, or nothing (a folder)."""
    kind = SOURCE_KIND[wildcards.source]
    if kind == "url":
        return expand(rules.download_lfw.output.archive, source=wildcards.source)
    return SOURCES[wildcards.source].config["source"] if kind == "archive" else []


def of_dataset(output):
    """Input function: the file of obtain_lfw's ``output`` for the images the job's dataset
    is made of."""
    return lambda wildcards: expand(output, source=DATASETS[wildcards.dataset].source)[0]


def of_run(output):
    """Input function: the file of a data-stage ``output`` for the job's run: its dataset,
    its source, and the split its seed uses (its own, unless split.seed pins one)."""

    def file(wildcards):
        run = RUNS[wildcards.run]
        split = {"seed": run_split_seed(wildcards)} if "seed" in wildcards.keys() else {}
        return expand(output, dataset=run.dataset, source=run.source, **split)[0]

    return file


def prepare_workers(wildcards):
    return DATASETS[wildcards.dataset].config["data"]["workers"]


def dataset_split_seeds(name):
    """The distinct splits a dataset's runs use, the first seed's first."""
    split = DATASETS[name].config["split"]
    return list(dict.fromkeys(plan_split_seed(split, seed) for seed in config["seeds"]))


def run_split_seed(wildcards):
    return plan_split_seed(RUNS[wildcards.run].config["split"], wildcards.seed)


def of_report_run(files, seed=config["seeds"]):
    """Files of the reported run (its dataset and source too), for every seed or ``seed``."""
    wildcards = dict(run=REPORT_RUN, dataset=REPORT_DATASET, source=FIRST_RUN.source)
    return expand(files, seed=seed, **wildcards)


def of_each_seed(files):
    return expand(files, seed=config["seeds"], allow_missing=True)


def optional_report_inputs():
    """The backprop check when the workflow has it (the report says "not run" otherwise), the
    sweep's summary when there is a sweep, and the views unless views.enabled is false."""
    inputs = {}
    if rules.has("verify_backprop"):
        inputs["backprop_json"] = rules.verify_backprop.output.check_json
        inputs["backprop_html"] = rules.verify_backprop.output.fig4_html
    if SWEEP.is_sweep:
        inputs["sweep_summary"] = rules.summarize_sweep.output.summary
        inputs["sweep_figure"] = rules.summarize_sweep.output.figure
    if VIEWS_ENABLED:  # claims C7, C8 and the two other views (views.smk)
        views = rules.view_network.output
        report_names = {
            "dissection_counts": views.dissection,
            "dissection_figure": views.detectors,
            "dissection_top": views.top_units,
            "inversion_summary": views.inversion,
            "inversion_figure": views.reconstruction_grid,
            "pattern_grids": views.patterns,
            "gradcam_figure": views.gradcam,
            "gradcam_table": views.gradcam_faces,
        }
        for name, files in report_names.items():
            inputs[name] = of_report_run(files, ACTIVATION_SEED)
    return inputs


def report_timings():
    """The Snakemake benchmark files whose run times the report tables (the views' where the
    views run)."""
    timed = [rules.export_activations, rules.draw_activations, rules.draw_training]
    timed += [rules.find_landmarks, rules.view_network] if VIEWS_ENABLED else []
    return of_report_run([rule.benchmark for rule in timed], ACTIVATION_SEED)


def run_backup(wildcards):
    """The training job's snapshot folder (a path: JSON, see step_json)."""
    return step_json(f"results/models/{wildcards.run}/seed{wildcards.seed}/backup")


def on_slurm():
    """Whether jobs go to SLURM: submitted by the slurm executor, or running in its job step.
    A dry run (-n) runs no executor of its own, so it shows the local resources."""
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name in ("slurm", "slurm-jobstep")


def _train_uses_gpu(wildcards):
    return RUNS[wildcards.run].config["train"]["device"] != "cpu"


def train_per_gpu(wildcards):
    """train.per_gpu: trainings at once on each GPU; a resource, not a param (no rerun)."""
    return RUNS[wildcards.run].config["train"]["per_gpu"]


def _gpu_shared_on_slurm(wildcards):
    return _train_uses_gpu(wildcards) and train_per_gpu(wildcards) > 1 and on_slurm()


def train_gpus(wildcards):
    """The gpu resource: one GPU slot per training (locally: per_gpu slots per GPU, so
    --resources gpu=N with N = per_gpu x GPUs); none on a CPU, nor under SLURM where a
    training takes a GPU shard instead (train_gres)."""
    return 1 if _train_uses_gpu(wildcards) and not _gpu_shared_on_slurm(wildcards) else 0


def train_gres(wildcards):
    """SLURM only: a GPU shard (sbatch --gres=shard:1) where trainings share GPUs; else none."""
    return "shard:1" if _gpu_shared_on_slurm(wildcards) else None


def all_outputs():
    """Everything a plain `snakemake` builds (the rule files are all included by then)."""
    outputs = [rules.verify_backprop.output, rules.write_report.output]
    for name in DATASETS:
        outputs += expand(rules.prepare_dataset.output.npz, dataset=name)
        seeds = dataset_split_seeds(name)
        outputs += expand(rules.split_dataset.output.split_csv, dataset=name, seed=seeds)
    outputs += expand(rules.aggregate_seeds.output.summary, run=list(RUNS))
    outputs += [rules.summarize_sweep.output.table] if SWEEP.is_sweep else []
    # the views (views.smk) of the reported run's activation seed, also where a report
    # written before them is otherwise up to date
    if VIEWS_ENABLED:
        outputs += of_report_run(list(rules.view_network.output), ACTIVATION_SEED)
    return outputs
