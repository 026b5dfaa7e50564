# Claims C4 and C6: the feature maps of every conv and pooling layer for one test image (the
# paper's Figs. 6-12), and the sparsity of each layer over the whole test set.


from lfwcnn.model import feature_layer_names

# conv1, pool1, conv2, ... as lfwcnn.model names them: six layers for the paper's network
# (every run of a sweep has the same number of conv blocks; lfwcnn.sweep checks it)
FEATURE_LAYERS = feature_layer_names(len(FIRST_RUN.config["model"]["filters"]))
# the paper draws one trained network: the first configured seed's
ACTIVATION_SEED = config["seeds"][0]


localrules:
    draw_activations,


rule export_activations:
    input:
        model="results/models/{run}/seed{seed}/model.keras",
        dataset=of_run(rules.prepare_dataset.output.npz),
        split=of_run(rules.split_dataset.output.split_csv),
    output:
        # one file per layer, named after it (the step reads the layer from the name)
        layers=expand("results/activations/{{run}}/seed{{seed}}/{layer}.npz", layer=FEATURE_LAYERS),
        image="results/activations/{run}/seed{seed}/image.npz",
        record="results/activations/{run}/seed{seed}/image.json",
        per_image="results/activations/{run}/seed{seed}/sparsity.npz",
        table=report(
            "results/activations/{run}/seed{seed}/sparsity.csv",
            caption="../report/sparsity_table.rst",
            category="Activations",
            labels={"run": "{run}", "seed": "{seed}", "table": "sparsity per layer"},
        ),
        summary="results/activations/{run}/seed{seed}/sparsity.json",
    log:
        "logs/activations/{run}/seed{seed}_export.log",
    benchmark:
        "results/benchmarks/activations/{run}/seed{seed}_export.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=3072,
    params:
        # image and person both choose the image: neither can be left out
        activations=config_section("activations"),
    script:
        "../scripts/step.py"


rule draw_activations:
    input:
        record=rules.export_activations.output.record,
        face=rules.export_activations.output.image,
        maps=rules.export_activations.output.layers,
        per_image=rules.export_activations.output.per_image,
    output:
        input_figure=report(
            "results/activations/{run}/seed{seed}/figures/input.png",
            caption="../report/activation_input.rst",
            category="Activations",
            labels={"run": "{run}", "seed": "{seed}", "figure": "input image (Fig. 6)"},
        ),
        grids=[
            report(
                f"results/activations/{{run}}/seed{{seed}}/figures/{layer}.png",
                caption="../report/activation_grid.rst",
                category="Activations",
                labels={"run": "{run}", "seed": "{seed}", "figure": f"{layer} maps"},
            )
            for layer in FEATURE_LAYERS
        ],
        sparsity=report(
            "results/activations/{run}/seed{seed}/figures/sparsity.png",
            caption="../report/sparsity_plot.rst",
            category="Activations",
            labels={"run": "{run}", "seed": "{seed}", "figure": "sparsity per layer"},
        ),
        manifest="results/activations/{run}/seed{seed}/figures/grids.json",
    log:
        "logs/activations/{run}/seed{seed}_draw.log",
    benchmark:
        "results/benchmarks/activations/{run}/seed{seed}_draw.tsv"
    conda:
        "../envs/lfwcnn.yaml"
    script:
        "../scripts/step.py"
