"""The report: verdicts computed from the numbers, provenance flags, and the whole pipeline.

The end-to-end run (synthetic LFW, three tiny conv blocks, 3 epochs, 2 seeds) goes through
Snakemake exactly as a user's run does and ends with ``results/report/index.html``; it is
made once per session by :func:`pipeline_report` and shared with test_report_browser.py.
"""

from __future__ import annotations

import csv
import html.parser
import json
import re
import types
from collections import defaultdict
from pathlib import Path

import jinja2
import pandas as pd
import pytest
import yaml
from lfw_fixtures import make_lfw_tree
from workflow_runner import ROOT, make_project, snakemake

from lfwcnn import steps
from lfwcnn.claims import (
    data_origin,
    explain_1777,
    labelled,
    protocol_departures,
    provenance,
    verdict_c1,
    verdict_c2,
    verdict_c3,
    verdict_c4,
    verdict_c5,
    verdict_c6,
    verdict_c7,
    verdict_c8,
)
from lfwcnn.cli import run
from lfwcnn.config import check_config
from lfwcnn.report import benchmark_rows, numerics_groups, training_context

LFW_SUMMARY = {"people": 34, "images": 2370}
PIPELINE_PEOPLE = {"Alice_Doe": 12, "Bob_Roe": 10, "Carol_Poe": 8, "Dan_Moe": 3}
PIPELINE_OVERLAY = {
    "data": {"min_images_per_person": 5, "image_size": 32},
    "seeds": [0, 1],
    "model": {"filters": [4, 6, 8], "dense_units": [16, 8]},
    "train": {"epochs": 3, "batch_size": 8, "device": "cpu"},
    "backprop": {"cases": 5},
    "activations": {"person": "Bob_Roe"},
    # claims C7, C8: the views on few faces with few steps (their tests are in test_views.py)
    "views": {"inversion": {"faces": 2, "steps": 5}, "filter_patterns": {"steps": 3}},
}
REPORT = "results/report/index.html"
LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3")


def pipeline_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the whole workflow once per session on synthetic LFW; return the report's path."""
    project = tmp_path_factory.getbasetemp() / "report_pipeline"
    target = project / REPORT
    if target.is_file():
        return target
    tree = make_lfw_tree(project.parent / "report_pipeline_lfw", PIPELINE_PEOPLE)
    overlay = {**PIPELINE_OVERLAY, "data": {**PIPELINE_OVERLAY["data"], "source": str(tree)}}
    make_project(project, overlay)
    result = snakemake(project, REPORT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return target


class _Rows(html.parser.HTMLParser):
    """Collect the verdict rows (their claim and status) and every image source of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "verdict-row" in (attrs.get("class") or ""):
            self.rows.append((attrs["data-claim"], attrs["data-status"]))
        if tag == "img":
            self.images.append(attrs["src"])


def parse(path: Path) -> _Rows:
    parser = _Rows()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# ----------------------------------------------------------------------------- C1


def test_c1_holds_on_lfw_counts_and_explains_1777():
    verdict = verdict_c1(LFW_SUMMARY, 1777, 593, 0.25)
    assert verdict.status == "holds"
    assert "ceil(0.25 x 2370) = 593" in verdict.detail
    assert "\"1777 face images\" is therefore the training subset" in verdict.detail


def test_c1_partly_when_only_the_split_differs_and_fails_on_other_data():
    assert verdict_c1(LFW_SUMMARY, 1659, 711, 0.3).status == "partly"
    other = verdict_c1({"people": 3, "images": 30}, 22, 8, 0.25)
    assert other.status == "fails"
    assert [ok for _, ok in other.checks] == [False] * 4


def test_explain_1777_computes_the_split_from_the_counts():
    assert "the test subset holds ceil(0.25 x 30) = 8 images and the training subset 30 - 8 = 22" \
        in explain_1777(30, 0.25)
    assert "= 593" in explain_1777(2370, 0.25) and "2370 - 593 = 1777" in explain_1777(2370, 0.25)


# ----------------------------------------------------------------------------- C2, C3


def aggregate(verdict: str, single: str = "inside") -> dict:
    return {"seeds": 5, "mean": 0.80, "std": 0.01, "confidence": 0.95, "verdict": verdict,
            "paper_accuracy": 0.8347,
            "interval": {"low": 0.79, "high": 0.81}, "verdict_single_run": single,
            "prediction_interval": {"low": 0.77, "high": 0.83}, "statement": "S."}


@pytest.mark.parametrize(("verdict", "status"), [("inside", "holds"), ("above", "fails"),
                                                 ("below", "fails"),
                                                 ("undefined", "undetermined")])
def test_c2_follows_the_aggregate_verdict(verdict, status):
    result = verdict_c2(aggregate(verdict))
    assert result.status == status
    assert "80.00% mean over 5 seeds" in result.ours
    assert verdict_c2(None).status == "not run"


def test_c2_counts_the_ablation_settings_the_paper_fits():
    runs = [{"run": "deep-centre", "verdict": "inside"}, {"run": "deep-whole", "verdict": "above"},
            {"run": "orig-centre", "verdict": "inside", "caveat": "approximation"}]
    result = verdict_c2(aggregate("inside"), sweep_runs=runs)
    assert result.status == "holds"  # the run described decides; the ablation is context
    assert result.detail.endswith("inside the interval of 2 of 3 settings: deep-centre, "
                                  "orig-centre (approximation).")
    assert "ablation" not in verdict_c2(aggregate("inside"), sweep_runs=runs[:1]).detail


def test_c3_reads_the_check():
    check = {"pass": True, "cases": {"autodiff": 200}, "max_relative_error": {"filter": 1e-15,
                                                                             "input": None},
             "checks": {"autodiff": {"pass": True}, "fig4": {"pass": True,
                                                             "equations": {"1": True, "2": True}}}}
    assert verdict_c3(check).status == "holds"
    assert "200 random layers" in verdict_c3(check).ours and "2 of 2" in verdict_c3(check).ours
    assert verdict_c3({**check, "pass": False}).status == "fails"
    assert verdict_c3(None).status == "not run"


# ----------------------------------------------------------------------------- C4


def sparsity(blank: list[float], zero: list[float]) -> dict:
    layers = []
    for k, (b, z) in enumerate(zip(blank, zero, strict=True), start=1):
        layers.append({"layer": f"conv{k}", "blank_share_mean": b, "zero_share_mean": z,
                       "channels": 8, "never_active_maps": 0, "images": 10})
        layers.append({"layer": f"pool{k}", "blank_share_mean": b, "zero_share_mean": z / 2,
                       "channels": 8, "never_active_maps": 0, "images": 10})
    return {"layers": layers}


@pytest.mark.parametrize(
    ("blank", "zero", "status"),
    [
        ([0.0, 0.1, 0.3], [0.4, 0.6, 0.8], "holds"),
        ([0.2, 0.3, 0.5], [0.4, 0.6, 0.8], "partly"),  # conv1 has blank maps
        ([0.0, 0.1, 0.05], [0.4, 0.6, 0.8], "partly"),  # blank share not monotone
        ([0.0, 0.0, 0.0], [0.5, 0.5, 0.5], "fails"),  # no trend at all
        ([0.0, 0.2, 0.1], [0.6, 0.4, 0.5], "fails"),
    ],
)
def test_c4_from_the_sparsity_numbers(blank, zero, status):
    assert verdict_c4(sparsity(blank, zero)).status == status


def test_c4_needs_two_conv_layers_and_the_activations():
    assert verdict_c4(sparsity([0.0], [0.5])).status == "undetermined"
    assert verdict_c4(None).status == "not run"


# ----------------------------------------------------------------------------- C5, C6


def curve(accuracy: list[float], loss: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(loss) + 1), "accuracy": accuracy, "loss": loss})


def test_c5_from_first_and_last_epoch_of_every_seed():
    good = curve([0.1, 0.5, 0.9], [3.0, 1.0, 0.3])
    bad = curve([0.5, 0.4, 0.3], [1.0, 1.2, 1.5])
    assert verdict_c5({0: good, 1: good}).status == "holds"
    assert verdict_c5({0: good, 1: bad}).status == "partly"
    assert verdict_c5({0: bad}).status == "fails"
    assert verdict_c5({0: curve([0.1], [2.0])}).status == "undetermined"
    assert verdict_c5({}).status == "not run"
    assert "10.0% -> 90.0%" in verdict_c5({0: good}).ours


def test_c6_needs_every_grid_with_one_tile_per_map(tmp_path):
    names = ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
    grids = {"image": "A/A_0001.jpg", "layers": [
        {"layer": n, "file": f"{n}.png", "shape": [4, 4, 8], "tiles": 8} for n in names]}
    files = [tmp_path / f"{n}.png" for n in names]
    for path in files:
        path.write_bytes(b"png")
    assert verdict_c6(grids, files).status == "holds"
    assert verdict_c6({**grids, "layers": grids["layers"][:4]}, files).status == "partly"
    (tmp_path / "conv3.png").unlink()
    assert verdict_c6(grids, files).status == "fails"
    assert verdict_c6(grids, files[:5]).status == "fails"  # a grid not given is not drawn
    (tmp_path / "conv3.png").write_bytes(b"png")
    grids["layers"][0]["tiles"] = 7
    assert verdict_c6(grids, files).status == "fails"
    assert verdict_c6(None, []).status == "not run"


# ----------------------------------------------------------------------------- provenance


def test_provenance_labels_what_obtain_recorded_and_foreign_archives():
    record = {"variant": "funneled", "kind": "folder", "source": "lfw_funneled_approx",
              "path": "/data/lfw_funneled_approx",
              "note_file": "/data/lfw_funneled_approx/SOURCE.txt",
              "note": "LFW, funneled variant -- APPROXIMATION", "approximate": True}
    flagged = provenance(record, None)
    assert flagged["approximate"] and flagged["caveat"] == "approximation"
    assert "SOURCE.txt" in flagged["flags"][0]
    assert "APPROXIMATION" in flagged["flags"][0] and flagged["note"] == record["note"]
    # the report does not second-guess obtain: a folder named *approx* is not enough
    plain = provenance({**record, "approximate": False}, None)
    assert not plain["approximate"] and plain["caveat"] is None and plain["flags"] == []

    # a foreign archive is not known to be an approximation: it is unverified
    archive = {"variant": "original", "kind": "archive", "source": "x.tgz",
               "matches_published": False, "approximate": False}
    foreign = provenance(archive, None)
    assert foreign["caveat"] == "unverified archive" and not foreign["approximate"]
    assert "md5 differs" in foreign["flags"][0]
    assert provenance({**archive, "matches_published": True}, None)["caveat"] is None
    # a prepared dataset's summary carries its source record
    assert provenance(None, {"source": record})["approximate"]


def test_data_origin_is_what_a_runs_aggregate_records_and_tables_label():
    archive = {"variant": "original", "kind": "archive", "source": "data/downloads/o.tgz",
               "origin": "http://mirror/lfw.tgz", "matches_published": False,
               "approximate": False, "note": None}
    assert data_origin(archive) == {
        "variant": "original", "source": "http://mirror/lfw.tgz", "kind": "archive",
        "approximate": False, "caveat": "unverified archive", "note": None}
    assert labelled("orig-centre", "unverified archive") == "orig-centre (unverified archive)"
    assert labelled("deep-centre", None) == "deep-centre"


def test_protocol_departures_are_empty_for_the_shipped_config():
    schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    config = check_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), schema)
    assert protocol_departures(config) == []
    config["train"]["epochs"] = 3
    assert protocol_departures(config) == [{"key": "train.epochs", "paper": 100, "ours": 3}]
    config["train"].update(epochs=100, precision="mixed_bfloat16", jit=True)  # jit: numerics only
    assert protocol_departures(config) == [
        {"key": "train.precision", "paper": "float32", "ours": "mixed_bfloat16"}]


def test_every_caption_renders_its_config_values():
    """Captions take the paper's accuracy and the interval level from the config, as Snakemake
    renders them (Jinja, the job's ``snakemake`` object)."""
    schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    config = check_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), schema)
    config["evaluate"] = {"paper_accuracy": 0.5, "confidence": 0.9}
    job = types.SimpleNamespace(config=config, wildcards=defaultdict(str))
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as Snakemake's
    texts = {path.name: environment.from_string(path.read_text()).render(snakemake=job)
             for path in (ROOT / "workflow" / "report").glob("*.rst")}
    assert "the paper's 50.00 % (red line)" in texts["sweep_accuracy.rst"]
    assert "90 % interval over seeds, and where the paper's 50.00 % lies" in texts[
        "sweep_summary.rst"]
    assert not any("83.47" in text for text in texts.values())


def test_the_schema_defaults_are_the_papers_protocol():
    """The defaults live in the schema; claims.PAPER_PROTOCOL is what departures are told from."""
    schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    assert protocol_departures(check_config({}, schema)) == []


# ----------------------------------------------------------------------------- the pipeline


def test_pipeline_through_snakemake_writes_a_self_contained_report(tmp_path_factory):
    path = pipeline_report(tmp_path_factory)
    project = path.parents[2]
    page = parse(path)
    statuses = dict(page.rows)
    assert list(statuses) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]
    assert statuses["C1"] == "fails"  # 3 synthetic people are not LFW's 34
    assert statuses["C3"] == "holds"  # the backprop stage ran
    assert statuses["C6"] == "holds"  # three blocks: six grids
    # C2 and C4 are whatever the numbers say; recompute them from the outputs
    summary = json.loads((project / "results/eval/funneled/aggregate.json").read_text())
    assert statuses["C2"] == verdict_c2(summary).status
    act = project / "results/activations/funneled/seed0"
    assert statuses["C4"] == verdict_c4(json.loads((act / "sparsity.json").read_text())).status
    assert json.loads((act / "image.json").read_text())["person"] == "Bob_Roe"
    # C7 and C8 from the views stage's JSON (views.smk), of the first seed
    views = project / "results/views/funneled/seed0"
    dissection = json.loads((views / "dissection/counts.json").read_text())
    assert statuses["C7"] == verdict_c7(dissection).status != "not run"
    inversion = json.loads((views / "inversion/summary.json").read_text())
    assert statuses["C8"] == verdict_c8(inversion).status != "not run"
    assert (project / "data/prepared/funneled/landmarks.npz").is_file()
    # every figure inlined: eleven, then 2 of the dissection, 1 of the inversion, 3 filter
    # pattern grids and the Grad-CAM overlays, all as data: URIs, nothing fetched from elsewhere
    assert len(page.images) == 18 and all(s.startswith("data:image/png;base64,")
                                          for s in page.images)
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "Not the paper's protocol." in text and "train.epochs 3 instead of 100" in text
    # what decides the exact numbers, beside the per-seed table and in the environment section
    assert "Reproducing these numbers." in text and "oneDNN on" in text and "float32" in text
    assert "Approximate data" not in text
    for name in LAYERS:
        assert (act / f"{name}.npz").is_file() and (act / "figures" / f"{name}.png").is_file()
    assert "snakemake benchmark" in text  # run times of the jobs with a benchmark: file
    assert "views/funneled/seed0" in text and "views/landmarks_funneled" in text
    with open(views / "gradcam/faces.csv", newline="", encoding="utf-8") as handle:
        faces = list(csv.DictReader(handle))
    correct = sum(row["correct"] == "True" for row in faces)
    assert f"{correct} of {len(faces)} correct" in text and len(faces) == 3
    assert "cannot reach the threshold" in text and "C7 is fragile near 0.04" in text


def test_report_without_the_backprop_stage_says_not_run(tmp_path_factory, tmp_path):
    path = pipeline_report(tmp_path_factory)
    project = path.parents[2]
    out = tmp_path / "index.html"
    seeds = [0, 1]
    figures = project / "results/figures/funneled"
    act = project / "results/activations/funneled/seed0"
    argv = [
        "write_report", f"summary={project / 'data/prepared/funneled/summary.json'}",
        f"source={project / 'data/raw/funneled/source.json'}",
        *(f"splits={project / f'data/split/funneled/seed{s}.csv'}" for s in seeds),
        *(f"histories={project / f'results/models/funneled/seed{s}/history.csv'}"
          for s in seeds),
        f"aggregate={project / 'results/eval/funneled/aggregate.json'}",
        f"curves_figure={figures / 'curves.png'}", f"accuracy_figure={figures / 'accuracy.png'}",
        f"confusion_figure={figures / 'confusion.png'}",
        f"confusion_table={figures / 'confusion.csv'}", f"per_class={figures / 'per_class.csv'}",
        f"activation_summary={act / 'sparsity.json'}", f"activation_record={act / 'image.json'}",
        f"activation_manifest={act / 'figures/grids.json'}",
        f"activation_input={act / 'figures/input.png'}",
        f"activation_sparsity={act / 'figures/sparsity.png'}",
        *(f"activation_grids={act / 'figures' / f'{layer}.png'}" for layer in LAYERS),
        f"html={out}",
    ]
    assert run(steps.main, argv) == 0
    page = parse(out)
    assert dict(page.rows)["C3"] == "not run"
    assert 'id="backprop-not-run"' in out.read_text(encoding="utf-8")


def test_snakemakes_own_report_holds_the_figures(tmp_path_factory):
    project = pipeline_report(tmp_path_factory).parents[2]
    result = snakemake(project, "--report", "snakemake-report.zip", REPORT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(project / "snakemake-report.zip") as archive:
        names = archive.namelist()
    for name in ("curves.png", "accuracy.png", "conv1.png", "pool3.png", "sparsity.png",
                 "input.png", "index.html"):
        assert any(n.endswith(name) for n in names), name


def test_c2_is_undetermined_when_the_interval_covers_every_accuracy():
    wide = {**aggregate("inside"), "interval": {"low": -2.8, "high": 3.5}}
    result = verdict_c2(wide, epochs=[3, 3])
    assert result.status == "undetermined" and "too few to tell" in result.detail
    assert result.ours.startswith("80.00% mean over 5 seeds after 3 epochs")
    assert "after" not in verdict_c2(aggregate("inside"), epochs=[100] * 5).ours
    assert "Measured on the deepfunneled images" in verdict_c2(aggregate("inside"),
                                                                variant="deepfunneled").detail
    assert "Measured on" not in verdict_c2(aggregate("inside"), variant="funneled").detail


def test_the_reports_run_config_is_no_value_typed_by_hand(tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    assert run(steps.main, ["write_report", f"summary={summary}", "run_config=x",
                            f"html={tmp_path / 'index.html'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: run_config is the whole config of a run (a mapping, as the rule "
                   "gives it), not a value"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_report_pairs_each_history_with_the_train_json_beside_it(tmp_path_factory):
    project = pipeline_report(tmp_path_factory).parents[2]
    folders = [project / f"results/models/funneled/seed{s}" for s in (0, 1)]
    files = types.SimpleNamespace(histories=[folder / "history.csv" for folder in folders],
                            train_infos=[folder / "train.json" for folder in reversed(folders)])
    rows, infos, histories = training_context(files)
    assert [row["seed"] for row in rows] == [0, 1] and list(histories) == [0, 1]
    for row, folder in zip(rows, folders, strict=True):
        assert row["seconds"] == json.loads((folder / "train.json").read_text())["seconds"]
    assert len(infos) == 2


def test_report_times_only_the_benchmark_files_it_is_given(tmp_path):
    for job, seconds in (("activations/run/seed0_export", 2.5), ("report/run_figures", 1.0),
                         ("train/run/seed0", 9.0)):
        (tmp_path / job).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{job}.tsv").write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:02\tNA\n")
    rows = benchmark_rows([tmp_path / "report/run_figures.tsv",
                           tmp_path / "activations/run/seed0_export.tsv"])
    assert [(row["stage"], row["job"], row["seconds"], row["max_rss_mb"]) for row in rows] == [
        ("activations", "activations/run/seed0_export", 2.5, None),
        ("report", "report/run_figures", 1.0, None)]


def test_seeds_are_grouped_by_what_decides_their_numbers():
    avx2 = {"vector_extensions": ["avx2"], "onednn": True, "tensorflow_build": "CPU only",
            "gpu_driver": None}
    plain = {"precision": "float32", "jit": False}
    infos = [{"seed": 0, "cpu": "A", "tensorflow": "2.21.0", "numerics": avx2, "train": plain},
             {"seed": 1, "cpu": "B", "tensorflow": "2.21.0", "numerics": avx2, "train": plain},
             {"seed": 2, "cpu": "A", "tensorflow": "2.21.0", "numerics": avx2, "train": plain},
             {"seed": 3}]  # a record from before numerics were recorded
    groups = numerics_groups(infos)
    assert [(g["cpu"], g["seeds"]) for g in groups] == [("A", [0, 2]), ("B", [1])]
    assert groups[0]["precision"] == "float32" and groups[0]["gpu_name"] is None
    assert groups[0]["tensorflow"] == "2.21.0" and groups[0]["onednn"] is True
