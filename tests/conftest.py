"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lfw_fixtures import ScriptedServer, make_lfw_archive, make_lfw_tree

# ============================================================================ data & download
# LFW-shaped data and a scripted HTTP server (builders in tests/lfw_fixtures.py).

LFW_TREE_PEOPLE = {"Alice_Doe": 12, "Bob_Roe": 10, "Carol_Poe": 8, "Dan_Moe": 3}


@pytest.fixture(scope="session")
def _lfw_tree_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session; tests get a copy, so one test's edits never reach another."""
    return make_lfw_tree(tmp_path_factory.mktemp("lfw_template") / "lfw_tree", LFW_TREE_PEOPLE)


@pytest.fixture
def lfw_tree(_lfw_tree_template: Path, tmp_path: Path) -> Path:
    """A small extracted LFW: 4 people with 12, 10, 8 and 3 synthetic 250x250 JPEGs."""
    return Path(shutil.copytree(_lfw_tree_template, tmp_path / "lfw_tree"))


@pytest.fixture
def lfw_archive(lfw_tree: Path, tmp_path: Path) -> Path:
    """``lfw_tree`` packed like lfw-funneled.tgz (one top folder ``lfw_funneled/``)."""
    return make_lfw_archive(lfw_tree, tmp_path / "archives" / "lfw-funneled.tgz")


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    """A live server on 127.0.0.1; script answers with ``http_server.route(path, body, ...)``."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


# ============================================================================ end data & download


# ============================================================================ SLURM executor plugin
# The cluster support is an extra (pip install -e '.[slurm]'): tests of the slurm profile skip
# without it, with the reason, unless LFWCNN_REQUIRE_SLURM=1 (CI) makes that a failure.

SLURM_PLUGINS = ("snakemake_executor_plugin_slurm", "snakemake_executor_plugin_slurm_jobstep")


@pytest.fixture(scope="session")
def slurm_plugin() -> None:
    """Skips where the SLURM executor plugins are absent (fails, with LFWCNN_REQUIRE_SLURM=1)."""
    missing = [name for name in SLURM_PLUGINS if importlib.util.find_spec(name) is None]
    if missing:
        message = (f"{', '.join(name.replace('_', '-') for name in missing)} not installed"
                   " (`pip install -e '.[slurm]'` installs the cluster extra)")
        if os.environ.get("LFWCNN_REQUIRE_SLURM") == "1":
            pytest.fail(f"LFWCNN_REQUIRE_SLURM=1 but {message}", pytrace=False)
        pytest.skip(message)


# ============================================================================ end SLURM plugin
