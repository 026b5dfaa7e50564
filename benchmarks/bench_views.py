"""Benchmark and trial run of issue 15's views on the real LFW: landmarks and part masks of
the test faces, dissection of every conv and pooling layer, Grad-CAM of one test face per
person, inversion of a few test faces from every layer, filter patterns, for a trained model
(``--model``) and the untrained network of the same seed. Prints the time of each part, the
detectors per layer and region, the mean SSIM/PSNR per layer and the C7 and C8 verdicts;
writes JSON.

    python benchmarks/bench_views.py --lfw ../shared/lfw --model seed0.keras --seed 0

The issue's target: the whole stage under 15 % of one seed's training time on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.times: dict[str, float] = {}

    def __call__(self, name, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.times[name] = round(self.times.get(name, 0) + time.perf_counter() - start, 2)
        print(f"  {name}: {self.times[name]:.1f} s", flush=True)
        return result


def views(model, name, test_x, test_labels, masks, clock, args) -> dict:
    from lfwcnn.dissection import detector_counts, dissect, layer_activations, units_per_layer
    from lfwcnn.gradcam import gradcam
    from lfwcnn.inversion import filter_patterns, invert_layer, reconstruction_scores
    from lfwcnn.model import feature_layer_names

    layers = feature_layer_names(3)
    acts = clock(f"{name}: activations", layer_activations, model, layers, test_x)
    table = clock(f"{name}: dissection", dissect, acts, masks, quantile=args.quantile,
                  iou_threshold=args.iou_threshold)
    counts = detector_counts(table)
    print(counts.to_string())
    first = [int(np.flatnonzero(test_labels == c)[0]) for c in np.unique(test_labels)]
    cams = clock(f"{name}: grad-cam", gradcam, model, test_x[first], test_labels[first])
    faces = test_x[: args.faces]
    recon = {layer: clock(f"{name}: inversion", invert_layer, model, layer, faces,
                          steps=args.steps, learning_rate=0.05, tv_weight=args.tv_weight,
                          seed=0) for layer in layers}
    scores = reconstruction_scores(faces, recon).groupby("layer", sort=False)[
        ["psnr", "ssim"]].mean()
    print(scores.round(3).to_string())
    for layer in ("conv1", "conv2", "conv3"):
        clock(f"{name}: filter patterns", filter_patterns, model, layer, steps=40,
              step_size=0.02, seed=0)
    top = table[table["region"].isin(["eyes", "mouth"])].nlargest(4, "iou")
    return {"counts": counts.to_dict(orient="index"), "units": units_per_layer(table),
            "mean_ssim": scores["ssim"].to_dict(),
            "mean_psnr": scores["psnr"].to_dict(), "top_eye_mouth_units": top.to_dict("records"),
            "gradcam_mean": float(cams.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=str(ROOT.parent / "shared" / "lfw"))
    parser.add_argument("--model", help="a trained .keras model; without: untrained only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tv-weight", type=float, default=0.01)
    parser.add_argument("--quantile", type=float, default=0.005)
    parser.add_argument("--iou-threshold", type=float, default=0.04)
    parser.add_argument("--grow", type=int, default=0, help="widen each part by N pixels")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "views.json"))
    args = parser.parse_args()

    import keras

    from lfwcnn.config import default_settings
    from lfwcnn.dissection import c7_verdict, untrained_model
    from lfwcnn.inversion import c8_verdict
    from lfwcnn.landmarks import compute_landmarks
    from lfwcnn.loading import load_keras_model
    from lfwcnn.model import scale_pixels
    from lfwcnn.part_masks import part_masks, region_shares
    from lfwcnn.prepare import prepare
    from lfwcnn.split import split_indices

    settings = default_settings()
    clock = Clock()
    data = clock("prepare", prepare, args.lfw, settings.data, workers=2).data
    _, test = split_indices(data.labels, test_fraction=0.25, seed=42)
    crop = settings.data.crop
    marks = clock("landmarks (test faces)", compute_landmarks, data.files[test], args.lfw,
                  crop_rows=tuple(crop.rows), crop_cols=tuple(crop.cols),
                  size=settings.data.image_size, workers=2)
    print(f"  a face detected in {marks.detected.sum()} of {len(test)} test images")
    masks = clock("part masks", part_masks, marks.points, settings.data.image_size,
                  grow=args.grow)
    print("  region shares:", {k: round(v, 4) for k, v in region_shares(masks).items()})
    test_x, test_labels = scale_pixels(data.images[test]), data.labels[test]
    keras.utils.set_random_seed(args.seed)
    untrained = untrained_model(data.n_classes, data.images.shape[1:], settings.model,
                                args.seed)
    results = {"untrained": views(untrained, "untrained", test_x, test_labels, masks, clock,
                                  args)}
    if args.model:
        trained = load_keras_model(args.model)
        results["trained"] = views(trained, "trained", test_x, test_labels, masks, clock, args)
        import pandas as pd

        counts = {k: pd.DataFrame.from_dict(v["counts"], orient="index")
                  for k, v in results.items()}
        results["c7"] = c7_verdict(counts["trained"], counts["untrained"],
                                   units=results["trained"]["units"])
        results["c8"] = c8_verdict(results["trained"]["mean_ssim"],
                                   results["untrained"]["mean_ssim"])
        print(json.dumps({k: results[k] for k in ("c7", "c8")}, indent=1))
    report = {"lfw": args.lfw, "model": args.model, "machine": platform.machine(),
              "cpus": len(os.sched_getaffinity(0)), "seconds": clock.times,
              "total_seconds": round(sum(clock.times.values()), 1),
              "settings": {k: v for k, v in vars(args).items() if k not in ("lfw", "out")},
              "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=Path(args.out).parent, delete=False) as tmp:
        json.dump(report, tmp, indent=2, default=str)
    Path(tmp.name).replace(args.out)
    print(f"total {report['total_seconds']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
