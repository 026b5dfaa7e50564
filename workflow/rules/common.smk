# Helpers shared by every .smk file (config checks, paths, the job environment).
import shlex
import sys
from pathlib import Path

from lfwcnn.config import check_config
from lfwcnn.errors import LfwcnnError
from lfwcnn.jobs import export_job_environment
from lfwcnn.sources import archive_for, classify_source

export_job_environment(Path(workflow.basedir).parent / "src")
PYTHON = shlex.quote(sys.executable)

try:
    check_config(config, Path(workflow.basedir, "schemas", "config.schema.yaml"))
    VARIANT = config["data"]["variant"]
    SOURCE = config["data"]["source"]
    # url, archive or folder: decides whether download_lfw is part of the DAG.
    SOURCE_KIND = "url" if SOURCE is None else classify_source(SOURCE)
except LfwcnnError as err:
    raise WorkflowError(str(err)) from None


wildcard_constraints:
    variant="original|funneled|deepfunneled",
    seed=r"\d+",


def source_url():
    return archive_for(VARIANT).url if SOURCE is None else SOURCE


def checksum_args():
    """The configured checksums, else the variant's known ones when its mirror is used."""
    sha256, md5 = config["data"]["sha256"], config["data"]["md5"]
    if not (sha256 or md5) and SOURCE is None:
        sha256, md5 = archive_for(VARIANT).sha256, archive_for(VARIANT).md5
    args = [f"--sha256 {sha256}"] * bool(sha256) + [f"--md5 {md5}"] * bool(md5)
    return " ".join(args)


def raw_source_input(wildcards):
    """Input of obtain_lfw: the downloaded archive, a local archive, or nothing."""
    if SOURCE_KIND == "url":
        return f"data/downloads/{wildcards.variant}.tgz"
    if SOURCE_KIND == "archive":
        return SOURCE
    return []


def obtain_source(wildcards, input):
    return input[0] if input else SOURCE


def split_seed(seed):
    """The split a training seed uses: its own, unless config pins split.seed."""
    pinned = config["split"]["seed"]
    return int(seed) if pinned is None else pinned


def train_split(wildcards):
    return f"data/split/{wildcards.variant}/seed{split_seed(wildcards.seed)}.csv"


def model_args():
    model = config["model"]
    return (
        f"--filters {' '.join(map(str, model['filters']))}"
        f" --kernel-size {model['kernel_size']} --pool-size {model['pool_size']}"
        f" --dense-units {' '.join(map(str, model['dense_units']))}"
        f" --dropout-rate {model['dropout_rate']}"
        f" --dropout-placement {model['dropout_placement']}"
    )


def schedule_args():
    train = config["train"]
    return (
        f"--epochs {train['epochs']} --batch-size {train['batch_size']}"
        f" --optimizer {train['optimizer']} --learning-rate {train['learning_rate']}"
        f" --device {train['device']}"
    )


def all_outputs():
    outputs = [
        f"data/prepared/{VARIANT}/dataset.npz",
        *(f"data/split/{VARIANT}/seed{split_seed(s)}.csv" for s in config["seeds"]),
        f"results/eval/{VARIANT}/aggregate.json",
        "results/backprop/check.json",
        "results/report/index.html",
    ]
    return sorted(set(outputs))
