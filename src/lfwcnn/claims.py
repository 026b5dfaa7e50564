"""The paper's claims C1-C8 and the verdict on each, as functions of the numbers a run measured
(tested on their own; no file is read, C6 checks that its figures exist), and the provenance of
the data (which LFW, and its caveat) that every table labels."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lfwcnn.model import CONV, feature_layer_names

# The paper's protocol as config keys (the schema's defaults, tests/test_report.py checks); a
# run that departs from it says so at the top. Its accuracy is evaluate.paper_accuracy.
PAPER_PROTOCOL = {
    "data.min_images_per_person": 30, "data.image_size": 64, "split.test_fraction": 0.25,
    "model.filters": [32, 64, 128], "model.kernel_size": 3, "model.pool_size": 2,
    "model.dense_units": [128, 256], "model.dropout_rate": 0.5, "train.optimizer": "adam",
    "train.learning_rate": 0.001, "train.epochs": 100, "train.batch_size": 128,
    "train.precision": "float32", "model.activation": "relu",
}
_FILTERS = PAPER_PROTOCOL["model.filters"]
# What the paper reports (section 3 and Figs. 5-12), and the counts its protocol gives on LFW.
PAPER = {"people": 34, "images": 2370, "train": 1777, "test": 593,
         "epochs": PAPER_PROTOCOL["train.epochs"],
         "layers": tuple(feature_layer_names(len(_FILTERS))),
         "maps": tuple(n for n in _FILTERS for _ in range(2))}  # a pool keeps its conv's maps
# The paper names no LFW variant; scikit-learn's loader, the likely tool, uses this one.
PAPER_VARIANT = "funneled"
# C4: "all filters active" in conv1 allows this mean share of blank maps over test images.
C4_CONV1_BLANK_TOLERANCE = 0.01
# each status as said of one claim and of several
STATUS_TEXT = {"holds": ("holds", "hold"), "partly": ("partly holds", "partly hold"),
               "fails": ("does not hold", "do not hold"),
               "undetermined": ("undetermined",) * 2, "not run": ("not run",) * 2}


@dataclass
class Verdict:
    """One row of the verdict table."""

    claim: str
    title: str
    paper: str
    ours: str
    status: str  # a key of STATUS_TEXT
    detail: str = ""
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[self.status][0]


def provenance(source: dict | None, summary: dict | None) -> dict:
    """Which LFW the run used, and its ``caveat`` (the label every table shows): as obtain
    recorded it, "approximation", or "unverified archive" for an archive that is not the
    variant's published one (not known to be an approximation)."""
    record = dict(source or (summary or {}).get("source") or {})
    approximate = bool(record.get("approximate"))
    unverified = record.get("kind") == "archive" and record.get("matches_published") is False
    flags = []
    if approximate:
        where = record.get("note_file") or record.get("path") or record.get("source")
        flags.append(f"{where} describes these images as an approximation: "
                     f"{record.get('note') or 'no further note'}")
    if unverified:
        flags.append(f"the archive is not the published {record.get('variant')} archive "
                     "(its md5 differs)")
    caveat = "approximation" if approximate else "unverified archive" if unverified else None
    return {"record": record, "approximate": approximate, "caveat": caveat, "flags": flags,
            "note": record.get("note")}


def data_origin(source: dict | None) -> dict:
    """The variant, origin and caveat of a run's data, stored in its aggregate.json so the
    caveat travels with the accuracy (``dvc metrics show``, the sweep summary, the report)."""
    origin = provenance(source, None)
    record = origin["record"]
    return {"variant": record.get("variant"),
            "source": record.get("origin") or record.get("source"),
            "kind": record.get("kind"), "approximate": origin["approximate"],
            "caveat": origin["caveat"], "note": origin["note"]}


def labelled(name: str, caveat: str | None) -> str:
    """``name`` with its data caveat, as tables and sentences show it: "x (approximation)"."""
    return f"{name} ({caveat})" if caveat else name


def split_sizes(images: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) as scikit-learn's ``train_test_split`` sizes them: the test side rounds up."""
    test = math.ceil(test_fraction * images)
    return images - test, test


def explain_1777(images: int, test_fraction: float) -> str:
    train, test = split_sizes(images, test_fraction)
    text = (f"With {images} images and a test fraction of {test_fraction:g}, the test subset "
            f"holds ceil({test_fraction:g} x {images}) = {test} images and the training "
            f"subset {images} - {test} = {train}.")
    quoted = f"\"{PAPER['train']} face images\""
    if (train, test) == (PAPER["train"], PAPER["test"]):
        text += (f" The paper's {quoted} is therefore the training subset, not the whole data "
                 f"set of {images} images; its test accuracy is a share of the other {test}.")
    else:
        text += (f" On the real LFW ({PAPER['images']} images of {PAPER['people']} people) "
                 f"the same protocol gives {PAPER['train']} training and {PAPER['test']} test "
                 f"images: the paper's {quoted} is the training subset.")
    return text


def verdict_c1(summary: dict, train: int, test: int, test_fraction: float) -> Verdict:
    people, images = summary["people"], summary["images"]
    checks = [(f"{PAPER['people']} people", people == PAPER["people"]),
              (f"{PAPER['images']} images", images == PAPER["images"]),
              (f"{PAPER['train']} training images", train == PAPER["train"]),
              (f"{PAPER['test']} test images", test == PAPER["test"])]
    status = ("holds" if all(ok for _, ok in checks) else
              "partly" if checks[0][1] and checks[1][1] else "fails")
    fraction = PAPER_PROTOCOL["split.test_fraction"]
    return Verdict(
        "C1", f"Data: LFW people with at least {PAPER_PROTOCOL['data.min_images_per_person']} "
        "images",
        f"{PAPER['people']} people, \"{PAPER['train']} face images\", split {1 - fraction:g} / "
        f"{fraction:g}",
        f"{people} people, {images} images; {train} train / {test} test",
        status, explain_1777(images, test_fraction), checks)


def verdict_c2(aggregate: dict | None, epochs: Sequence[int] = (),
               variant: str | None = None, sweep_runs: Sequence[dict] = ()) -> Verdict:
    """The aggregate's verdict: the paper's accuracy inside, above or below the interval;
    undetermined when the interval covers every accuracy (as two seeds can give). With a sweep
    the detail counts the settings the paper's value is consistent with."""
    title = f"Test accuracy after {PAPER['epochs']} epochs"
    if aggregate is None:
        return Verdict("C2", title, "-", "-", "not run", "The evaluation has not run.")
    paper = f"{100 * aggregate['paper_accuracy']:.2f} %"  # evaluate.paper_accuracy
    n = aggregate["seeds"]
    ours = f"{aggregate['mean']:.2%} mean over {n} seed{'s' * (n > 1)}"
    if epochs and set(epochs) != {PAPER["epochs"]}:
        ours += f" after {'/'.join(str(e) for e in sorted(set(epochs)))} epochs"
    if aggregate.get("std") is not None:
        ours += f" (sd {100 * aggregate['std']:.2f} points)"
    interval = aggregate.get("interval")
    if interval:
        ours += (f"; {aggregate['confidence']:.0%} interval {interval['low']:.2%} to "
                 f"{interval['high']:.2%}")
    status = {"inside": "holds", "above": "fails", "below": "fails"}.get(
        aggregate["verdict"], "undetermined")
    detail = aggregate.get("statement", "")
    if variant and variant != PAPER_VARIANT:
        detail += (f" Measured on the {variant} images; the paper does not name its variant, "
                   f"most likely {PAPER_VARIANT} (scikit-learn's default), and the alignment "
                   "changes the accuracy.")
    if interval and interval["low"] <= 0 and interval["high"] >= 1:
        status = "undetermined"
        detail += (f" That interval spans every possible accuracy: {n} seeds are too few to "
                   "tell.")
    single = aggregate.get("verdict_single_run")
    if single and single != "undefined":
        band = aggregate["prediction_interval"]
        detail += (f" A single further run is expected between {band['low']:.2%} and "
                   f"{band['high']:.2%}; the paper's one run lies {single} that range.")
    if len(sweep_runs) > 1:
        inside = [labelled(r["run"], r.get("caveat"))
                  for r in sweep_runs if r["verdict"] == "inside"]
        detail += (f" Across the ablation the paper's value lies inside the interval of "
                   f"{len(inside)} of {len(sweep_runs)} settings"
                   f"{': ' + ', '.join(inside) if inside else ''}.")
    return Verdict("C2", title, paper, ours, status, detail,
                   [(f"{paper} {aggregate['verdict']} the interval",
                     aggregate["verdict"] == "inside")])


def verdict_c3(check: dict | None) -> Verdict:
    title = "Backpropagation through convolution (Eqs. 1-22)"
    paper = "dL/dF = X * dL/dO; dL/dX = full convolution of dL/dO with the rotated F"
    if check is None:
        return Verdict("C3", title, paper, "-", "not run", "The backpropagation check has "
                       "not run (rule verify_backprop).")
    worst = max((value for value in (check.get("max_relative_error") or {}).values()
                 if value is not None), default=float("nan"))
    parts = check.get("checks") or {}
    fig4 = (parts.get("fig4") or {}).get("equations") or {}
    ours = (f"{(check.get('cases') or {}).get('autodiff')} random layers agree with TensorFlow's "
            f"autodiff to {worst:.1e} (relative); Fig. 4: {sum(map(bool, fig4.values()))} of "
            f"{len(fig4)} equations match")
    return Verdict("C3", title, paper, ours, "holds" if check.get("pass") else "fails",
                   "NumPy implementation of section 2 checked against tf.GradientTape, "
                   "central differences, the Fig. 4 example term by term and a Keras SGD step.",
                   [(name, bool(part.get("pass"))) for name, part in parts.items()])


def _rises(values: Sequence[float]) -> bool:
    """Non-decreasing from layer to layer, and higher at the end than at the start."""
    return bool(np.all(np.diff(values) >= 0)) and values[-1] > values[0]


def verdict_c4(sparsity: dict | None) -> Verdict:
    title = "Sparsity grows with depth; the first layer keeps all filters active"
    paper = (f"{PAPER['layers'][0]}: all filters active; deeper: more blank maps, sparser "
             "activations")
    if sparsity is None:
        return Verdict("C4", title, paper, "-", "not run", "The activations have not run.")
    conv = [row for row in sparsity["layers"] if row["layer"].startswith(CONV)]
    if len(conv) < 2:
        return Verdict("C4", title, paper, "-", "undetermined",
                       "A trend over depth needs at least two convolution layers.")
    blank = [row["blank_share_mean"] for row in conv]
    zero = [row["zero_share_mean"] for row in conv]
    names = " -> ".join(row["layer"] for row in conv)
    checks = [
        (f"{conv[0]['layer']}: blank maps <= {C4_CONV1_BLANK_TOLERANCE:.0%} on average",
         blank[0] <= C4_CONV1_BLANK_TOLERANCE),
        (f"blank maps rise over {names}", _rises(blank)),
        (f"zero activations rise over {names}", _rises(zero)),
    ]
    passed = [ok for _, ok in checks]
    status = "holds" if all(passed) else "partly" if passed[1] or passed[2] else "fails"
    ours = (f"blank maps {' -> '.join(f'{100 * v:.1f}' for v in blank)} %; zero activations "
            f"{' -> '.join(f'{100 * v:.1f}' for v in zero)} % ({names}, mean over "
            f"{conv[0]['images']} test images)")
    first = conv[0]
    detail = (f"{first['layer']}: {blank[0] * first['channels']:.1f} of {first['channels']} maps "
              f"blank per test image on average, {first['never_active_maps']} blank for every "
              f"test image; {conv[-1]['layer']}: {blank[-1] * conv[-1]['channels']:.1f} of "
              f"{conv[-1]['channels']} blank on average.")
    return Verdict("C4", title, paper, ours, status, detail, checks)


def verdict_c5(histories: Mapping[int, pd.DataFrame]) -> Verdict:
    title = "Training accuracy rises and loss falls (Fig. 5)"
    paper = f"accuracy up, loss down over {PAPER['epochs']} epochs"
    if not histories:
        return Verdict("C5", title, paper, "-", "not run", "No training history.")
    first = pd.DataFrame([h.iloc[0] for h in histories.values()])
    last = pd.DataFrame([h.iloc[-1] for h in histories.values()])
    rising = last["accuracy"].to_numpy() > first["accuracy"].to_numpy()
    falling = last["loss"].to_numpy() < first["loss"].to_numpy()
    n, epochs = len(histories), sorted({len(h) for h in histories.values()})
    ours = (f"training accuracy {first['accuracy'].mean():.1%} -> {last['accuracy'].mean():.1%}, "
            f"loss {first['loss'].mean():.3f} -> {last['loss'].mean():.3f} (epoch 1 -> "
            f"{'/'.join(map(str, epochs))}, mean of {n} seed{'s' * (n > 1)})")
    checks = [(f"accuracy rises in {sum(rising)} of {n} seeds", all(rising)),
              (f"loss falls in {sum(falling)} of {n} seeds", all(falling))]
    status = ("undetermined" if epochs[-1] < 2 else "holds" if all(rising) and all(falling)
              else "partly" if any(rising) or any(falling) else "fails")
    return Verdict("C5", title, paper, ours, status,
                   "First epoch against last epoch of each seed's training history.", checks)


def verdict_c6(grids: dict | None, grid_files: Sequence[str | Path]) -> Verdict:
    """C6 from the grids' manifest and the grid files (a grid counts if its file exists)."""
    blocks = len(_FILTERS)
    title = (f"Feature maps of {blocks} conv + {blocks} pooling layers for one test image "
             "(Figs. 6-12)")
    paper = f"{len(PAPER['layers'])} grids: " + ", ".join(f"{name} {maps}" for name, maps in
                                    zip(PAPER["layers"], PAPER["maps"], strict=True))
    if grids is None:
        return Verdict("C6", title, paper, "-", "not run", "The activations have not run.")
    layers = grids["layers"]
    present = {Path(path).name for path in grid_files if Path(path).is_file()}
    drawn = [g for g in layers if g["file"] in present and g["tiles"] == g["shape"][-1]]
    ours = f"{len(drawn)} grids: " + ", ".join(f"{g['layer']} {g['tiles']}" for g in drawn)
    checks = [("a grid with one tile per map for every conv and pooling layer",
               len(drawn) == len(layers) and bool(layers)),
              (f"the paper's {len(PAPER['layers'])} layers",
               tuple(g["layer"] for g in layers) == PAPER["layers"])]
    status = "fails" if not checks[0][1] else "holds" if checks[1][1] else "partly"
    return Verdict("C6", title, paper, ours, status,
                   f"Input image {grids.get('image')}; see the activations section.", checks)


def checked_status(holds: bool, checks: Sequence[tuple[str, bool]]) -> str:
    """holds; partly where some of the checks pass; fails where none does."""
    return "holds" if holds else "partly" if any(ok for _, ok in checks) else "fails"


def verdict_c7(dissection: dict | None) -> Verdict:
    """C7 from view_network's dissection JSON (detectors per layer and part of the trained and the
    untrained network), by :func:`lfwcnn.dissection.c7_verdict`'s rule."""
    title = "Deeper layers encode higher-level features such as mouth or eyes"
    paper = ("\"As the activations go through deeper layers, they start encoding higher-level "
             "features such as 'mouth' or 'eyes'.\"")
    if dissection is None:
        return Verdict("C7", title, paper, "-", "not run", "The dissection has not run "
                       "(rule view_network).")
    c7 = dissection["c7"]
    counts = c7["counts"]
    depth = c7["depth"]
    ours = ("eye / mouth detectors: trained " + " / ".join(
        str(c["trained"]) for c in counts.values()) + ", untrained " + " / ".join(
        str(c["untrained"]) for c in counts.values()) + f" (IoU > {dissection['iou_threshold']} "
        f"at quantile {dissection['quantile']}); per unit: {depth.get('first_per_unit', 0):.3f} "
        f"in conv1, {depth.get('deeper_per_unit', 0):.3f} deeper")
    checks = [("more eye and mouth detectors than the untrained network",
               bool(c7["more_than_untrained"])),
              ("more per unit in the layers after conv1 than in conv1",
               bool(c7["more_in_deeper_layers"]))]
    status = checked_status(c7["holds"], checks)
    capped = [f"{region} {cap:.3f}" for region, cap in dissection["max_iou"].items()
              if cap <= dissection["iou_threshold"]]
    others = dissection.get("c7_at_other_thresholds") or {}
    fragile = ", ".join(f"at {t}: {'holds' if v['holds'] else 'does not hold'}"
                        for t, v in others.items())
    detail = (c7["rule"] + (f" The controls cannot reach the IoU threshold at quantile "
                            f"{dissection['quantile']}: a unit's IoU is capped by quantile / "
                            f"region share ({', '.join(capped)})." if capped else "")
              + (f" C7 is fragile near the threshold {dissection['iou_threshold']} ({fragile})."
                 if fragile else ""))
    return Verdict("C7", title, paper, ours, status, detail, checks)


def verdict_c8(inversion: dict | None) -> Verdict:
    """C8 from view_network's inversion JSON (mean SSIM per layer of the trained and the
    untrained network), by :func:`lfwcnn.inversion.c8_verdict`'s rule."""
    title = "The first conv layer keeps almost all information of the image"
    paper = ("\"In the first convolutional layer, the activations keep almost all of the "
             "information in the test image\" (and less deeper)")
    if inversion is None:
        return Verdict("C8", title, paper, "-", "not run", "The inversion has not run "
                       "(rule view_network).")
    c8 = inversion["c8"]
    trained, untrained = c8["trained"], c8["untrained"]
    ssim = " -> ".join(f"{v:.2f}" for v in trained["mean_ssim"].values())
    control = " -> ".join(f"{v:.2f}" for v in untrained["mean_ssim"].values())
    ours = (f"mean SSIM {ssim} ({' -> '.join(trained['mean_ssim'])}); untrained {control}, "
            f"{len(inversion['faces'])} test faces")
    first = next(iter(trained["mean_ssim"]))
    checks = [(f"{first}: mean SSIM >= {inversion['ssim_threshold']}",
               bool(trained["first_close"])),
              ("SSIM does not rise with depth", bool(trained["falls_with_depth"]))]
    status = checked_status(c8["holds"], checks)
    detail = c8["rule"] + (" The untrained network keeps as much in its first layer (mean "
                           "SSIM reaches the threshold too)." if untrained["first_close"] else "")
    return Verdict("C8", title, paper, ours, status, detail, checks)


def headline(verdicts: Sequence[Verdict]) -> str:
    """One line for the top of the report: how many claims hold, partly hold, fail, ..."""
    counts = Counter(v.status for v in verdicts)
    parts = [f"{counts[key]} {texts[counts[key] > 1]}"
             for key, texts in STATUS_TEXT.items() if counts[key]]
    return f"Of the paper's {len(verdicts)} claims, " + ", ".join(parts) + "."


def protocol_departures(config: Mapping) -> list[dict]:
    """Config keys whose value is not the paper's (fewer epochs, other sizes, ...)."""
    departures = []
    for key, paper in PAPER_PROTOCOL.items():
        value = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and value != paper:
            departures.append({"key": key, "paper": paper, "ours": value})
    return departures
