# Every rule's script: runs the lfwcnn step named like the rule (lfwcnn.steps), with the job's
# files, params, wildcards, threads and resources bound to the step's parameters by name.
from lfwcnn.steps import run_job

run_job(snakemake)  # noqa: F821 - Snakemake defines `snakemake` in a script's namespace
