# Evaluation stage (claim C2): per-seed test metrics, then the verdict across seeds, per run.


localrules:
    aggregate_seeds,


rule evaluate_model:
    input:
        dataset=of_run(rules.prepare_dataset.output.npz),
        split_csv=of_run(rules.split_dataset.output.split_csv),
        model_file="results/models/{run}/seed{seed}/model.keras",
        info="results/models/{run}/seed{seed}/train.json",
    output:
        metrics="results/eval/{run}/seed{seed}/metrics.json",
        per_class=report(
            "results/eval/{run}/seed{seed}/per_class.csv",
            caption="../report/per_class.rst",
            category="Evaluation",
            labels={"run": "{run}", "seed": "{seed}", "table": "per class"},
        ),
        confusion=report(
            "results/eval/{run}/seed{seed}/confusion.csv",
            caption="../report/confusion.rst",
            category="Evaluation",
            labels={"run": "{run}", "seed": "{seed}", "table": "confusion matrix"},
        ),
        figure=report(
            "results/eval/{run}/seed{seed}/confusion.png",
            caption="../report/confusion.rst",
            category="Evaluation",
            labels={"run": "{run}", "seed": "{seed}", "figure": "confusion matrix"},
        ),
        predictions=report(
            "results/eval/{run}/seed{seed}/predictions.csv",
            caption="../report/predictions.rst",
            category="Evaluation",
            labels={"run": "{run}", "seed": "{seed}", "table": "predictions"},
        ),
    log:
        "logs/eval/{run}/seed{seed}.log",
    conda:
        "../envs/lfwcnn.yaml"
    threads: 1
    resources:
        mem_mb=2048,
    params:
        # paper_accuracy only moves the verdict across seeds (aggregate_seeds)
        evaluate=config_section("evaluate", without=["paper_accuracy"]),
    script:
        "../scripts/step.py"


rule aggregate_seeds:
    input:
        metrics=expand("results/eval/{{run}}/seed{seed}/metrics.json", seed=config["seeds"]),
        source=of_run(rules.obtain_lfw.output.record),
    output:
        summary=report(
            "results/eval/{run}/aggregate.json",
            caption="../report/aggregate.rst",
            category="Evaluation",
            labels={"run": "{run}", "table": "verdict across seeds"},
        ),
        by_seed=report(
            "results/eval/{run}/accuracy_by_seed.csv",
            caption="../report/accuracy_by_seed.rst",
            category="Evaluation",
            labels={"run": "{run}", "table": "accuracy by seed"},
        ),
    log:
        "logs/eval/{run}/aggregate.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        evaluate=config_section("evaluate"),
    script:
        "../scripts/step.py"
