"""Run the real Snakemake workflow in a scratch project folder, as a user would from the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SHARED_LFW = ROOT.parent / "shared" / "lfw"
SHARED_LFW_REASON = f"needs the real LFW images in {SHARED_LFW} (absent in this checkout)"


def make_project(folder: Path, overlay: dict) -> Path:
    """A working folder with the repo's config.yaml and ``overlay`` as config/test.yaml."""
    (folder / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", folder / "config" / "config.yaml")
    (folder / "config" / "test.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return folder


def snakemake(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``snakemake`` from the venv, in ``folder``, with the overlay config; output captured."""
    command = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(folder),
        "--cores", "2", *args, "--configfile", str(folder / "config" / "test.yaml"),
    ]  # --configfile last: it takes several values and would swallow the targets
    return subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
    )
