"""The config is checked against its schema before any job starts, naming the bad key."""

from pathlib import Path

import pytest
import yaml
from workflow_runner import ROOT, make_project, snakemake

from lfwcnn.config import DEFAULT_CONFIG, check_config, default_settings, load_config
from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import freeze

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_default() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_complete():
    config = load_default()
    filled = check_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), SCHEMA)
    assert filled == config, "config.yaml must spell out every key the schema knows"


def test_defaults_are_the_papers_protocol():
    config = check_config({}, SCHEMA)
    assert config["data"]["variant"] == "funneled"
    assert config["data"]["crop"] == {"rows": [61, 189], "cols": [61, 189]}
    assert config["data"]["image_size"] == 64
    assert config["data"]["min_images_per_person"] == 30
    assert config["split"]["test_fraction"] == 0.25
    assert config["train"] == {
        "optimizer": "adam", "learning_rate": 0.001, "epochs": 100, "batch_size": 128,
        "device": "auto", "precision": "float32", "jit": False, "per_gpu": 1,
    }


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"data": {"bogus": 1}}, "config key data.bogus: Additional properties"),
        ({"colour": "red"}, "config key colour: Additional properties"),
        ({"data": {"variant": "aligned"}}, "config key data.variant: 'aligned' is not one of"),
        ({"split": {"test_fraction": 1.5}}, "config key split.test_fraction: 1.5"),
        ({"split": {"test_fraction": 0}}, "config key split.test_fraction: 0"),
        ({"train": {"epochs": 0}}, "config key train.epochs: 0 is less than the minimum"),
        ({"train": {"epochs": "ten"}}, "config key train.epochs: 'ten' is not of type"),
        ({"train": {"batch_size": 0}}, "config key train.batch_size"),
        ({"train": {"optimizer": "adamw"}}, "config key train.optimizer"),
        ({"train": {"per_gpu": 0}}, "config key train.per_gpu: 0 is less than the minimum"),
        ({"train": {"per_gpu": 1.5}}, "config key train.per_gpu: 1.5 is not of type"),
        ({"model": {"dropout_placement": "first"}}, "config key model.dropout_placement"),
        ({"data": {"crop": {"rows": [189, 61]}}}, "config key data.crop.rows: [189, 61]"),
        ({"data": {"crop": {"cols": [0, 300]}}}, "config key data.crop.cols: [0, 300]"),
        ({"data": {"sha256": "abc"}}, "config key data.sha256"),
    ],
)
def test_bad_values_name_the_key(patch, expected):
    with pytest.raises(LfwcnnError) as caught:
        check_config(patch, SCHEMA)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_load_config_merges_files_in_order_nested_keys_too(tmp_path: Path):
    """As Snakemake merges --configfile overlays: what a step run by hand reads."""
    (tmp_path / "a.yaml").write_text("data: {crop: {rows: [0, 250]}, image_size: 32}\n")
    (tmp_path / "b.yaml").write_text("data: {image_size: 16}\nseeds: [7]\n")
    config = load_config([DEFAULT_CONFIG, tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert config["data"]["crop"] == {"rows": [0, 250], "cols": [61, 189]}
    assert config["data"]["image_size"] == 16 and config["seeds"] == [7]
    assert config["data"]["min_images_per_person"] == 30  # the shipped value stays
    (tmp_path / "c.yaml").write_text("data: {image_size: 0}\n")
    with pytest.raises(LfwcnnError, match="^config key data.image_size: 0 is less than"):
        load_config([DEFAULT_CONFIG, tmp_path / "c.yaml"])


def test_default_settings_merge_the_overlay_check_it_and_freeze_it():
    settings = default_settings({"data": {"min_images_per_person": 5,
                                          "crop": {"rows": [0, 250]}}})
    assert settings.data.min_images_per_person == 5
    assert settings.data.crop == freeze({"rows": [0, 250], "cols": [61, 189]}, "crop")
    assert settings.split == default_settings().split
    assert settings.data.as_dict() == {**load_config([DEFAULT_CONFIG])["data"],
                                       "min_images_per_person": 5,
                                       "crop": {"rows": [0, 250], "cols": [61, 189]}}
    with pytest.raises(LfwcnnError, match="^config key data.image_size: 0 is less than"):
        default_settings({"data": {"image_size": 0}})
    with pytest.raises(LfwcnnError, match=r"^config key data.crop.rows: \[0, 300\] must"):
        default_settings({"data": {"crop": {"rows": [0, 300]}}})


def test_snakemake_stops_before_any_job_on_a_bad_key(tmp_path: Path):
    project = make_project(tmp_path, {"train": {"epochs": 0}})
    result = snakemake(project, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "config key train.epochs: 0 is less than the minimum of 1" in output
    assert not (project / "data").exists()


@pytest.mark.parametrize("name", ["ablation.yaml", "ablation-download.yaml"])
def test_shipped_ablations_plan_three_variants_by_two_crops(name):
    from lfwcnn.sweep import plan_sweep

    config = load_default()
    config.update(yaml.safe_load((ROOT / "config" / name).read_text()))
    plan = plan_sweep(config, check=lambda merged: check_config(merged, SCHEMA))
    variants = list(config["sweep"]["variant"])
    assert len(variants) == 3
    assert list(plan.runs) == [
        f"{variant}-{crop}" for variant in variants for crop in ("centre128", "whole250")]
    assert len(plan.datasets) == 6 and len(plan.sources) == 3  # each variant obtained once
    assert len(plan.runs) == 6 and len(config["seeds"]) >= 3
    assert {run.config["train"]["epochs"] for run in plan.runs.values()} == {100}  # the paper
    shipped = yaml.safe_load((ROOT / "config" / "ablation.yaml").read_text())
    assert config["sweep"]["crop"] == shipped["sweep"]["crop"]  # the two files stay in step
    assert config["seeds"] == shipped["seeds"]
