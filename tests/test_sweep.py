"""Sweeps: the product of the axes, merged and checked configs, names, shared datasets."""

from __future__ import annotations

import json

import pytest
import yaml
from workflow_runner import ROOT

from lfwcnn.claims import data_origin
from lfwcnn.config import check_config
from lfwcnn.errors import LfwcnnError
from lfwcnn.sweep import deep_merge, plan_sweep, split_seed
from lfwcnn.sweep_summary import summarize_runs, summary_table

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CENTRE = {"rows": [61, 189], "cols": [61, 189]}
WHOLE = {"rows": [0, 250], "cols": [0, 250]}
ABLATION = {
    "variant": {
        "deepfunneled": {"data": {"variant": "deepfunneled", "source": "../shared/lfw"}},
        "funneled_approx": {"data": {"variant": "funneled",
                                     "source": "../shared/lfw_funneled_approx"}},
        "original_approx": {"data": {"variant": "original",
                                     "source": "../shared/lfw_original_approx"}},
    },
    "crop": {"centre128": {"data": {"crop": CENTRE}}, "whole250": {"data": {"crop": WHOLE}}},
}


def check(config: dict) -> dict:
    return check_config(config, SCHEMA)


def plan(sweep: dict, **base) -> object:
    return plan_sweep(check({**base, "sweep": sweep}), check=check)


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"data": {"crop": {"rows": [1, 2], "cols": [3, 4]}, "variant": "funneled"},
            "seeds": [0]}
    merged = deep_merge(base, {"data": {"crop": {"rows": [0, 250]}}, "seeds": [1, 2]})
    assert merged == {"data": {"crop": {"rows": [0, 250], "cols": [3, 4]},
                               "variant": "funneled"}, "seeds": [1, 2]}
    assert base["data"]["crop"]["rows"] == [1, 2]  # the base is not touched


def test_no_sweep_is_one_run_named_after_the_variant():
    result = plan({})
    assert not result.is_sweep
    assert list(result.runs) == list(result.datasets) == list(result.sources) == ["funneled"]
    run = result.first
    assert run.settings == {} and run.dataset == run.source == "funneled"
    assert "sweep" not in run.config and run.config["train"]["epochs"] == 100
    assert list(plan({}, data={"variant": "deepfunneled"}).runs) == ["deepfunneled"]


def test_the_ablation_is_every_variant_times_every_crop():
    result = plan(ABLATION)
    names = [f"{v}-{c}" for v in ABLATION["variant"] for c in ("centre128", "whole250")]
    assert list(result.runs) == names
    assert list(result.datasets) == names  # both axes change the data
    assert list(result.sources) == list(ABLATION["variant"])  # one download/obtain per source
    run = result.runs["funneled_approx-whole250"]
    assert run.settings == {"variant": "funneled_approx", "crop": "whole250"}
    assert run.config["data"]["variant"] == "funneled"
    assert run.config["data"]["source"] == "../shared/lfw_funneled_approx"
    assert run.config["data"]["crop"] == WHOLE
    assert run.source == "funneled_approx" and run.dataset == run.name
    assert [row["variant"] for row in result.table()] == [
        "deepfunneled", "deepfunneled", "funneled", "funneled", "original", "original"]


def test_runs_that_agree_on_the_data_share_one_dataset():
    sweep = {"dropout": {"last": {"model": {"dropout_placement": "last"}},
                         "all": {"model": {"dropout_placement": "all"}}},
             "crop": {"centre": None, "whole": {"data": {"crop": WHOLE}}}}
    result = plan(sweep)
    assert list(result.runs) == ["last-centre", "last-whole", "all-centre", "all-whole"]
    assert list(result.datasets) == ["centre", "whole"]
    assert result.runs["all-whole"].dataset == result.runs["last-whole"].dataset == "whole"
    assert result.runs["all-whole"].config["model"]["dropout_placement"] == "all"
    assert list(result.sources) == ["funneled"]  # no axis changes where the images come from
    assert result.datasets["whole"].config["data"]["crop"] == WHOLE


def test_equal_overlays_under_different_names_share_the_dataset():
    sweep = {"crop": {"centre": None, "centre_again": {"data": {"crop": CENTRE}}}}
    result = plan(sweep)
    assert list(result.runs) == ["centre", "centre_again"]
    assert list(result.datasets) == ["centre"]


def test_a_source_axis_with_one_crop_keeps_sources_apart():
    sweep = {"lfw": {"a": {"data": {"source": "/x/a"}}, "b": {"data": {"source": "/x/b"}}},
             "split": {"p25": None, "p30": {"split": {"test_fraction": 0.3}}}}
    result = plan(sweep)
    assert list(result.sources) == ["a", "b"]
    assert list(result.datasets) == ["a-p25", "a-p30", "b-p25", "b-p30"]
    assert result.datasets["b-p30"].source == "b"
    assert result.sources["b"].config["source"] == "/x/b"


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"crop": {"wide": {"data": {"crop": {"rows": [0, 300]}}}}},
         "sweep.crop.wide: config key data.crop.rows: [0, 300] must satisfy"),
        ({"lr": {"fast": {"train": {"learnign_rate": 0.1}}}},
         "sweep.lr.fast: config key train.learnign_rate: Additional properties"),
        ({"v": {"x": {"data": {"variant": "aligned"}}}},
         "sweep.v.x: config key data.variant: 'aligned' is not one of"),
        ({"s": {"more": {"seeds": [1, 2]}}}, "config key sweep.s.more.seeds: an overlay may not"),
        ({"s": {"nested": {"sweep": {}}}}, "config key sweep.s.nested.sweep: an overlay may not"),
        ({"blocks": {"two": {"model": {"filters": [4, 8]}}, "three": None}},
         "sweep.blocks.three: model.filters has 3 layers, the first run 2"),
    ],
)
def test_a_bad_overlay_names_its_axis_and_value(sweep, message):
    with pytest.raises(LfwcnnError) as caught:
        plan(sweep)
    assert message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("sweep", "key"),
    [({"a-b": {"x": None}}, "sweep"), ({"crop": {"../up": None}}, "sweep.crop"),
     ({"crop": {}}, "sweep.crop"), ({"crop": {"x": [1]}}, "sweep.crop.x")],
)
def test_names_must_be_path_safe_and_overlays_mappings(sweep, key):
    with pytest.raises(LfwcnnError) as caught:
        check({"sweep": sweep})
    assert str(caught.value).startswith(f"config key {key}"), str(caught.value)


def test_shipped_config_comment_is_a_valid_sweep():
    """The commented example in config.yaml, uncommented, is a sweep that plans."""
    text = (ROOT / "config" / "config.yaml").read_text()
    block = text[text.index("sweep: {}"):].split("\n\n")[0].splitlines()[1:]
    example = yaml.safe_load("\n".join(line.replace("#", "", 1) for line in block
                                       if line.startswith("#")))
    result = plan(example)
    assert len(result.runs) == 4 and len(result.datasets) == 4 and len(result.sources) == 2


def test_split_seed_is_the_training_seed_unless_pinned():
    assert split_seed({"seed": None}, "3") == 3
    assert split_seed({"seed": 7}, 3) == 7


def test_summary_has_one_row_per_run_with_settings_and_provenance(tmp_path):
    approx = tmp_path / "lfw_funneled_approx"
    approx.mkdir()
    result = plan({"variant": {"deep": {"data": {"variant": "deepfunneled"}},
                               "approx": {"data": {"source": str(approx)}}}})
    sources = [{"variant": "deepfunneled", "kind": "archive", "source": "x.tgz",
                "origin": "http://mirror/lfw-deepfunneled.tgz", "matches_published": True},
               {"variant": "funneled", "kind": "folder", "source": str(approx),
                "path": str(approx), "approximate": True, "note": "thumbnails, upscaled"}]
    aggregates = [{"seeds": 2, "mean": m, "std": 0.01, "confidence": 0.95,
                   "interval": {"low": m - 0.1, "high": m + 0.1}, "paper_accuracy": 0.8347,
                   "verdict": v, "difference_points": 1.0,
                   "by_seed": [{"seed": 0, "accuracy": m}, {"seed": 1, "accuracy": m}],
                   "data": data_origin(source)}
                  for m, v, source in ((0.8, "inside", sources[0]), (0.5, "above", sources[1]))]
    summary = summarize_runs(result.table(), aggregates)
    table = summary_table(summary)
    assert list(table["run"]) == ["deep", "approx"] and list(table["variant"]) == [
        "deepfunneled", "funneled"]
    assert list(table["approximate"]) == [False, True]
    assert list(table["caveat"].fillna("")) == ["", "approximation"]
    assert table.loc[0, "source"] == "http://mirror/lfw-deepfunneled.tgz"
    assert list(table["verdict"]) == ["inside", "above"]
    assert {"ci_low", "ci_high", "std", "seeds", "seed_list"} <= set(table.columns)
    json.dumps(summary)  # plain JSON
