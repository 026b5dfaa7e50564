"""How Snakemake jobs find Python and this package, whether in a venv, conda or on a cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def export_job_environment(src_dir: str | os.PathLike) -> None:
    """Make a job's Python (workflow/scripts/step.py) use this interpreter and this checkout.

    The interpreter running Snakemake goes first on PATH (a venv works without being
    activated) and ``src_dir`` on PYTHONPATH, so jobs in a per-rule conda environment
    (``--software-deployment-method conda``) import the package too. Jobs inherit both.
    """
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    paths = [str(Path(src_dir).resolve()), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
