"""Evaluation per seed and across seeds: statistics on hand-computed values, outputs, bad input."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers_training import make_dataset, split_in_quarters, tiny_settings
from workflow_runner import make_project, planned_jobs

from lfwcnn import aggregate, evaluate, steps
from lfwcnn.cli import run
from lfwcnn.config import default_settings
from lfwcnn.dataset import save_dataset, save_split
from lfwcnn.errors import LfwcnnError
from lfwcnn.train import train_seed, write_outputs

T_975_2 = 4.302652729749462  # Student t, 97.5 % quantile, 2 degrees of freedom


# ------------------------------------------------------------------------------- statistics


def test_binomial_interval_at_the_edges_has_a_closed_form():
    # Clopper-Pearson: 0/n -> [0, 1 - (a/2)^(1/n)], n/n -> [(a/2)^(1/n), 1]
    low, high = evaluate.binomial_interval(0, 10, 0.95)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** 0.1)  # 0.3085
    low, high = evaluate.binomial_interval(10, 10, 0.95)
    assert low == pytest.approx(0.025 ** 0.1) and high == 1


def test_binomial_interval_of_the_papers_495_of_593():
    low, high = evaluate.binomial_interval(495, 593, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.8024, 0.8637)
    assert evaluate.binomial_interval(98, 593, 0.95) == pytest.approx((1 - high, 1 - low))


def test_binomial_interval_refuses_impossible_counts():
    with pytest.raises(LfwcnnError, match="correct <= total"):
        evaluate.binomial_interval(11, 10, 0.95)
    # an impossible confidence is the schema's to refuse, in one line naming it
    with pytest.raises(LfwcnnError, match="config key evaluate.confidence: 1.0 is greater than "
                                          "or equal to the maximum of 1"):
        default_settings({"evaluate": {"confidence": 1.0}})


@pytest.mark.parametrize("seed", range(5))
def test_per_class_scores_of_a_confusion_matrix_are_scikit_learns(seed):
    """One function scores a seed and the pooled seeds: bit for bit scikit-learn's numbers."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    classes = np.arange(7)
    labels = rng.integers(0, 7, 300)
    predicted = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 6, 300))
    names = [f"P{k}" for k in classes]
    confusion = pd.DataFrame(confusion_matrix(labels, predicted, labels=classes),
                             index=names, columns=names)
    scores = evaluate.per_class(confusion)
    expected = precision_recall_fscore_support(labels, predicted, labels=classes,
                                               zero_division=0)
    for column, values in zip(("precision", "recall", "f1", "support"), expected, strict=True):
        np.testing.assert_array_equal(scores[column].to_numpy(), values)
    assert list(scores["predicted"]) == list(np.bincount(predicted, minlength=7))
    assert scores["support"].dtype.kind == "i"
    # the seed's macro and weighted averages are scikit-learn's too, bit for bit
    metrics, _, _ = evaluate.score(labels, np.eye(7)[predicted], names, 0.95)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                     average=average, zero_division=0)
        assert metrics[f"{average}_avg"] == {"precision": p, "recall": r, "f1": f}


def test_cross_entropy_by_hand():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    # -(ln 0.5 + ln 0.9 + ln 1e-7) / 3: a zero probability is clipped as Keras clips it
    expected = (math.log(2) - math.log(0.9) - math.log(1e-7)) / 3
    assert evaluate.cross_entropy(np.array([0, 0, 0]), probabilities) == pytest.approx(expected)


def test_mean_and_prediction_intervals_by_hand():
    values = [0.80, 0.82, 0.84]  # mean 0.82, sd 0.02
    low, high = aggregate.mean_interval(values, 0.95)
    half = T_975_2 * 0.02 / math.sqrt(3)  # 0.04968
    assert (low, high) == pytest.approx((0.82 - half, 0.82 + half))
    low, high = aggregate.mean_interval(values, 0.95, one_run=True)
    half = T_975_2 * 0.02 * math.sqrt(1 + 1 / 3)  # 0.09937
    assert (low, high) == pytest.approx((0.82 - half, 0.82 + half))


def test_verdicts():
    assert aggregate.verdict(0.8347, (0.80, 0.85)) == "inside"
    assert aggregate.verdict(0.8347, (0.70, 0.80)) == "above"
    assert aggregate.verdict(0.8347, (0.85, 0.90)) == "below"
    assert aggregate.verdict(0.8347, None) == "undefined"


def test_summary_paper_above_the_interval():
    summary = aggregate.summarize([0.80, 0.81, 0.79], 0.8347, 0.95)
    half = T_975_2 * 0.01 / math.sqrt(3)  # interval 0.7752 .. 0.8248
    assert summary["mean"] == pytest.approx(0.80) and summary["std"] == pytest.approx(0.01)
    assert (summary["min"], summary["max"]) == (0.79, 0.81)
    assert summary["interval"]["low"] == pytest.approx(0.80 - half)
    assert summary["verdict"] == "above"
    assert summary["difference_points"] == 3.47
    assert summary["distance_to_interval_points"] == round(100 * (0.8347 - 0.80 - half), 2)
    assert summary["verdict_single_run"] == "inside"  # one run may well land at 83.47 %
    assert "lies above the 95% interval of the mean over 3 seeds" in summary["statement"]


def test_summary_paper_below_and_inside():
    below = aggregate.summarize([0.88, 0.89, 0.90], 0.8347, 0.95)
    assert below["verdict"] == "below" and below["difference_points"] == -5.53
    inside = aggregate.summarize([0.80, 0.82, 0.84], 0.8347, 0.95)
    assert inside["verdict"] == "inside" and inside["distance_to_interval_points"] == 0


def test_intervals_are_clipped_to_possible_accuracies():
    # two seeds far apart: the t-intervals (t = 12.7 for 1 degree of freedom) pass 0 and 100 %
    summary = aggregate.summarize([0.60, 0.99], 0.8347, 0.95)
    assert aggregate.mean_interval([0.60, 0.99], 0.95)[1] > 1  # unclipped, as a difference needs
    assert (summary["interval"]["low"], summary["interval"]["high"]) == (0.0, 1.0)
    assert summary["prediction_interval"]["high"] == 1.0
    assert "clipped to [0, 1]" in summary["interval"]["method"]
    assert summary["verdict"] == "inside"


def test_one_seed_leaves_the_interval_undefined():
    summary = aggregate.summarize([0.83], 0.8347, 0.95)
    assert summary["std"] is None and summary["interval"] is None
    assert summary["verdict"] == "undefined" and summary["difference_points"] == 0.47
    assert "undefined" in summary["statement"]
    json.dumps(summary)  # and it is still valid JSON


# ------------------------------------------------------------------------------- per seed


@pytest.fixture(scope="module")
def trained_seed(tmp_path_factory):
    """A tiny model trained 3 epochs, written as the train rule writes it."""
    tmp = tmp_path_factory.mktemp("seed")
    data = make_dataset()
    train_idx, test_idx = split_in_quarters(data)
    save_dataset(tmp / "dataset.npz", data)
    save_split(tmp / "split.csv", data.files, train_idx, test_idx)
    settings = tiny_settings(epochs=3, learning_rate=0.01)
    trained = train_seed(data, train_idx, test_idx, seed=7, model=settings.model,
                         train=settings.train, backup_dir=tmp / "backup", threads=1)
    trained.info["split_seed"] = 3
    write_outputs(trained, model_file=tmp / "model.keras", history=tmp / "history.csv",
                  info=tmp / "train.json")
    return tmp, trained


def evaluate_argv(folder, out, configfile=None, **changes):
    """``python -m lfwcnn evaluate_model`` arguments writing into ``out`` as the rule names
    the files there; ``changes`` override any value, ``configfile`` is merged over the config."""
    values = {"dataset": folder / "dataset.npz", "split_csv": folder / "split.csv",
              "model_file": folder / "model.keras", "info": folder / "train.json",
              "metrics": out / "metrics.json", "per_class": out / "per_class.csv",
              "confusion": out / "confusion.csv", "figure": out / "confusion.png",
              "predictions": out / "predictions.csv", **changes}
    config = [] if configfile is None else ["--configfile", str(configfile)]
    return ["evaluate_model", *(f"{name}={value}" for name, value in values.items()), *config]


def config_file(folder, evaluate):
    """A config overlay with the ``evaluate`` section's keys ``evaluate`` changed."""
    path = folder / "overlay.json"
    path.write_text(json.dumps({"evaluate": evaluate}))
    return path


def test_evaluation_outputs_agree_with_each_other_and_with_training(trained_seed, tmp_path):
    folder, trained = trained_seed
    out = tmp_path / "eval"
    assert run(steps.main, evaluate_argv(folder, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    confusion = pd.read_csv(out / "confusion.csv", index_col="true")
    per_class = pd.read_csv(out / "per_class.csv")

    assert (metrics["seed"], metrics["split_seed"], metrics["test_images"]) == (7, 3, 24)
    assert list(predictions.columns) == ["file", "true", "predicted", "confidence", "correct"]
    assert metrics["correct"] == predictions["correct"].sum() == np.trace(confusion.to_numpy())
    assert metrics["accuracy"] == metrics["correct"] / 24
    assert confusion.to_numpy().sum() == 24 and list(confusion.index) == list(confusion.columns)
    assert per_class["support"].tolist() == confusion.sum(axis=1).tolist()
    assert per_class["predicted"].tolist() == confusion.sum(axis=0).tolist()
    # the evaluation step and Keras' per-epoch test metrics are computed independently
    assert metrics["accuracy"] == pytest.approx(trained.info["final"]["test_accuracy"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(trained.info["final"]["test_loss"], rel=1e-5)
    low, high = evaluate.binomial_interval(metrics["correct"], 24, 0.95)
    assert metrics["accuracy_interval"] == {"confidence": 0.95, "method": "clopper-pearson",
                                            "low": low, "high": high}
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["train"]["device"] == "cpu" and metrics["chance_accuracy"] == 0.25


def test_evaluation_writes_exactly_the_paths_it_is_given(trained_seed, tmp_path):
    """Output names are the rule's: none is rebuilt from a folder, nothing else is written."""
    folder, _ = trained_seed
    outputs = {"metrics": tmp_path / "a" / "m.json", "per_class": tmp_path / "b" / "classes.csv",
               "confusion": tmp_path / "c.csv", "figure": tmp_path / "d" / "e" / "matrix.png",
               "predictions": tmp_path / "p.csv"}
    assert run(steps.main, evaluate_argv(folder, tmp_path / "unused", **outputs)) == 0
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == set(outputs.values())
    assert json.loads(outputs["metrics"].read_text())["test_images"] == 24


def test_the_rules_hand_each_step_the_evaluate_keys_that_change_its_outputs(tmp_path):
    """paper_accuracy moves only the verdict across seeds: changing it reruns aggregate_seeds,
    not the evaluation of every seed."""
    overlay = {"seeds": [0, 1], "evaluate": {"paper_accuracy": 0.5, "confidence": 0.9}}
    jobs = planned_jobs(make_project(tmp_path / "p", overlay),
                        "results/eval/funneled/aggregate.json")
    evaluations = [job for job in jobs if job["rule"] == "evaluate_model"]
    assert len(evaluations) == 2
    for job in evaluations:
        assert json.loads(job["params"]["evaluate"]) == {"confidence": 0.9}
    [summary] = [job for job in jobs if job["rule"] == "aggregate_seeds"]
    assert json.loads(summary["params"]["evaluate"]) == overlay["evaluate"]
    assert summary["input"]["metrics"] == [f"results/eval/funneled/seed{seed}/metrics.json"
                                           for seed in (0, 1)]


def write_dataset(folder, data):
    train_idx, test_idx = split_in_quarters(data)
    save_dataset(folder / "dataset.npz", data)
    save_split(folder / "split.csv", data.files, train_idx, test_idx)
    return {"dataset": folder / "dataset.npz", "split_csv": folder / "split.csv"}


@pytest.mark.parametrize(
    "change, message",
    [
        ("five classes", "the model gives 4 class scores, the dataset has 5 classes"),
        ("bigger images", "the model takes images of (16, 16, 3), the dataset holds (20, 20, 3)"),
        ("no model", "no such model file"),
        ("bad confidence", "config key evaluate.confidence: 1.5 is greater than or equal to "
                           "the maximum of 1"),
    ],
)
def test_mismatched_inputs_are_one_line_errors(trained_seed, tmp_path, capsys, change, message):
    folder, _ = trained_seed
    changes = {
        "five classes": lambda: write_dataset(tmp_path, make_dataset(n_classes=5)),
        "bigger images": lambda: write_dataset(tmp_path, make_dataset(side=20)),
        "no model": lambda: {"model_file": tmp_path / "none.keras"},
        "bad confidence": lambda: {"configfile": config_file(tmp_path, {"confidence": 1.5})},
    }[change]()
    status = run(steps.main, evaluate_argv(folder, tmp_path / "out", **changes))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- across seeds


def metrics_file(folder, seed, correct, total=593):
    low, high = evaluate.binomial_interval(correct, total, 0.95)
    record = {"seed": seed, "split_seed": seed, "test_images": total, "correct": correct,
              "accuracy": correct / total, "loss": 0.6,
              "accuracy_interval": {"confidence": 0.95, "low": low, "high": high},
              "train": {"device": "cpu", "epochs": 100}}
    path = folder / f"seed{seed}.json"
    path.write_text(json.dumps(record))
    return path


def aggregate_argv(metrics, configfile=None, **values):
    """``python -m lfwcnn aggregate_seeds`` arguments: a ``metrics=`` per file, then ``values``."""
    config = [] if configfile is None else ["--configfile", str(configfile)]
    return ["aggregate_seeds", *(f"metrics={path}" for path in metrics),
            *(f"{name}={value}" for name, value in values.items()), *config]


def test_aggregate_writes_the_verdict_and_the_table(tmp_path):
    paths = [metrics_file(tmp_path, seed, correct)
             for seed, correct in [(0, 474), (1, 480), (2, 468)]]  # 79.9 %, 80.9 %, 78.9 %
    out_json, out_csv = tmp_path / "aggregate.json", tmp_path / "by_seed.csv"
    argv = aggregate_argv(paths, summary=out_json, by_seed=out_csv)
    assert run(steps.main, argv) == 0
    summary = json.loads(out_json.read_text())
    table = pd.read_csv(out_csv)
    assert summary["seeds"] == 3 and summary["mean"] == pytest.approx(474 / 593)
    assert summary["verdict"] == "above" and summary["paper_accuracy"] == 0.8347
    assert [row["seed"] for row in summary["by_seed"]] == [0, 1, 2]
    assert summary["accuracy_by_seed"] == pytest.approx(
        {"seed0": 474 / 593, "seed1": 480 / 593, "seed2": 468 / 593})
    assert table["seed"].tolist() == [0, 1, 2]
    assert table["accuracy"].tolist() == pytest.approx([474 / 593, 480 / 593, 468 / 593])
    # 0.8347 lies inside the binomial interval of 480/593 (0.7755 .. 0.8403) only; those of
    # 474/593 and 468/593 end at 0.8308 and 0.8214
    assert table["paper_in_ci"].tolist() == [False, True, False]
    assert "data" not in summary  # no source given


def test_aggregate_records_which_data_the_seeds_were_measured_on(tmp_path):
    paths = [metrics_file(tmp_path, seed, 480) for seed in (0, 1)]
    source = tmp_path / "source.json"
    source.write_text(json.dumps({
        "variant": "funneled", "kind": "folder", "source": "../shared/lfw_funneled_approx",
        "note": "LFW, funneled variant -- APPROXIMATION", "approximate": True}))
    out_json = tmp_path / "aggregate.json"
    argv = aggregate_argv(paths, source=source, summary=out_json,
                          by_seed=tmp_path / "by_seed.csv")
    assert run(steps.main, argv) == 0
    assert json.loads(out_json.read_text())["data"] == {
        "variant": "funneled", "source": "../shared/lfw_funneled_approx", "kind": "folder",
        "approximate": True, "caveat": "approximation",
        "note": "LFW, funneled variant -- APPROXIMATION"}


@pytest.mark.parametrize(
    "case, message",
    [
        ("duplicate seed", "seed 0 appears twice"),
        ("missing file", "not a per-seed metrics file"),
        ("accuracy above one", "accuracy 1.5 is not in [0, 1]"),
        ("bad confidence", "config key evaluate.confidence: 0 is less than or equal to the "
                           "minimum of 0"),
        ("bad paper accuracy", "config key evaluate.paper_accuracy: 1.2 is greater than the "
                               "maximum of 1"),
        ("bad source", "source.json: not a source record (no 'variant')"),
    ],
)
def test_aggregate_bad_input(tmp_path, capsys, case, message):
    paths = [metrics_file(tmp_path, 0, 480)]
    extra = {}
    if case == "duplicate seed":
        twin = tmp_path / "twin.json"
        twin.write_text(paths[0].read_text())
        paths.append(twin)
    if case == "missing file":
        paths.append(tmp_path / "absent.json")
    if case == "accuracy above one":
        paths[0].write_text(json.dumps({"seed": 0, "accuracy": 1.5}))
    if case == "bad confidence":
        extra = {"configfile": config_file(tmp_path, {"confidence": 0})}
    if case == "bad paper accuracy":
        extra = {"configfile": config_file(tmp_path, {"paper_accuracy": 1.2})}
    if case == "bad source":
        (tmp_path / "source.json").write_text("{}")
        extra = {"source": tmp_path / "source.json"}
    argv = aggregate_argv(paths, summary=tmp_path / "a.json", by_seed=tmp_path / "a.csv", **extra)
    assert run(steps.main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "a.json").exists()
