# One target rule per stage of dvc.yaml: each DVC stage runs `snakemake dvc_<stage>`, so
# Snakemake's DAG stays the only one and DVC only versions and moves the files (docs/dvc.md).
# Pure targets: inputs only, no command, no log. Included last, as it names the other rules.
from lfwcnn.dvc_sync import describe, sync_workspace

# After `dvc pull` or `dvc checkout`, the files whose contents match dvc.lock get one
# modification time, so that Snakemake does not rebuild them (src/lfwcnn/dvc_sync.py).
# Main process only (not in cluster jobs). Inside `dvc repro` (DVC_STAGE set) DVC decides
# what is stale, so the notes are left out there; and a sweep is refused there, as the
# stages of dvc.yaml name one run's folders.
if "DVC_STAGE" in os.environ and SWEEP.is_sweep:
    raise WorkflowError(
        "dvc.yaml versions single runs (outputs named after data.variant), and config.sweep "
        "is set: run the sweep with Snakemake itself, or use DVC's own experiments "
        "(`dvc exp run --queue -S config/config.yaml:train.epochs=50,100`, see docs/dvc.md)"
    )
if workflow.is_main_process:
    try:
        DVC_SYNC = sync_workspace(".", config)
    except Exception as err:  # the alignment must never stop a run
        logger.warning(f"dvc.lock not used, file times left as they are: {err}")
    else:
        if "DVC_STAGE" not in os.environ:
            for line in describe(DVC_SYNC):
                logger.info(line)
            for note in DVC_SYNC.notes:
                logger.warning(note)


localrules:
    dvc_source,
    dvc_prepare,
    dvc_split,
    dvc_backprop,
    dvc_train,
    dvc_evaluate,
    dvc_activations,
    dvc_report,


rule dvc_source:
    input:
        expand(rules.obtain_lfw.output.record, source=list(SOURCES)),


rule dvc_prepare:
    input:
        expand(list(rules.prepare_dataset.output), dataset=list(DATASETS)),


rule dvc_split:
    input:
        [
            expand(list(rules.split_dataset.output), dataset=name, seed=dataset_split_seeds(name))
            for name in DATASETS
        ],


rule dvc_backprop:
    input:
        rules.verify_backprop.output,


rule dvc_train:
    input:
        expand(list(rules.train_model.output), run=list(RUNS), seed=config["seeds"]),


rule dvc_evaluate:
    input:
        expand(list(rules.evaluate_model.output), run=list(RUNS), seed=config["seeds"]),
        expand(list(rules.aggregate_seeds.output), run=list(RUNS)),


rule dvc_activations:
    input:
        expand(list(rules.export_activations.output), run=REPORT_RUN, seed=ACTIVATION_SEED),
        expand(list(rules.draw_activations.output), run=REPORT_RUN, seed=ACTIVATION_SEED),


rule dvc_report:
    input:
        expand(list(rules.draw_training.output), run=REPORT_RUN),
        rules.write_report.output,
