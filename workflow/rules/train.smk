# Training stage (claims C2, C5): the paper's CNN, one job per run and seed; see
# docs/training.md. {run} is one combination of the sweep (common.smk), its settings looked
# up per job, so every combination x seed is a job of its own that a cluster runs in parallel.
#
# GPU resource: a job declares gpu=1 (one GPU slot) unless train.device is cpu. Snakemake
# leaves a resource unlimited unless --resources names it, so on a CPU-only machine the
# declaration costs nothing and seeds run as parallel as --cores allows (threads below); on a
# GPU machine `--resources gpu=N`, N = train.per_gpu x the GPUs, runs per_gpu trainings on each
# GPU (lfwcnn.devices locks a slot; device auto then finds the GPU). Under SLURM with
# per_gpu > 1 a training asks for a GPU shard (gres shard:1) instead (docs/cluster.md). On a
# cluster without GPUs set train.device: cpu, so that no job asks the scheduler for one.


rule train_model:
    input:
        dataset=of_run(rules.prepare_dataset.output.npz),
        split_csv=of_run(rules.split_dataset.output.split_csv),
    output:
        model_file="results/models/{run}/seed{seed}/model.keras",
        history=report(
            "results/models/{run}/seed{seed}/history.csv",
            caption="../report/training_history.rst",
            category="Training",
            labels={"run": "{run}", "seed": "{seed}", "table": "history"},
        ),
        info="results/models/{run}/seed{seed}/train.json",
    log:
        "logs/train/{run}/seed{seed}.log",
    conda:
        "../envs/lfwcnn.yaml"
    threads: 2
    resources:
        mem_mb=4096,  # 1.3 GB peak measured on a CPU (benchmarks/); CUDA libraries add more
        gpu=train_gpus,
        gres=train_gres,
        per_gpu=train_per_gpu,
    params:
        # every key of both sections changes the weights or the record (train.device: the
        # device used), so none is left out but train.per_gpu: how many trainings share a GPU
        # (a resource above; train.json records it), which changes neither
        model=config_section("model"),
        train=config_section("train", without=["per_gpu"]),
        split_seed=run_split_seed,
        # per-epoch snapshots; a rerun after a kill resumes there; removed after success
        backup=run_backup,
    script:
        "../scripts/step.py"
