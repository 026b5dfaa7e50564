"""Hostile and careless input (issue 13, points 6, 8 and 9): markup in config and data strings,
files that cannot be read, full disks, denied permissions, and temporaries of killed steps.

Each failing case asserts: non-zero exit, exactly one ``error:`` line naming the culprit, no
traceback, no output left behind and nothing else changed.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from lfw_fixtures import make_lfw_tree
from workflow_runner import make_project, snakemake

from lfwcnn.config import read_step_json, step_json

# ============================================================================ 6: markup

# Closes a <script> block and adds an element whose handler marks the page as injected.
INJECTED = "</script><img src=x onerror=window.__injected=1>"
# A person folder may hold markup but no '/' (and the step reads spaces as '_'): an element,
# and "<!--<script>", which raw inside a <script> block makes the parser skip its end tag.
MARKUP_PERSON = "Eve_<img\tsrc=x\tonerror=window.__injected=2><!--<script>"
MARKUP_TITLE = f"A & B {INJECTED}"
# the source folder's path holds the same markup, as folders of a user's path may
MARKUP_FOLDER = "data</script><img src=x onerror=window.__injected=3>"
MARKUP_OVERLAY = {
    "data": {"min_images_per_person": 5, "image_size": 32},
    "seeds": [0],
    "model": {"filters": [4, 6, 8], "dense_units": [16, 8]},
    "train": {"epochs": 1, "batch_size": 8, "device": "cpu"},
    "backprop": {"cases": 2},
    "activations": {"person": MARKUP_PERSON},
    "report": {"title": MARKUP_TITLE},
}
REPORT = "results/report/index.html"


def test_step_json_has_no_markup_and_round_trips():
    value = {"title": MARKUP_TITLE, "person": MARKUP_PERSON, "n": [1, 2.5, None], "é": "\u2028"}
    text = step_json(value)
    assert not set("<>&") & set(text)
    assert read_step_json(text, "--x") == value == json.loads(text)


def markup_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole (tiny) workflow, run once per session with markup in the title, a person's
    name and the source path, and Snakemake's own report of it (report.html); its folder."""
    base = tmp_path_factory.getbasetemp() / "markup_run"
    project = base / "project"
    if (project / "report.html").is_file():
        return project
    tree = make_lfw_tree(base / MARKUP_FOLDER / "lfw",
                         {"Alice_Doe": 8, MARKUP_PERSON: 8, "Bob_Roe": 6})
    overlay = {**MARKUP_OVERLAY, "data": {**MARKUP_OVERLAY["data"], "source": str(tree)}}
    make_project(project, overlay)
    result = snakemake(project, REPORT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    result = snakemake(project, "--report", "report.html", REPORT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return project


def test_markup_in_config_and_names_stays_out_of_snakemakes_report(tmp_path_factory):
    project = markup_run(tmp_path_factory)
    text = (project / "report.html").read_text(encoding="utf-8")
    for raw in (INJECTED, MARKUP_PERSON, "<img src=x", "<img\tsrc=x", "<!--<script>",
                MARKUP_FOLDER):
        assert raw not in text, raw
    # the values are there, as JSON escapes (the page shows them as text)
    for marker in ("window.__injected=1", "window.__injected=2", "window.__injected=3"):
        assert marker in text, marker
    # the steps got the strings themselves, not their escapes
    record = json.loads((project / "results/activations/funneled/seed0/image.json")
                        .read_text(encoding="utf-8"))
    assert record["person"] == MARKUP_PERSON
    assert f"<h1>{html.escape(MARKUP_TITLE, quote=False)}</h1>" in (project / REPORT).read_text(
        encoding="utf-8")
