# The HTML report (results/report/index.html): every figure of the paper and a verdict,
# computed from the outputs, for each claim C1-C6. Needs activations.smk (FEATURE_LAYERS).


# The report describes the first run (the only one without a sweep) in full; with a sweep it
# adds a table and a plot comparing every run (results/sweep/, rule summarize_sweep).
REPORT_RUN = FIRST_RUN.name
REPORT_DATASET = FIRST_RUN.dataset
SEED_FILES = {
    name: run_seed_files(REPORT_RUN, pattern)
    for name, pattern in {
        "histories": "results/models/{run}/seed{seed}/history.csv",
        "train_infos": "results/models/{run}/seed{seed}/train.json",
        "metrics": "results/eval/{run}/seed{seed}/metrics.json",
        "confusions": "results/eval/{run}/seed{seed}/confusion.csv",
    }.items()
}
ACTIVATIONS_DIR = f"results/activations/{REPORT_RUN}/seed{ACTIVATION_SEED}"
# the backprop stage, when the workflow has it; the report says "not run" otherwise
BACKPROP = (
    {"backprop_json": "results/backprop/check.json", "backprop_html": "results/backprop/fig4.html"}
    if rules.has("verify_backprop")
    else {}
)
SWEEP_FILES = {
    "summary_csv": "results/sweep/summary.csv",
    "summary_json": "results/sweep/summary.json",
    "figure": "results/sweep/accuracy.png",
}
REPORT_SWEEP = (
    {"sweep_summary": SWEEP_FILES["summary_json"], "sweep_figure": SWEEP_FILES["figure"]}
    if SWEEP.is_sweep
    else {}
)
REPORT_INPUTS = {
    "summary": f"data/prepared/{REPORT_DATASET}/summary.json",
    "source": f"data/raw/{FIRST_RUN.source}/source.json",
    "manifest": f"data/prepared/{REPORT_DATASET}/manifest.csv",
    "dataset": f"data/prepared/{REPORT_DATASET}/dataset.npz",
    # one per distinct split, the first seed's (the one the activations use) first
    "splits": [f"data/split/{REPORT_DATASET}/seed{s}.csv" for s in dataset_split_seeds(REPORT_DATASET)],
    "histories": SEED_FILES["histories"],
    "train_infos": SEED_FILES["train_infos"],
    "metrics": SEED_FILES["metrics"],
    "aggregate": f"results/eval/{REPORT_RUN}/aggregate.json",
    "accuracy_by_seed": f"results/eval/{REPORT_RUN}/accuracy_by_seed.csv",
    "figures": expand(
        "results/figures/{run}/{name}",
        run=REPORT_RUN,
        name=["curves.png", "accuracy.png", "confusion.png", "confusion.csv", "per_class.csv"],
    ),
    "activation_summary": f"{ACTIVATIONS_DIR}/sparsity.json",
    "activation_record": f"{ACTIVATIONS_DIR}/image.json",
    # timings the report tables (read from results/benchmarks; declared so DVC sees them too)
    "timings": [
        f"results/benchmarks/activations/{REPORT_RUN}/seed{ACTIVATION_SEED}_{step}.tsv"
        for step in ("export", "draw")
    ],
    "activation_figures": expand(
        f"{ACTIVATIONS_DIR}/figures/{{name}}",
        name=["input.png", "sparsity.png", "grids.json"] + [f"{l}.png" for l in FEATURE_LAYERS],
    ),
    **BACKPROP,
    **REPORT_SWEEP,
}
OPTIONAL_ARGS = " ".join(
    f"--{key.replace('_', '-')} {shlex.quote(path)}"
    for key, path in {**BACKPROP, **REPORT_SWEEP}.items()
)


localrules:
    draw_training,
    summarize_sweep,
    write_report,


rule draw_training:
    input:
        histories=SEED_FILES["histories"],
        metrics=SEED_FILES["metrics"],
        confusions=SEED_FILES["confusions"],
        aggregate="results/eval/{run}/aggregate.json",
    output:
        curves=report(
            "results/figures/{run}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            labels={"run": "{run}", "figure": "training curves (Fig. 5)"},
        ),
        accuracy=report(
            "results/figures/{run}/accuracy.png",
            caption="../report/accuracy_distribution.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "accuracy over seeds"},
        ),
        confusion=report(
            "results/figures/{run}/confusion.png",
            caption="../report/confusion_pooled.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "confusion matrix, seeds pooled"},
        ),
        confusion_table="results/figures/{run}/confusion.csv",
        per_class=report(
            "results/figures/{run}/per_class.csv",
            caption="../report/per_class_pooled.rst",
            category="Evaluation",
            labels={"run": "{run}", "table": "per class, seeds pooled"},
        ),
    params:
        out_dir="results/figures/{run}",
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/report/{run}_figures.log",
    benchmark:
        "results/benchmarks/report/{run}_figures.tsv"
    shell:
        "python -m lfwcnn.figures training --histories {input.histories:q}"
        " --metrics {input.metrics:q} --confusions {input.confusions:q}"
        " --aggregate {input.aggregate:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule summarize_sweep:
    input:
        aggregates=[f"results/eval/{name}/aggregate.json" for name in RUNS],
    output:
        table=report(
            SWEEP_FILES["summary_csv"],
            caption="../report/sweep_summary.rst",
            category="Sweep",
            labels={"table": "every run of the sweep"},
        ),
        json=SWEEP_FILES["summary_json"],
        figure=report(
            SWEEP_FILES["figure"],
            caption="../report/sweep_accuracy.rst",
            category="Sweep",
            labels={"figure": "accuracy per run"},
        ),
    params:
        plan=step_json(SWEEP.table()),
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/report/sweep.log",
    shell:
        "python -m lfwcnn.sweep_summary --plan-json {params.plan:q}"
        " --aggregates {input.aggregates:q}"
        " --out-csv {output.table:q} --out-json {output.json:q} --out-png {output.figure:q}"
        " > {log:q} 2>&1"


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
        # the configuration of the run the report describes (the first, with a sweep), its
        # report.title included; the step finds the checkout from its own package
        config=step_json(FIRST_RUN.config),
        figures=lambda w, input: os.path.dirname(input.figures[0]),
        activations=lambda w, input: os.path.dirname(input.activation_record),
        optional=OPTIONAL_ARGS,
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/report/report.log",
    shell:
        "python -m lfwcnn.report --config-json {params.config:q}"
        " --summary {input.summary:q} --source {input.source:q}"
        " --manifest {input.manifest:q} --dataset {input.dataset:q} --splits {input.splits:q}"
        " --histories {input.histories:q} --train-infos {input.train_infos:q}"
        " --metrics {input.metrics:q} --aggregate {input.aggregate:q}"
        " --accuracy-by-seed {input.accuracy_by_seed:q} --figures-dir {params.figures:q}"
        " --activations-dir {params.activations:q} {params.optional}"
        " --benchmarks results/benchmarks --out {output:q} > {log:q} 2>&1"
