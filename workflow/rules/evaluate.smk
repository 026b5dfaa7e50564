# Evaluation stage (claim C2): per-seed test metrics, then the verdict across seeds.


localrules:
    aggregate_seeds,


rule evaluate_model:
    input:
        dataset="data/prepared/{variant}/dataset.npz",
        split=train_split,
        model="results/models/{variant}/seed{seed}/model.keras",
        info="results/models/{variant}/seed{seed}/train.json",
    output:
        metrics="results/eval/{variant}/seed{seed}/metrics.json",
        per_class=report(
            "results/eval/{variant}/seed{seed}/per_class.csv",
            caption="../report/per_class.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "seed": "{seed}", "table": "per class"},
        ),
        confusion=report(
            "results/eval/{variant}/seed{seed}/confusion.csv",
            caption="../report/confusion.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "seed": "{seed}", "table": "confusion matrix"},
        ),
        figure=report(
            "results/eval/{variant}/seed{seed}/confusion.png",
            caption="../report/confusion.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "confusion matrix"},
        ),
        predictions=report(
            "results/eval/{variant}/seed{seed}/predictions.csv",
            caption="../report/predictions.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "seed": "{seed}", "table": "predictions"},
        ),
    params:
        confidence=config["evaluate"]["confidence"],
        out_dir="results/eval/{variant}/seed{seed}",
    threads: 1
    resources:
        mem_mb=2048,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/eval/{variant}/seed{seed}.log",
    shell:
        "python -m lfwcnn.evaluate --dataset {input.dataset:q} --split {input.split:q}"
        " --model {input.model:q} --train-info {input.info:q}"
        " --confidence {params.confidence} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule aggregate_seeds:
    input:
        expand("results/eval/{{variant}}/seed{seed}/metrics.json", seed=config["seeds"]),
    output:
        summary=report(
            "results/eval/{variant}/aggregate.json",
            caption="../report/aggregate.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "table": "verdict across seeds"},
        ),
        by_seed=report(
            "results/eval/{variant}/accuracy_by_seed.csv",
            caption="../report/accuracy_by_seed.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "table": "accuracy by seed"},
        ),
    params:
        paper=config["evaluate"]["paper_accuracy"],
        confidence=config["evaluate"]["confidence"],
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/eval/{variant}/aggregate.log",
    shell:
        "python -m lfwcnn.aggregate --metrics {input:q} --paper-accuracy {params.paper}"
        " --confidence {params.confidence} --out-json {output.summary:q}"
        " --out-csv {output.by_seed:q} > {log:q} 2>&1"
