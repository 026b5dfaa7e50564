"""What the report says about where it ran: package versions, the machine, the git checkout.
Every probe is read-only and never fails (a missing package or checkout is reported, not raised).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from lfwcnn.devices import cpu_model

PACKAGES = ("tensorflow", "keras", "numpy", "scikit-learn", "scipy", "pandas", "matplotlib",
            "pillow", "jinja2", "snakemake", "pyyaml")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict:
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count()}


def git_state() -> dict:
    """Commit of the checkout this package runs from (``<checkout>/src/lfwcnn``, as in a
    workflow job) and whether tracked files differ from it; read-only (no index refresh)."""
    src = Path(__file__).resolve().parents[1]
    if src.name != "src":
        return {"commit": None, "dirty": None}
    repo = src.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args],
                                  capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "describe": git("log", "-1", "--format=%cd %s", "--date=short") if commit else None}
