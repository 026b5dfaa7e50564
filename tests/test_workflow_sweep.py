"""A sweep through Snakemake: every combination x seed trained, datasets prepared once each.

Two fake LFW sources x two dropout placements, 2 seeds, 2 epochs on 16x16 images: four runs
on two datasets (the dropout axis does not change the data), compared in one summary table.
The report's sweep section is checked on the session's pipeline report (test_report.py).
"""

from __future__ import annotations

import json
import re

import pandas as pd
from lfw_fixtures import make_lfw_tree
from test_report import parse, pipeline_report
from workflow_runner import make_project, snakemake

from lfwcnn import report, sweep_summary
from lfwcnn.cli import run

PEOPLE = {"Alice_Doe": 8, "Bob_Roe": 7, "Carol_Poe": 6}
RUNS = ["a-all", "a-last", "b_approx-all", "b_approx-last"]  # overlay axes sort: lfw, placement
SUMMARY = "results/sweep/summary.csv"


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_sweep_trains_every_combination_and_shares_datasets(tmp_path):
    a = make_lfw_tree(tmp_path / "lfw_a", PEOPLE)
    b = make_lfw_tree(tmp_path / "lfw_b", PEOPLE, seed=1)
    overlay = {
        "data": {"min_images_per_person": 5, "image_size": 16},
        "seeds": [0, 1],
        "model": {"filters": [4, 6], "dense_units": [8, 8]},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu"},
        "backprop": {"cases": 3},
        "sweep": {
            "lfw": {"a": {"data": {"variant": "funneled", "source": str(a)}},
                    "b_approx": {"data": {"variant": "original", "source": str(b)}}},
            "placement": {"last": {"model": {"dropout_placement": "last"}},
                          "all": {"model": {"dropout_placement": "all"}}},
        },
    }
    project = make_project(tmp_path / "p", overlay)
    dry = snakemake(project, "-n", SUMMARY)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["obtain_lfw"] == 2 and counts["prepare_dataset"] == 2  # once per dataset
    assert counts["split_dataset"] == 4  # 2 datasets x 2 seeds
    assert counts["train_model"] == counts["evaluate_model"] == 8  # 4 runs x 2 seeds
    assert counts["aggregate_seeds"] == 4 and counts["summarize_sweep"] == 1

    result = snakemake(project, SUMMARY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in RUNS:
        for seed in (0, 1):
            assert (project / f"results/models/{name}/seed{seed}/model.keras").is_file()
    assert sorted(p.name for p in (project / "data/prepared").iterdir()) == ["a", "b_approx"]
    assert sorted(p.name for p in (project / "data/raw").iterdir()) == ["a", "b_approx"]
    assert json.loads((project / "data/raw/b_approx/source.json").read_text())["variant"] == \
        "original"

    table = pd.read_csv(project / SUMMARY)
    assert sorted(table["run"]) == RUNS
    assert {"lfw", "placement", "variant", "source", "seeds", "mean", "std", "ci_low",
            "ci_high", "verdict"} <= set(table.columns)
    assert set(table["seeds"]) == {2}
    by_run = table.set_index("run")
    assert by_run.loc["b_approx-last", "variant"] == "original"
    assert by_run.loc["b_approx-last", "source"] == str(b)
    assert by_run.loc["a-all", "placement"] == "all"
    assert (project / "results/sweep/summary.json").is_file()
    assert (project / "results/sweep/accuracy.png").stat().st_size > 0
    # each run's own settings reached its training jobs
    for name in RUNS:
        info = json.loads((project / f"results/models/{name}/seed1/train.json").read_text())
        assert info["architecture"]["dropout_placement"] == name.split("-")[1]
        assert info["dataset"].endswith(f"data/prepared/{name.split('-')[0]}/dataset.npz")


def test_report_shows_the_sweep_table_only_with_a_sweep(tmp_path_factory, tmp_path):
    path = pipeline_report(tmp_path_factory)
    project = path.parents[2]
    assert 'id="sweep"' not in path.read_text(encoding="utf-8")  # no sweep: no section
    aggregate = str(project / "results/eval/funneled/aggregate.json")
    source = str(project / "data/raw/funneled/source.json")
    plan = [{"run": "funneled-x", "settings": {"axis": "x"}, "dataset": "funneled"},
            {"run": "funneled-y", "settings": {"axis": "y"}, "dataset": "funneled"}]
    out = tmp_path / "sweep"
    argv = ["--plan-json", json.dumps(plan), "--aggregates", aggregate, aggregate,
            "--sources", source, source, "--out-csv", str(out / "summary.csv"),
            "--out-json", str(out / "summary.json"), "--out-png", str(out / "accuracy.png")]
    assert run(sweep_summary.main, argv) == 0
    page = tmp_path / "index.html"
    argv = ["--summary", str(project / "data/prepared/funneled/summary.json"),
            "--source", source, "--aggregate", aggregate,
            "--sweep-summary", str(out / "summary.json"),
            "--sweep-figure", str(out / "accuracy.png"), "--out", str(page)]
    assert run(report.main, argv) == 0
    text = page.read_text(encoding="utf-8")
    assert 'id="sweep"' in text and 'href="#sweep"' in text
    assert re.findall(r'class="sweep-row" data-run="([^"]+)"', text) == ["funneled-x",
                                                                         "funneled-y"]
    assert "This report describes run <b>funneled-x</b>" in text
    assert len(parse(page).images) == 1  # the sweep plot, inlined
