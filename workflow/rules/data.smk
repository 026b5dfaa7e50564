# Data stage: obtain LFW (download, local archive or folder), prepare the arrays, split them.
# {source}: where the images come from, downloaded and obtained once however many datasets
# use it; {dataset}: the prepared arrays and their splits, shared by the runs that agree on
# the data/split config (see common.smk and lfwcnn.sweep).


# Light jobs stay on the submit host under a cluster executor (the download needs the
# internet, which compute nodes often lack).
localrules:
    download_lfw,
    obtain_lfw,
    split_dataset,


rule download_lfw:
    output:
        archive="data/downloads/{source}.tgz",
    log:
        "logs/data/download_{source}.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        data=config_section("data", without=["extract"]),
    script:
        "../scripts/step.py"


rule obtain_lfw:
    input:
        archive=source_archive,
    output:
        images=directory("data/raw/{source}/images"),
        record="data/raw/{source}/source.json",
    log:
        "logs/data/obtain_{source}.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        data=config_section("data", without=["download"]),
    script:
        "../scripts/step.py"


rule prepare_dataset:
    input:
        images=of_dataset(rules.obtain_lfw.output.images),
        record=of_dataset(rules.obtain_lfw.output.record),
    output:
        npz="data/prepared/{dataset}/dataset.npz",
        manifest=report(
            "data/prepared/{dataset}/manifest.csv",
            caption="../report/manifest.rst",
            category="Data",
        ),
        summary=report(
            "data/prepared/{dataset}/summary.json",
            caption="../report/summary.rst",
            category="Data",
        ),
    log:
        "logs/data/prepare_{dataset}.log",
    conda:
        "../envs/lfwcnn.yaml"
    threads: prepare_workers
    resources:
        mem_mb=2048,
    params:
        # the source's settings and the number of workers do not change the arrays
        data=config_section("data", without=["download", "extract", "workers"]),
    script:
        "../scripts/step.py"


rule split_dataset:
    input:
        dataset="data/prepared/{dataset}/dataset.npz",
    output:
        split_csv=report(
            "data/split/{dataset}/seed{seed}.csv",
            caption="../report/split.rst",
            category="Data",
        ),
    log:
        "logs/data/split_{dataset}_seed{seed}.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        split=config_section("split"),
    script:
        "../scripts/step.py"
