"""Sweeps through Snakemake: every combination x seed its own job, datasets prepared once each.

The shipped ablation (config/ablation.yaml: LFW variant x crop) runs end to end on two fake
LFW folders, one of which calls itself an approximation: 2 variants x 2 crops x 2 seeds, 2
epochs of a tiny model, up to the report's ablation table, effects, conclusion and plot. A
second sweep (source x dropout placement) is planned only (a dry run), to show that runs
whose data settings are equal share one prepared dataset.
"""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import yaml
from lfw_fixtures import make_lfw_tree
from test_report import REPORT, parse, pipeline_report
from workflow_runner import ROOT, make_project, planned_jobs, snakemake

from lfwcnn import steps
from lfwcnn.cli import run

PEOPLE = {"Alice_Doe": 8, "Bob_Roe": 7, "Carol_Poe": 6}
SUMMARY = "results/sweep/summary.csv"
TINY = {
    "data": {"min_images_per_person": 5, "image_size": 16},
    "seeds": [0, 1],
    "model": {"filters": [4, 6], "dense_units": [8, 8]},
    "train": {"epochs": 2, "batch_size": 8, "device": "cpu"},
    "backprop": {"cases": 3},
    "views": {"enabled": False},
}
ABLATION_RUNS = ["real-centre128", "real-whole250", "thumbs_approx-centre128",
                 "thumbs_approx-whole250"]


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def ablation_overlay(real, thumbs) -> dict:
    """config/ablation.yaml as shipped (crops, protocol), its sources swapped for fakes."""
    shipped = yaml.safe_load((ROOT / "config" / "ablation.yaml").read_text())
    assert set(shipped["sweep"]) == {"variant", "crop"} and len(shipped["seeds"]) >= 3
    overlay = copy.deepcopy(TINY)
    overlay["sweep"] = {
        "variant": {"real": {"data": {"variant": "deepfunneled", "source": str(real)}},
                    "thumbs_approx": {"data": {"variant": "funneled", "source": str(thumbs)}}},
        "crop": shipped["sweep"]["crop"],
    }
    return overlay


def test_ablation_config_runs_end_to_end_into_the_report(tmp_path):
    real = make_lfw_tree(tmp_path / "lfw_real", PEOPLE)
    thumbs = make_lfw_tree(tmp_path / "lfw_thumbs", PEOPLE, seed=1)
    (thumbs / "SOURCE.txt").write_text("LFW, funneled variant -- APPROXIMATION, upscaled\n")
    project = make_project(tmp_path / "p", ablation_overlay(real, thumbs))
    dry = snakemake(project, "-n", REPORT)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["obtain_lfw"] == 2 and counts["prepare_dataset"] == 4  # variant x crop
    assert counts["train_model"] == counts["evaluate_model"] == 8  # 4 runs x 2 seeds

    result = snakemake(project, REPORT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ABLATION_RUNS:
        crop = json.loads((project / f"data/prepared/{name}/summary.json").read_text())["crop"]
        assert crop["rows"] == ([61, 189] if name.endswith("centre128") else [0, 250])
        info = json.loads((project / f"results/models/{name}/seed1/train.json").read_text())
        assert info["dataset"].endswith(f"data/prepared/{name}/dataset.npz")
        # each run's own aggregate.json (what `dvc metrics show` lists) carries the caveat
        data = json.loads((project / f"results/eval/{name}/aggregate.json").read_text())["data"]
        assert data["caveat"] == ("approximation" if "approx" in name else None)
    assert json.loads((project / "data/raw/thumbs_approx/source.json").read_text())[
        "approximate"] is True

    table = pd.read_csv(project / SUMMARY).set_index("run")
    assert sorted(table.index) == ABLATION_RUNS and set(table["seeds"]) == {2}
    assert table["approximate"].to_dict() == {name: "approx" in name for name in table.index}
    ablation = json.loads((project / "results/sweep/summary.json").read_text())["ablation"]
    assert [row["value"] for row in ablation["grid"]["rows"]] == ["real", "thumbs_approx"]
    assert ablation["grid"]["cols"] == ["centre128", "whole250"]
    assert [(e["axis"], e["value"], e["pairs"]) for e in ablation["effects"]] == [
        ("variant", "thumbs_approx", 4), ("crop", "whole250", 4)]

    page = (project / REPORT).read_text(encoding="utf-8")
    cells = re.findall(r'class="grid-cell" data-run="([^"]+)" data-verdict="(\w+)"', page)
    assert [run for run, _ in cells] == ABLATION_RUNS
    assert all(verdict in {"inside", "above", "below"} for _, verdict in cells)
    assert re.search(r'data-value="thumbs_approx"><th>thumbs_approx <b>\(approximation\)', page)
    assert len(re.findall(r'class="effect-row"', page)) == 2
    conclusion = page[page.index('id="ablation-conclusion"'):page.index("</ul>",
                      page.index('id="ablation-conclusion"'))]
    assert "4 settings, 2 seeds each" in conclusion and "Closest mean" in conclusion
    assert "2 of 4 settings use images" in conclusion
    assert parse(project / REPORT).images  # the plot among the inlined figures
    assert dict(parse(project / REPORT).rows)["C7"] == "not run"  # views.enabled: false
    assert (project / "results/sweep/accuracy.png").stat().st_size > 0


def test_runs_with_equal_data_settings_share_one_dataset(tmp_path):
    a = make_lfw_tree(tmp_path / "lfw_a", PEOPLE)
    b = make_lfw_tree(tmp_path / "lfw_b", PEOPLE, seed=1)
    overlay = copy.deepcopy(TINY)
    overlay["sweep"] = {
        "lfw": {"a": {"data": {"variant": "funneled", "source": str(a)}},
                "b_approx": {"data": {"variant": "original", "source": str(b)}}},
        "placement": {"last": {"model": {"dropout_placement": "last"}},
                      "all": {"model": {"dropout_placement": "all"}}},
    }
    project = make_project(tmp_path / "p", overlay)
    dry = snakemake(project, "-n", SUMMARY)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["obtain_lfw"] == 2 and counts["prepare_dataset"] == 2  # once per dataset
    assert counts["split_dataset"] == 4  # 2 datasets x 2 seeds
    assert counts["train_model"] == counts["evaluate_model"] == 8  # 4 runs x 2 seeds
    assert counts["aggregate_seeds"] == 4 and counts["summarize_sweep"] == 1
    trainings = {job["wildcards"]["run"]: job for job in planned_jobs(project, SUMMARY)
                 if job["rule"] == "train_model" and job["wildcards"]["seed"] == "1"}
    for run_name in ("a-all", "a-last", "b_approx-all", "b_approx-last"):
        dataset, placement = run_name.split("-")
        job = trainings[run_name]
        assert job["input"]["split_csv"] == f"data/split/{dataset}/seed1.csv", run_name
        assert json.loads(job["params"]["model"])["dropout_placement"] == placement, run_name


def test_report_shows_the_sweep_table_only_with_a_sweep(tmp_path_factory, tmp_path):
    path = pipeline_report(tmp_path_factory)
    project = path.parents[2]
    assert 'id="sweep"' not in path.read_text(encoding="utf-8")  # no sweep: no section
    aggregate = str(project / "results/eval/funneled/aggregate.json")
    source = str(project / "data/raw/funneled/source.json")
    plan = [{"run": "funneled-x", "settings": {"axis": "x"}, "dataset": "funneled"},
            {"run": "funneled-y", "settings": {"axis": "y"}, "dataset": "funneled"}]
    out = tmp_path / "sweep"
    steps.run_step("summarize_sweep", {
        "plan": plan, "aggregates": [aggregate, aggregate], "table": out / "summary.csv",
        "summary": out / "summary.json", "figure": out / "accuracy.png"})
    page = tmp_path / "index.html"
    argv = ["write_report", f"summary={project / 'data/prepared/funneled/summary.json'}",
            f"source={source}", f"aggregate={aggregate}",
            f"sweep_summary={out / 'summary.json'}",
            f"sweep_figure={out / 'accuracy.png'}", f"html={page}"]
    assert run(steps.main, argv) == 0
    text = page.read_text(encoding="utf-8")
    assert 'id="sweep"' in text and 'href="#sweep"' in text
    assert re.findall(r'class="sweep-row" data-run="([^"]+)"', text) == ["funneled-x",
                                                                         "funneled-y"]
    assert "This report describes run <b>funneled-x</b>" in text
    assert len(parse(page).images) == 1  # the sweep plot, inlined
