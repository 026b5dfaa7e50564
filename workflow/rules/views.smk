# Claims C7 and C8, and two more views of what the network learned (issue 15): landmarks of
# every face of a dataset, network dissection on face parts, inversion of every layer,
# filter patterns and Grad-CAM, of the first seed's model (ACTIVATION_SEED) and, as the
# control, the same network with its untrained initial weights. Needs activations.smk.

from lfwcnn.model import CONV

# the conv layers of the paper's network: one filter-pattern grid each
CONV_LAYERS = [layer for layer in FEATURE_LAYERS if layer.startswith(CONV)]


rule find_landmarks:
    input:
        dataset=rules.prepare_dataset.output.npz,
        images=of_dataset(rules.obtain_lfw.output.images),
    output:
        landmarks="data/prepared/{dataset}/landmarks.npz",
    log:
        "logs/views/landmarks_{dataset}.log",
    benchmark:
        "results/benchmarks/views/landmarks_{dataset}.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: prepare_workers
    resources:
        mem_mb=2048,
    params:
        data=config_section("data", without=["download", "extract", "workers"]),
        views=views_part("landmarks"),
    script:
        "../scripts/step.py"


rule dissect_units:
    input:
        network=rules.train_model.output.model_file,
        dataset=of_run(rules.prepare_dataset.output.npz),
        split=of_run(rules.split_dataset.output.split_csv),
        landmarks=of_run(rules.find_landmarks.output.landmarks),
    output:
        units=report(
            "results/views/{run}/seed{seed}/dissection/units.csv",
            caption="../report/dissection_units.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "table": "IoU of every unit and part"},
        ),
        counts="results/views/{run}/seed{seed}/dissection/counts.json",
        figure=report(
            "results/views/{run}/seed{seed}/dissection/detectors.png",
            caption="../report/dissection_plot.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "detectors per layer (C7)"},
        ),
        top_figure=report(
            "results/views/{run}/seed{seed}/dissection/top_units.png",
            caption="../report/dissection_top.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "top eye and mouth units"},
        ),
    log:
        "logs/views/{run}/seed{seed}_dissect.log",
    benchmark:
        "results/benchmarks/views/{run}/seed{seed}_dissect.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=6144,
    params:
        model=config_section("model"),
        views=views_part("dissection"),
    script:
        "../scripts/step.py"


rule invert_layers:
    input:
        network=rules.train_model.output.model_file,
        dataset=of_run(rules.prepare_dataset.output.npz),
        split=of_run(rules.split_dataset.output.split_csv),
    output:
        reconstructions="results/views/{run}/seed{seed}/inversion/reconstructions.npz",
        scores=report(
            "results/views/{run}/seed{seed}/inversion/scores.csv",
            caption="../report/inversion_scores.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "table": "PSNR and SSIM per layer"},
        ),
        summary="results/views/{run}/seed{seed}/inversion/summary.json",
        figure=report(
            "results/views/{run}/seed{seed}/inversion/reconstructions.png",
            caption="../report/inversion_figure.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "reconstructions (C8)"},
        ),
    log:
        "logs/views/{run}/seed{seed}_invert.log",
    benchmark:
        "results/benchmarks/views/{run}/seed{seed}_invert.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=3072,
    params:
        model=config_section("model"),
        views=views_part("inversion"),
    script:
        "../scripts/step.py"


rule draw_filter_patterns:
    input:
        network=rules.train_model.output.model_file,
    output:
        grids=[
            report(
                f"results/views/{{run}}/seed{{seed}}/patterns/{layer}.png",
                caption="../report/filter_patterns.rst",
                category="What the network learned",
                labels={"run": "{run}", "seed": "{seed}", "figure": f"{layer} filter patterns"},
            )
            for layer in CONV_LAYERS
        ],
    log:
        "logs/views/{run}/seed{seed}_patterns.log",
    benchmark:
        "results/benchmarks/views/{run}/seed{seed}_patterns.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=2048,
    params:
        views=views_part("filter_patterns"),
    script:
        "../scripts/step.py"


rule draw_gradcam:
    input:
        network=rules.train_model.output.model_file,
        dataset=of_run(rules.prepare_dataset.output.npz),
        split=of_run(rules.split_dataset.output.split_csv),
    output:
        figure=report(
            "results/views/{run}/seed{seed}/gradcam/overlays.png",
            caption="../report/gradcam.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "Grad-CAM per person"},
        ),
        table="results/views/{run}/seed{seed}/gradcam/faces.csv",
    log:
        "logs/views/{run}/seed{seed}_gradcam.log",
    benchmark:
        "results/benchmarks/views/{run}/seed{seed}_gradcam.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=2048,
    params:
        views=views_part("gradcam"),
    script:
        "../scripts/step.py"
