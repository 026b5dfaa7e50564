"""The ablation reading of a sweep: grid, paired effect of each axis, and the conclusion."""

from __future__ import annotations

import pytest

from lfwcnn.ablation import analyse, axis_effects, conclusion, deciding_axes, grid
from lfwcnn.aggregate import summarize

PAPER = 0.8347


def make_run(variant: str, crop: str, accuracies: list[float], caveat=None) -> dict:
    summary = summarize(accuracies, PAPER, 0.95)
    return {
        "run": f"{variant}-{crop}", "settings": {"variant": variant, "crop": crop},
        "caveat": caveat, "seeds": summary["seeds"], "mean": summary["mean"],
        "std": summary["std"], "ci_low": summary["interval"]["low"],
        "ci_high": summary["interval"]["high"], "confidence": 0.95, "paper_accuracy": PAPER,
        "verdict": summary["verdict"], "accuracies": accuracies,
        "pi_low": summary["prediction_interval"]["low"],
        "pi_high": summary["prediction_interval"]["high"],
        "verdict_single_run": summary["verdict_single_run"],
        "seed_list": list(range(len(accuracies))),
    }


@pytest.fixture
def summary() -> dict:
    # deep: consistent with the paper; approx: clearly lower; whole crop: 10 points lower
    return {"axes": ["variant", "crop"], "runs": [
        make_run("deep", "centre", [0.82, 0.84, 0.85]),
        make_run("deep", "whole", [0.72, 0.745, 0.75]),
        make_run("approx", "centre", [0.70, 0.71, 0.705], caveat="approximation"),
        make_run("approx", "whole", [0.61, 0.60, 0.62], caveat="approximation"),
    ]}


def test_grid_places_every_run_by_its_two_settings(summary):
    layout = grid(summary)
    assert (layout["row_axis"], layout["col_axis"]) == ("variant", "crop")
    assert layout["cols"] == ["centre", "whole"]
    assert [row["value"] for row in layout["rows"]] == ["deep", "approx"]
    assert [row["caveat"] for row in layout["rows"]] == [None, "approximation"]
    assert layout["rows"][1]["cells"][0]["run"] == "approx-centre"
    assert grid({**summary, "axes": ["variant"]}) is None


def test_grid_leaves_a_missing_combination_empty(summary):
    summary["runs"].pop(1)
    assert grid(summary)["rows"][0]["cells"][1] is None


def test_effects_pair_seeds_and_hold_the_other_axis_equal(summary):
    effects = {(e["axis"], e["value"]): e for e in axis_effects(summary)}
    assert set(effects) == {("variant", "approx"), ("crop", "whole")}
    crop = effects[("crop", "whole")]
    assert crop["reference"] == "centre" and crop["runs_matched"] == 2 and crop["pairs"] == 6
    differences = [-0.10, -0.095, -0.10, -0.09, -0.11, -0.085]
    assert crop["mean_points"] == pytest.approx(100 * sum(differences) / 6)
    assert crop["high_points"] < 0 and crop["direction"] == "lower"
    assert effects[("variant", "approx")]["direction"] == "lower"


def test_an_effect_that_could_be_noise_is_called_unclear(summary):
    summary["runs"][1]["accuracies"] = [0.80, 0.87, 0.83]  # centre: 0.82, 0.84, 0.85
    summary["runs"][3]["accuracies"] = [0.72, 0.69, 0.72]  # centre: 0.70, 0.71, 0.705
    crop = next(e for e in axis_effects(summary) if e["axis"] == "crop")
    assert crop["low_points"] < 0 < crop["high_points"] and crop["direction"] == "unclear"
    assert crop["reading"] == "no clear difference"


def test_seeds_only_one_run_trained_are_not_paired(summary):
    summary["runs"][1]["seed_list"] = [0, 1, 7]
    crop = next(e for e in axis_effects(summary) if e["axis"] == "crop")
    assert crop["pairs"] == 5


def test_conclusion_names_consistent_and_inconsistent_settings(summary):
    lines = conclusion(summary, axis_effects(summary))
    text = "\n".join(lines)
    assert "Consistent with the paper (1 of 4): deep-centre." in lines
    assert ("Not consistent, ours lower than the paper: deep-whole, approx-centre "
            "(approximation), approx-whole (approximation).") in lines
    assert "Closest mean: deep-centre" in text
    assert ("its value lies in the range expected of one run (the 95% prediction interval) "
            "for 1 of 4 settings: deep-centre.") in text
    assert "crop whole vs centre:" in text and ": lower." in text
    assert "2 of 4 settings use images that only approximate" in text
    assert "unverified" not in text


def test_an_unverified_archive_is_named_as_such_not_as_an_approximation(summary):
    summary["runs"][1]["caveat"] = "unverified archive"
    lines = conclusion(summary, [])
    assert any("deep-whole (unverified archive)" in line for line in lines)
    assert ("1 of 4 settings use an archive that is not the published one of its variant "
            "(its md5 differs): what it holds is unverified.") in lines
    assert grid(summary)["rows"][0]["caveat"] == "unverified archive"


def test_an_axis_that_alone_decides_consistency_is_named(summary):
    assert deciding_axes(summary) == []  # only deep-centre fits: neither axis decides alone
    summary["runs"][2].update(make_run("approx", "centre", [0.83, 0.84, 0.82],
                                       caveat="approximation"))
    assert deciding_axes(summary) == [
        "crop decides it: with centre every setting is consistent with the paper, with whole "
        "none is."]
    assert deciding_axes(summary)[0] in conclusion(summary, [])


def test_conclusion_says_when_no_setting_fits_and_when_seeds_cannot_decide(summary):
    for run in summary["runs"][:1]:
        run.update(make_run("deep", "centre", [0.90, 0.91, 0.905]))
    lines = conclusion(summary, [])
    assert "No setting reproduces the paper's accuracy within its interval." in lines
    assert any(line.startswith("Not consistent, ours higher than the paper: deep-centre")
               for line in lines)

    wide = {"axes": ["crop"], "runs": [make_run("deep", "a", [0.75, 0.95, 0.85]),
                                       make_run("deep", "b", [0.70, 0.95, 0.80])]}
    assert any("too wide to single out one of the 2" in line for line in conclusion(wide, []))


def test_analyse_is_plain_json(summary):
    import json

    result = analyse(summary)
    assert set(result) == {"grid", "effects", "conclusion"}
    json.dumps(result)
