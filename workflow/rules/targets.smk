# One target rule per stage of dvc.yaml, which `python -m lfwcnn.dvc_stages > dvc.yaml`
# writes from these rules (docs/dvc.md): each DVC stage runs `snakemake dvc_<stage>`, so
# Snakemake's DAG stays the only one. params.dvc: the config keys the stage's jobs read.
# Pure targets: inputs only, no command, no log (so never submitted to a cluster). Included
# last, as it names the other rules.
from snakemake.persistence.file import FilePersistence
from snakemake.settings.enums import PersistenceBackend

from lfwcnn.dvc_glue import describe, sync_workspace

# Inside `dvc repro` (DVC_STAGE set) a sweep is refused: the stages name one run's folders.
if "DVC_STAGE" in os.environ and SWEEP.is_sweep:
    raise WorkflowError(
        "dvc.yaml versions single runs (outputs named after data.variant), and config.sweep "
        "is set: run the sweep with Snakemake itself, or use DVC's own experiments "
        "(`dvc exp run --queue -S config/config.yaml:train.epochs=50,100`, see docs/dvc.md)"
    )
# After `dvc pull` or `dvc checkout`, the files whose contents match dvc.lock get one
# modification time, so that Snakemake does not rebuild them (src/lfwcnn/dvc_glue.py).
# Main process only; inside `dvc repro` DVC decides what is stale, so no notes there.
if workflow.is_main_process:
    file_backend = workflow.workflow_settings.persistence_backend == PersistenceBackend.FILE
    try:
        DVC_SYNC = sync_workspace(".", FilePersistence(nolock=True) if file_backend else None)
    except Exception as err:  # the alignment must never stop a run
        logger.warning(f"dvc.lock not used, file times left as they are: {err}")
    else:
        if "DVC_STAGE" not in os.environ:
            for line in describe(DVC_SYNC):
                logger.info(line)
            for note in DVC_SYNC["notes"]:
                logger.warning(note)


rule dvc_source:
    input:
        expand(rules.obtain_lfw.output.record, source=list(SOURCES)),
    params:
        dvc=["data.variant", "data.source", "data.sha256", "data.md5"],


rule dvc_prepare:
    input:
        expand(list(rules.prepare_dataset.output), dataset=list(DATASETS)),
    params:
        dvc=["data.variant", "data.min_images_per_person", "data.crop", "data.image_size"],


rule dvc_split:
    input:
        [
            expand(list(rules.split_dataset.output), dataset=name, seed=dataset_split_seeds(name))
            for name in DATASETS
        ],
    params:
        dvc=["data.variant", "split.test_fraction", "split.stratify", "split.seed", "seeds"],


rule dvc_backprop:
    input:
        rules.verify_backprop.output,
    params:
        dvc=["backprop"],


rule dvc_train:
    input:
        expand(list(rules.train_model.output), run=list(RUNS), seed=config["seeds"]),
    params:
        dvc=["data.variant", "seeds", "split.seed", "model", "train"],


rule dvc_evaluate:
    input:
        expand(list(rules.evaluate_model.output), run=list(RUNS), seed=config["seeds"]),
        expand(list(rules.aggregate_seeds.output), run=list(RUNS)),
    params:
        dvc=["data.variant", "seeds", "split.seed", "evaluate"],


rule dvc_activations:
    input:
        expand(list(rules.export_activations.output), run=REPORT_RUN, seed=ACTIVATION_SEED),
        expand(list(rules.draw_activations.output), run=REPORT_RUN, seed=ACTIVATION_SEED),
    params:
        dvc=["data.variant", "seeds", "split.seed", "model.filters", "activations"],


rule dvc_views:
    input:
        expand(list(rules.find_landmarks.output), dataset=REPORT_DATASET),
        expand(list(rules.view_network.output), run=REPORT_RUN, seed=ACTIVATION_SEED),
    params:
        dvc=["data", "seeds", "split.seed", "model", "views"],


rule dvc_report:
    input:
        expand(list(rules.draw_training.output), run=REPORT_RUN),
        rules.write_report.output,
    params:
        # the report prints the whole configuration: every key counts
        dvc=[],
