"""The seam between the workflow and the package: steps bound by name (lfwcnn.steps), config
sections as frozen objects (lfwcnn.settings), and every ``script:`` rule matching its step."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from workflow_runner import ROOT, SNAKEFILE, make_project, planned_jobs

from lfwcnn import steps
from lfwcnn.cli import run
from lfwcnn.config import DEFAULT_CONFIG, default_settings, load_config
from lfwcnn.dataset import Dataset, load_dataset, load_split, save_dataset
from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings, freeze

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def toy_dataset(path: Path) -> Path:
    save_dataset(path, Dataset(
        images=np.zeros((8, 2, 2, 3), np.uint8), labels=np.repeat([0, 1], 4),
        class_names=np.array(["A", "B"]), files=np.array([f"P/{i}.jpg" for i in range(8)])))
    return path


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ----------------------------------------------------------------------------- the binder


def sample_step(*, source: Path, out: Path, seed: int, rate: float = 0.5,
                extra: Path | None = None, files: list[Path] | None = None,
                split: Settings | None = None, threads: int = 1) -> dict[str, Any]:
    """A step of every kind of parameter the binder converts; returns what it was given."""
    return {"source": source, "out": out, "seed": seed, "rate": rate, "extra": extra,
            "files": files, "split": split, "threads": threads}


def test_the_binder_converts_each_value_to_its_parameters_type():
    got = steps.call(sample_step, {"source": "a/in.npz", "out": "b/out.csv", "seed": "7",
                                   "rate": "0.25", "split": {"test_fraction": 0.5,
                                                             "ratios": [1, 2]}})
    assert got["source"] == Path("a/in.npz") and isinstance(got["out"], Path)
    assert got["seed"] == 7 and got["rate"] == 0.25
    assert isinstance(got["split"], Settings) and got["split"].test_fraction == 0.5
    assert got["split"].ratios == (1, 2)  # frozen: lists become tuples
    assert got["extra"] is None and got["files"] is None and got["threads"] == 1


def test_unknown_and_missing_names_are_one_line_naming_them():
    with pytest.raises(LfwcnnError, match=r"^step sample_step takes no bogus, colour \(it takes "
                                          r"source, out, seed, rate, extra, files, split, "
                                          r"threads\)$"):
        steps.call(sample_step, {"source": "a", "out": "b", "seed": 1, "colour": 2, "bogus": 3})
    with pytest.raises(LfwcnnError, match="^step sample_step needs out, seed$"):
        steps.call(sample_step, {"source": "a"})


@pytest.mark.parametrize(("name", "value", "message"), [
    ("seed", "seven", "seed: 'seven' is not an integer"),
    ("seed", "1.5", "seed: '1.5' is not an integer"),
    ("rate", "fast", "rate: 'fast' is not a number"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_it(name, value, message):
    values = {"source": "a", "out": "b", "seed": "1", name: value}
    with pytest.raises(LfwcnnError, match=f"^{message}$"):
        steps.call(sample_step, values)


@pytest.mark.parametrize("empty", [[], ""])
def test_an_optional_input_a_rule_left_empty_is_none(empty):
    """A rule's input function returns [] for an input it does not need (obtain_lfw's
    archive, for a folder source); the step sees None."""
    got = steps.call(sample_step, {"source": "a", "out": "b", "seed": 1, "extra": empty,
                                   "files": empty})
    assert got["extra"] is None and got["files"] is None


def test_none_for_an_optional_value_is_none():
    got = steps.call(sample_step, {"source": "a", "out": "b", "seed": 1, "extra": None})
    assert got["extra"] is None


def test_list_inputs_are_lists_of_paths():
    one = steps.call(sample_step, {"source": "a", "out": "b", "seed": 1, "files": "x.csv"})
    assert one["files"] == [Path("x.csv")]
    many = steps.call(sample_step, {"source": "a", "out": "b", "seed": 1,
                                    "files": ("x.csv", Path("y.csv"))})
    assert many["files"] == [Path("x.csv"), Path("y.csv")]


def test_wildcards_threads_and_resources_reach_only_the_steps_that_ask():
    optional = {"threads": 4, "mem_mb": 2048, "dataset": "funneled", "seed": "3"}
    got = steps.call(sample_step, {"source": "a", "out": "b"}, optional)
    assert got["threads"] == 4 and got["seed"] == 3  # a wildcard is a string, converted
    # an explicit value wins over a wildcard of the same name
    assert steps.call(sample_step, {"source": "a", "out": "b", "seed": 5}, optional)["seed"] == 5


def test_a_name_given_twice_on_the_command_line_is_a_list(tmp_path):
    assert steps._from_command_line(["files=a", "seed=1", "files=b", "files=c"]) == {
        "files": ["a", "b", "c"], "seed": "1"}


def test_run_step_takes_the_config_sections_from_the_given_config(tmp_path):
    dataset = toy_dataset(tmp_path / "d.npz")
    steps.run_step("split_dataset", {"dataset": str(dataset), "split_csv": tmp_path / "s.csv",
                                     "seed": "0"},
                   default_settings({"split": {"test_fraction": 0.5}}))
    train, test = load_split(tmp_path / "s.csv", load_dataset(dataset))
    assert len(train) == len(test) == 4


# ----------------------------------------------------------------------------- python -m lfwcnn


def test_help_lists_every_step_and_the_names_it_takes():
    done = subprocess.run([sys.executable, "-m", "lfwcnn", "--help"], env=ENV,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for name in steps.STEPS:
        [line] = [line for line in done.stdout.splitlines() if line.startswith(f"  {name} ")]
        for parameter in inspect.signature(steps.step_function(name)).parameters:
            assert parameter in line.split() or f"[{parameter}]" in line.split(), line


def test_a_step_run_by_hand_fails_in_one_line_and_writes_nothing(tmp_path):
    """The module itself (``python -m lfwcnn``), as a user types it."""
    out = tmp_path / "s.csv"
    done = subprocess.run([sys.executable, "-m", "lfwcnn", "split_dataset",
                           f"dataset={tmp_path / 'absent.npz'}", f"split_csv={out}", "seed=x"],
                          env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["error: seed: 'x' is not an integer"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["train_everything"], "error: unknown step 'train_everything'; steps: aggregate_seeds, "
                           "download_lfw, draw_activations, draw_training, evaluate_model, "
                           "export_activations, find_landmarks, obtain_lfw, prepare_dataset, "
                           "split_dataset, summarize_sweep, train_model, verify_backprop, "
                           "view_network, write_report"),
    ([], "error: give a step (python -m lfwcnn --help lists the steps)"),
    (["split_dataset", "seed"], "error: 'seed': give values as NAME=VALUE"),
    (["split_dataset", "=0"], "error: '=0': give values as NAME=VALUE"),
    (["split_dataset", "dataset={d}", "split_csv={o}", "seed=zero"],
     "error: seed: 'zero' is not an integer"),
    (["split_dataset", "dataset={d}", "split_csv={o}", "seed=0", "colour=red"],
     "error: step split_dataset takes no colour (it takes dataset, split_csv, split, seed)"),
    (["split_dataset", "dataset={d}"], "error: step split_dataset needs split_csv, seed"),
    (["split_dataset", "dataset={d}", "split_csv={o}", "seed=0", "--configfile", "{t}/bad.yaml"],
     "error: config key split.test_fraction: 0 is less than or equal to the minimum of 0"),
    (["split_dataset", "dataset={d}", "split_csv={o}", "seed=0", "--configfile", "{t}/typo.yaml"],
     "error: config key split.fraction: Additional properties are not allowed ('fraction' was "
     "unexpected)"),
    (["split_dataset", "dataset={d}", "split_csv={o}", "seed=0", "--configfile", "{t}/no.yaml"],
     "error: {t}/no.yaml: cannot read (No such file or directory)"),
])
def test_bad_command_lines_are_one_line_and_leave_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "bad.yaml").write_text("split: {test_fraction: 0}\n")
    (tmp_path / "typo.yaml").write_text("split: {fraction: 0.5}\n")
    before = sorted(tmp_path.iterdir())
    fill = {"d": tmp_path / "d.npz", "o": tmp_path / "out" / "s.csv", "t": tmp_path}
    assert run(steps.main, [arg.format(**fill) for arg in argv]) == 1
    assert one_error(capsys) == message.format(**fill)
    assert sorted(tmp_path.iterdir()) == before


def test_a_config_section_given_as_a_value_is_one_line(tmp_path, capsys):
    dataset = toy_dataset(tmp_path / "d.npz")
    code = steps.guarded(lambda: steps.main([
        "split_dataset", f"dataset={dataset}", f"split_csv={tmp_path / 's.csv'}",
        "seed=0", "split=0.5"]))
    assert code == 1 and "split" in one_error(capsys)
    assert not (tmp_path / "s.csv").exists()


def test_a_sweep_overlay_does_not_stop_a_step_run_by_hand(tmp_path, capsys):
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        sweep:
          variant:
            deep.funneled: {data: {variant: deepfunneled}}
            2crop: {data: {crop: {rows: [0, 250]}}}
    """))
    code = steps.guarded(lambda: steps.main([
        "split_dataset", f"dataset={tmp_path / 'absent.npz'}",
        f"split_csv={tmp_path / 's.csv'}", "seed=0", "--configfile", str(tmp_path / "sweep.yaml")]))
    assert code == 1 and "absent.npz" in one_error(capsys)  # the config was fine


# ----------------------------------------------------------------------------- settings


def test_freeze_makes_sections_immutable_with_the_configs_own_keys():
    config = load_config([DEFAULT_CONFIG])
    frozen = freeze(config)
    assert isinstance(frozen.data, Settings) and frozen.data.crop.rows == (61, 189)
    assert frozen.seeds == tuple(config["seeds"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.data.image_size = 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.data.crop.rows = (0, 250)
    assert frozen.data.as_dict() == config["data"]  # tuples back to lists: the same config
    assert freeze(frozen) is frozen
    assert hash(frozen.model) == hash(freeze(copy.deepcopy(config)).model)
    assert [field.name for field in dataclasses.fields(frozen.train)] == list(config["train"])


def changed(value: Any) -> Any:
    """Some other value of the same kind (a list one longer, an empty mapping one key more)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[-1] if value else 0]
    if isinstance(value, dict):
        return {**value, "x": 1}
    return "x" if value is None else None


# ----------------------------------------------------------------------------- rules and steps

RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

def unnamed(items):
    # entries no name covers (a named list, e.g. one file per layer, covers all of its own)
    covered = sum(1 if end is None else end - start for _, (start, end) in items._get_names())
    return len(items) - covered

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(ResourceSettings(cores=1), snakefile=Path(sys.argv[1]),
                            workdir=Path(sys.argv[2]))._workflow
    print(json.dumps([{
        "name": rule.name, "script": rule.script, "input": list(rule.input.keys()),
        "output": list(rule.output.keys()), "params": list(rule.params.keys()),
        "unnamed": unnamed(rule.input) + unnamed(rule.output) + unnamed(rule.params),
        "wildcards": sorted(rule.wildcard_names), "resources": sorted(rule.resources),
    } for rule in workflow.rules]))
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    """The workflow's rules as Snakemake parses them (its API, no DAG, no job)."""
    project = make_project(tmp_path_factory.mktemp("rules"), {})
    done = subprocess.run([sys.executable, "-c", RULES_SCRIPT, str(SNAKEFILE), str(project)],
                          env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return {rule["name"]: rule for rule in json.loads(done.stdout.strip().splitlines()[-1])}


def test_every_script_rule_runs_the_step_named_like_it_and_feeds_every_parameter(rules):
    scripted = {name: rule for name, rule in rules.items() if rule["script"]}
    assert scripted, "no rule uses script:"
    for name, rule in scripted.items():
        assert rule["script"] == "../scripts/step.py", name
        assert name in steps.STEPS, f"rule {name} runs no step of lfwcnn.steps.STEPS"
        assert rule["unnamed"] == 0, f"rule {name}: an unnamed input, output or param"
        parameters = inspect.signature(steps.step_function(name)).parameters
        named = rule["input"] + rule["output"] + rule["params"]
        assert not set(named) - set(parameters), (name, set(named) - set(parameters))
        given = {*named, *rule["wildcards"], "threads", *rule["resources"]}
        needed = {p.name for p in parameters.values() if p.default is inspect.Parameter.empty}
        assert needed <= given, (name, needed - given)
        hints = typing.get_type_hints(steps.step_function(name))
        sections = {p for p, hint in hints.items()
                    if isinstance(hint, type) and issubclass(hint, Settings)}
        assert sections <= set(rule["params"]), f"rule {name}: give {sections} as params"
    assert set(steps.STEPS) <= set(scripted), "a step that no rule runs"


def test_train_per_gpu_reaches_the_step_as_a_resource_and_reruns_no_training(tmp_path):
    """train.per_gpu is a resource of train_model, not a param: Snakemake reruns a job whose
    params changed, and per_gpu changes no weight. Each job is one GPU slot (locally)."""
    from lfwcnn.train import train_model

    assert "per_gpu" in inspect.signature(train_model).parameters  # the binder passes it by name
    trainings = {}
    for per_gpu in (1, 3):
        overlay = {"seeds": [0], "train": {"per_gpu": per_gpu}}
        project = make_project(tmp_path / f"k{per_gpu}", overlay)
        jobs = planned_jobs(project, "results/models/funneled/seed0/model.keras")
        trainings[per_gpu] = next(job for job in jobs if job["rule"] == "train_model")
    for per_gpu, job in trainings.items():
        assert job["resources"]["per_gpu"] == per_gpu and job["resources"]["gpu"] == 1
        assert "gres" not in job["resources"]  # SLURM's GPU shard only under SLURM
        assert "per_gpu" not in json.loads(job["params"]["train"])
    assert trainings[1]["params"] == trainings[3]["params"]
