# Claims C7 and C8, and two more views of what the network learned (issue 15): landmarks of
# every face of a dataset, then, in one job per run and seed (the views share TensorFlow's
# start and the models), network dissection on face parts, inversion of every layer, filter
# patterns and Grad-CAM, of the first seed's model (ACTIVATION_SEED) and, as the control,
# the same network with its untrained initial weights. Needs activations.smk.

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


rule view_network:
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
        dissection="results/views/{run}/seed{seed}/dissection/counts.json",
        detectors=report(
            "results/views/{run}/seed{seed}/dissection/detectors.png",
            caption="../report/dissection_plot.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "detectors per layer (C7)"},
        ),
        top_units=report(
            "results/views/{run}/seed{seed}/dissection/top_units.png",
            caption="../report/dissection_top.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "top eye and mouth units"},
        ),
        reconstructions="results/views/{run}/seed{seed}/inversion/reconstructions.npz",
        inversion_scores=report(
            "results/views/{run}/seed{seed}/inversion/scores.csv",
            caption="../report/inversion_scores.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "table": "PSNR and SSIM per layer"},
        ),
        inversion="results/views/{run}/seed{seed}/inversion/summary.json",
        reconstruction_grid=report(
            "results/views/{run}/seed{seed}/inversion/reconstructions.png",
            caption="../report/inversion_figure.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "reconstructions (C8)"},
        ),
        patterns=[
            report(
                f"results/views/{{run}}/seed{{seed}}/patterns/{layer}.png",
                caption="../report/filter_patterns.rst",
                category="What the network learned",
                labels={"run": "{run}", "seed": "{seed}", "figure": f"{layer} filter patterns"},
            )
            for layer in CONV_LAYERS
        ],
        gradcam=report(
            "results/views/{run}/seed{seed}/gradcam/overlays.png",
            caption="../report/gradcam.rst",
            category="What the network learned",
            labels={"run": "{run}", "seed": "{seed}", "figure": "Grad-CAM per person"},
        ),
        gradcam_faces="results/views/{run}/seed{seed}/gradcam/faces.csv",
    log:
        "logs/views/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/views/{run}/seed{seed}.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=6144,
    params:
        model=config_section("model"),
        views=config_section("views", without=["enabled", "landmarks"]),
    script:
        "../scripts/step.py"
