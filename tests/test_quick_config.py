"""config/quick.yaml, the README's first look: the whole workflow, one seed of 10 epochs, and a
report that says at its top that this is not the paper's protocol."""

from __future__ import annotations

import csv
import json

import yaml
from lfw_fixtures import make_lfw_tree
from workflow_runner import ROOT, make_project, snakemake

from lfwcnn.sweep import deep_merge

# three people with the paper's 30 images each: the shipped data settings apply unchanged
PEOPLE = {"Alice_Doe": 30, "Bob_Roe": 30, "Carol_Poe": 30}


def test_quick_config_gives_the_whole_report_marked_as_not_the_papers_protocol(tmp_path):
    quick = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())
    assert quick == {"seeds": [0], "train": {"epochs": 10}}
    tree = make_lfw_tree(tmp_path / "lfw", PEOPLE)
    # the views with few steps (their cost on LFW: benchmarks/bench_views.py)
    fast_views = {"inversion": {"faces": 2, "steps": 5}, "filter_patterns": {"steps": 3}}
    project = make_project(tmp_path / "project", deep_merge(
        quick, {"data": {"source": str(tree)}, "views": fast_views}))
    result = snakemake(project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    models = project / "results" / "models" / "funneled"
    assert [p.name for p in models.iterdir()] == ["seed0"]
    with open(models / "seed0" / "history.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 10
    assert json.loads((models / "seed0" / "train.json").read_text())["epochs"] == 10
    page = (project / "results" / "report" / "index.html").read_text(encoding="utf-8")
    banner = page[page.index('id="departures"'):]
    banner = banner[:banner.index("</div>")]
    assert "Not the paper's protocol." in banner and "train.epochs 10 instead of 100" in banner
    assert page.index('id="departures"') < page.index('id="verdict-table"')
