# Data stage: obtain LFW (download, local archive or folder), prepare the arrays, split them.

# Light jobs stay on the submit host under a cluster executor (the download needs the
# internet, which compute nodes often lack).
localrules:
    download_lfw,
    obtain_lfw,
    split_dataset,


rule download_lfw:
    output:
        "data/downloads/{variant}.tgz",
    params:
        url=source_url(),
        checksums=checksum_args(),
        retries=config["data"]["download"]["retries"],
        timeout=config["data"]["download"]["timeout_s"],
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/download_{variant}.log",
    shell:
        "python -m lfwcnn.download --url {params.url:q} --out {output:q} {params.checksums}"
        " --retries {params.retries} --timeout {params.timeout} 2> {log:q}"


rule obtain_lfw:
    input:
        raw_source_input,
    output:
        images=directory("data/raw/{variant}/images"),
        record="data/raw/{variant}/source.json",
    params:
        source=obtain_source,
        origin=f"--origin {shlex.quote(source_url())}" if SOURCE_KIND == "url" else "",
        # a downloaded archive was verified by the download rule
        checksums="" if SOURCE_KIND == "url" else checksum_args(),
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/obtain_{variant}.log",
    shell:
        "python -m lfwcnn.obtain --variant {wildcards.variant} --source {params.source:q}"
        " {params.origin} {params.checksums} --images {output.images:q} --record {output.record:q} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        images="data/raw/{variant}/images",
        record="data/raw/{variant}/source.json",
    output:
        npz="data/prepared/{variant}/dataset.npz",
        manifest=report(
            "data/prepared/{variant}/manifest.csv",
            caption="../report/manifest.rst",
            category="Data",
        ),
        summary=report(
            "data/prepared/{variant}/summary.json",
            caption="../report/summary.rst",
            category="Data",
        ),
    params:
        min_images=config["data"]["min_images_per_person"],
        rows=config["data"]["crop"]["rows"],
        cols=config["data"]["crop"]["cols"],
        size=config["data"]["image_size"],
    threads: config["data"]["workers"]
    resources:
        mem_mb=2048,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/prepare_{variant}.log",
    shell:
        "python -m lfwcnn.prepare --images {input.images:q} --source-record {input.record:q}"
        " --npz {output.npz:q} --manifest {output.manifest:q} --summary {output.summary:q}"
        " --min-images {params.min_images} --crop-rows {params.rows} --crop-cols {params.cols}"
        " --size {params.size} --workers {threads} > {log:q} 2>&1"


rule split_dataset:
    input:
        "data/prepared/{variant}/dataset.npz",
    output:
        report(
            "data/split/{variant}/seed{seed}.csv",
            caption="../report/split.rst",
            category="Data",
        ),
    params:
        test_fraction=config["split"]["test_fraction"],
        stratify="--stratify" if config["split"]["stratify"] else "",
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/data/split_{variant}_seed{seed}.log",
    shell:
        "python -m lfwcnn.split --dataset {input:q} --out {output:q} --seed {wildcards.seed}"
        " --test-fraction {params.test_fraction} {params.stratify} > {log:q} 2>&1"
