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
        "data/downloads/{source}.tgz",
    params:
        url=source_url,
        checksums=checksum_args,
        retries=download_setting("retries"),
        timeout=download_setting("timeout_s"),
        deadline=download_setting("deadline_s"),
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/download_{source}.log",
    shell:
        "python -m lfwcnn.download --url {params.url:q} --out {output:q} {params.checksums}"
        " --retries {params.retries} --timeout {params.timeout} --deadline {params.deadline}"
        " 2> {log:q}"


rule obtain_lfw:
    input:
        raw_source_input,
    output:
        images=directory("data/raw/{source}/images"),
        record="data/raw/{source}/source.json",
    params:
        source=obtain_source,
        variant=obtain_variant,
        origin=obtain_origin,
        checksums=obtain_checksums,
        caps=extract_args,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/obtain_{source}.log",
    shell:
        "python -m lfwcnn.obtain --variant {params.variant} --source {params.source:q}"
        " {params.origin} {params.checksums} {params.caps} --images {output.images:q}"
        " --record {output.record:q} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        images=dataset_images,
        record=dataset_record,
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
    params:
        settings=prepare_args,
    threads: prepare_workers
    resources:
        mem_mb=2048,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/prepare_{dataset}.log",
    shell:
        "python -m lfwcnn.prepare --images {input.images:q} --source-record {input.record:q}"
        " --npz {output.npz:q} --manifest {output.manifest:q} --summary {output.summary:q}"
        " {params.settings} --workers {threads} > {log:q} 2>&1"


rule split_dataset:
    input:
        "data/prepared/{dataset}/dataset.npz",
    output:
        report(
            "data/split/{dataset}/seed{seed}.csv",
            caption="../report/split.rst",
            category="Data",
        ),
    params:
        settings=split_args,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/split_{dataset}_seed{seed}.log",
    shell:
        "python -m lfwcnn.split --dataset {input:q} --out {output:q} --seed {wildcards.seed}"
        " {params.settings} > {log:q} 2>&1"
