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
FIGURES_DIR = f"results/figures/{REPORT_RUN}"
REPORT_INPUTS = {
    "summary": f"data/prepared/{REPORT_DATASET}/summary.json",
    "source": f"data/raw/{FIRST_RUN.source}/source.json",
    "manifest": f"data/prepared/{REPORT_DATASET}/manifest.csv",
    "dataset": f"data/prepared/{REPORT_DATASET}/dataset.npz",
    # one per distinct split, the first seed's (the one the activations use) first
    "splits": [
        f"data/split/{REPORT_DATASET}/seed{s}.csv" for s in dataset_split_seeds(REPORT_DATASET)
    ],
    "histories": SEED_FILES["histories"],
    "train_infos": SEED_FILES["train_infos"],
    "metrics": SEED_FILES["metrics"],
    "aggregate": f"results/eval/{REPORT_RUN}/aggregate.json",
    "accuracy_by_seed": f"results/eval/{REPORT_RUN}/accuracy_by_seed.csv",
    # rule draw_training's outputs
    "curves_figure": f"{FIGURES_DIR}/curves.png",
    "accuracy_figure": f"{FIGURES_DIR}/accuracy.png",
    "confusion_figure": f"{FIGURES_DIR}/confusion.png",
    "confusion_table": f"{FIGURES_DIR}/confusion.csv",
    "per_class": f"{FIGURES_DIR}/per_class.csv",
    # rules export_activations and draw_activations' outputs
    "activation_summary": f"{ACTIVATIONS_DIR}/sparsity.json",
    "activation_record": f"{ACTIVATIONS_DIR}/image.json",
    "activation_manifest": f"{ACTIVATIONS_DIR}/figures/grids.json",
    "activation_input": f"{ACTIVATIONS_DIR}/figures/input.png",
    "activation_sparsity": f"{ACTIVATIONS_DIR}/figures/sparsity.png",
    "activation_grids": [f"{ACTIVATIONS_DIR}/figures/{layer}.png" for layer in FEATURE_LAYERS],
    # the benchmark files whose run times the report tables
    "timings": [
        f"results/benchmarks/activations/{REPORT_RUN}/seed{ACTIVATION_SEED}_{step}.tsv"
        for step in ("export", "draw")
    ]
    + [f"results/benchmarks/report/{REPORT_RUN}_figures.tsv"],
    **BACKPROP,
    **REPORT_SWEEP,
}


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
    log:
        "logs/report/{run}_figures.log",
    benchmark:
        "results/benchmarks/report/{run}_figures.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    script:
        "../scripts/step.py"


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
        summary=SWEEP_FILES["summary_json"],
        figure=report(
            SWEEP_FILES["figure"],
            caption="../report/sweep_accuracy.rst",
            category="Sweep",
            labels={"figure": "accuracy per run"},
        ),
    log:
        "logs/report/sweep.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        plan=step_json(SWEEP.table()),
    script:
        "../scripts/step.py"


rule write_report:
    input:
        **REPORT_INPUTS,
    output:
        html=report(
            "results/report/index.html",
            caption="../report/html_report.rst",
            category="Report",
            labels={"report": "verdicts and figures (self-contained HTML)"},
        ),
    log:
        "logs/report/report.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        # the whole configuration of the run the report describes (the first, with a sweep),
        # shown as YAML, and its split section; the step finds the checkout from its package
        run_config=step_json(FIRST_RUN.config),
        split=step_json(FIRST_RUN.config["split"]),
        report=config_section("report"),
    script:
        "../scripts/step.py"
