# The HTML report (results/report/index.html): every figure of the paper and a verdict,
# computed from the outputs, for each claim C1-C6. Needs activations.smk (FEATURE_LAYERS).
import json


SEED_FILES = {
    name: expand(pattern, variant=VARIANT, seed=config["seeds"])
    for name, pattern in {
        "histories": "results/models/{variant}/seed{seed}/history.csv",
        "train_infos": "results/models/{variant}/seed{seed}/train.json",
        "metrics": "results/eval/{variant}/seed{seed}/metrics.json",
        "confusions": "results/eval/{variant}/seed{seed}/confusion.csv",
    }.items()
}
ACTIVATIONS_DIR = f"results/activations/{VARIANT}/seed{ACTIVATION_SEED}"
# the backprop stage, when the workflow has it; the report says "not run" otherwise
BACKPROP = (
    {"backprop_json": "results/backprop/check.json", "backprop_html": "results/backprop/fig4.html"}
    if rules.has("verify_backprop")
    else {}
)
REPORT_INPUTS = {
    "summary": f"data/prepared/{VARIANT}/summary.json",
    "source": f"data/raw/{VARIANT}/source.json",
    "manifest": f"data/prepared/{VARIANT}/manifest.csv",
    "dataset": f"data/prepared/{VARIANT}/dataset.npz",
    # one per distinct split, the first seed's (the one the activations use) first
    "splits": [
        f"data/split/{VARIANT}/seed{s}.csv"
        for s in dict.fromkeys(split_seed(seed) for seed in config["seeds"])
    ],
    "histories": SEED_FILES["histories"],
    "train_infos": SEED_FILES["train_infos"],
    "metrics": SEED_FILES["metrics"],
    "aggregate": f"results/eval/{VARIANT}/aggregate.json",
    "accuracy_by_seed": f"results/eval/{VARIANT}/accuracy_by_seed.csv",
    "figures": expand(
        "results/figures/{variant}/{name}",
        variant=VARIANT,
        name=["curves.png", "accuracy.png", "confusion.png", "confusion.csv", "per_class.csv"],
    ),
    "activation_summary": f"{ACTIVATIONS_DIR}/sparsity.json",
    "activation_record": f"{ACTIVATIONS_DIR}/image.json",
    "activation_figures": expand(
        f"{ACTIVATIONS_DIR}/figures/{{name}}",
        name=["input.png", "sparsity.png", "grids.json"] + [f"{l}.png" for l in FEATURE_LAYERS],
    ),
    **BACKPROP,
}
BACKPROP_ARGS = " ".join(
    f"--{key.replace('_', '-')} {shlex.quote(path)}" for key, path in BACKPROP.items()
)


localrules:
    draw_training,
    write_report,


rule draw_training:
    input:
        histories=SEED_FILES["histories"],
        metrics=SEED_FILES["metrics"],
        confusions=SEED_FILES["confusions"],
        aggregate=f"results/eval/{VARIANT}/aggregate.json",
    output:
        curves=report(
            "results/figures/{variant}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            labels={"variant": "{variant}", "figure": "training curves (Fig. 5)"},
        ),
        accuracy=report(
            "results/figures/{variant}/accuracy.png",
            caption="../report/accuracy_distribution.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "figure": "accuracy over seeds"},
        ),
        confusion=report(
            "results/figures/{variant}/confusion.png",
            caption="../report/confusion_pooled.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "figure": "confusion matrix, seeds pooled"},
        ),
        confusion_table="results/figures/{variant}/confusion.csv",
        per_class=report(
            "results/figures/{variant}/per_class.csv",
            caption="../report/per_class_pooled.rst",
            category="Evaluation",
            labels={"variant": "{variant}", "table": "per class, seeds pooled"},
        ),
    params:
        out_dir="results/figures/{variant}",
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/report/{variant}_figures.log",
    benchmark:
        "results/benchmarks/report/{variant}_figures.tsv"
    shell:
        "python -m lfwcnn.figures training --histories {input.histories:q}"
        " --metrics {input.metrics:q} --confusions {input.confusions:q}"
        " --aggregate {input.aggregate:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule write_report:
    input:
        **REPORT_INPUTS,
    output:
        report(
            "results/report/index.html",
            caption="../report/html_report.rst",
            category="Report",
            labels={"report": "verdicts and figures (self-contained HTML)"},
        ),
    params:
        title=config["report"]["title"],
        config=json.dumps(config),
        repo=str(Path(workflow.basedir).parent),
        figures=lambda w, input: os.path.dirname(input.figures[0]),
        activations=lambda w, input: os.path.dirname(input.activation_record),
        backprop=BACKPROP_ARGS,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/report/report.log",
    shell:
        "python -m lfwcnn.report --title {params.title:q} --config-json {params.config:q}"
        " --repo {params.repo:q} --summary {input.summary:q} --source {input.source:q}"
        " --manifest {input.manifest:q} --dataset {input.dataset:q} --splits {input.splits:q}"
        " --histories {input.histories:q} --train-infos {input.train_infos:q}"
        " --metrics {input.metrics:q} --aggregate {input.aggregate:q}"
        " --accuracy-by-seed {input.accuracy_by_seed:q} --figures-dir {params.figures:q}"
        " --activations-dir {params.activations:q} {params.backprop}"
        " --benchmarks results/benchmarks --out {output:q} > {log:q} 2>&1"
