# The HTML report (results/report/index.html): every figure of the paper and a verdict,
# computed from the outputs, for each claim C1-C8. Needs activations.smk and views.smk.


# The report describes the first run (the only one without a sweep) in full; with a sweep it
# adds a table and a plot comparing every run (results/sweep/, rule summarize_sweep). Its
# inputs name the outputs of the rules that make them (of_report_run), so each file is named once.
localrules:
    draw_training,
    summarize_sweep,
    write_report,


rule draw_training:
    input:
        histories=of_each_seed(rules.train_model.output.history),
        metrics=of_each_seed(rules.evaluate_model.output.metrics),
        confusions=of_each_seed(rules.evaluate_model.output.confusion),
        aggregate=rules.aggregate_seeds.output.summary,
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
        aggregates=expand(rules.aggregate_seeds.output.summary, run=list(RUNS)),
    output:
        table=report(
            "results/sweep/summary.csv",
            caption="../report/sweep_summary.rst",
            category="Sweep",
            labels={"table": "every run of the sweep"},
        ),
        summary="results/sweep/summary.json",
        figure=report(
            "results/sweep/accuracy.png",
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
        **optional_report_inputs(),
        summary=of_report_run(rules.prepare_dataset.output.summary),
        source=of_report_run(rules.obtain_lfw.output.record),
        manifest=of_report_run(rules.prepare_dataset.output.manifest),
        dataset=of_report_run(rules.prepare_dataset.output.npz),
        # one per distinct split, the first seed's (the one the activations use) first
        splits=of_report_run(
            rules.split_dataset.output.split_csv, seed=dataset_split_seeds(REPORT_DATASET)
        ),
        histories=of_report_run(rules.train_model.output.history),
        train_infos=of_report_run(rules.train_model.output.info),
        metrics=of_report_run(rules.evaluate_model.output.metrics),
        aggregate=of_report_run(rules.aggregate_seeds.output.summary),
        accuracy_by_seed=of_report_run(rules.aggregate_seeds.output.by_seed),
        curves_figure=of_report_run(rules.draw_training.output.curves),
        accuracy_figure=of_report_run(rules.draw_training.output.accuracy),
        confusion_figure=of_report_run(rules.draw_training.output.confusion),
        confusion_table=of_report_run(rules.draw_training.output.confusion_table),
        per_class=of_report_run(rules.draw_training.output.per_class),
        activation_summary=of_report_run(rules.export_activations.output.summary, ACTIVATION_SEED),
        activation_record=of_report_run(rules.export_activations.output.record, ACTIVATION_SEED),
        activation_manifest=of_report_run(rules.draw_activations.output.manifest, ACTIVATION_SEED),
        activation_input=of_report_run(rules.draw_activations.output.input_figure, ACTIVATION_SEED),
        activation_sparsity=of_report_run(rules.draw_activations.output.sparsity, ACTIVATION_SEED),
        activation_grids=of_report_run(rules.draw_activations.output.grids, ACTIVATION_SEED),
        timings=report_timings(),
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
