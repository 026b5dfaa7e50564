"""Network dissection on face parts: which channels detect eyes, mouths, ... (C7).

After D. Bau, B. Zhou, A. Khosla, A. Oliva, A. Torralba, "Network Dissection: Quantifying
Interpretability of Deep Visual Representations", CVPR 2017, with face parts
(:mod:`lfwcnn.part_masks`) as the concepts. For each channel k of a layer:

1. its threshold T_k is the top ``quantile`` (Bau et al.: 0.005) of its activations over
   every spatial position of every test image, taken on the layer's own maps as in Bau et
   al. (``numpy.quantile``, linear interpolation);
2. each map is upsampled to the input size, bilinearly, with ``tf.image.resize``
   (half-pixel centres, no antialiasing: the same convention as ``skimage.transform.resize``
   with ``order=1``, but batched over images and channels in one threaded call), and
   thresholded: M_k = S_k >= T_k and S_k > 0 (a unit that never fires, whose threshold is
   0, selects nothing rather than everything);
3. IoU_k,c = sum over the test set of |M_k & P_c| / sum of |M_k | P_c| for each region c;
4. k is a detector of c when IoU_k,c > ``iou_threshold`` (Bau et al.: 0.04).

A unit selects about ``quantile`` of all pixels, so its IoU with a region that covers a share
s of them is at most quantile / s (:func:`max_iou`): with 0.005, a region must cover less
than 0.005 / 0.04 = 12.5 % of the pixels for any unit to reach 0.04. The eyes, mouth, brows
and nose of a 64x64 centre crop cover 1-3 % each; the two controls (the rest of the face,
about 30 %, and the background, about 60 %) cannot have a detector at these settings. Their
IoUs still show where units fire; the control that decides C7 is the untrained network.

Channels are handled a few at a time (:data:`CHANNEL_CHUNK`) so that only that many
upsampled maps of the test set are in memory at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lfwcnn.errors import LfwcnnError

CHANNEL_CHUNK = 16  # channels upsampled at once: 593 faces x 64 x 64 x 16 float32 = 156 MB
COLUMNS = ("layer", "channel", "region", "iou", "detector")
C7_PARTS = ("eyes", "mouth")


def channel_thresholds(maps: np.ndarray, quantile: float) -> np.ndarray:
    """T_k per channel of ``maps`` (n, h, w, c): the value exceeded by the top ``quantile``
    share of the channel's activations over all images and positions."""
    if not 0 < quantile < 1:
        raise LfwcnnError(f"the dissection quantile must lie in (0, 1), got {quantile}")
    flat = np.asarray(maps, dtype=np.float32).reshape(-1, maps.shape[-1])
    return np.quantile(flat, 1 - quantile, axis=0).astype(np.float32)


def max_iou(quantile: float, region_share: float) -> float:
    """The largest IoU a unit selecting a ``quantile`` share of the pixels can reach with a
    region covering ``region_share`` of them (the smaller over the larger)."""
    if quantile <= 0 or region_share <= 0:
        return 0.0
    return min(quantile, region_share) / max(quantile, region_share)


def upsample(maps: np.ndarray, size: int):
    """Bilinear upsampling of (n, h, w, c) maps to (n, size, size, c), a float32 tensor."""
    import tensorflow as tf

    maps = tf.constant(maps, dtype=tf.float32)
    if maps.shape[1:3] == (size, size):
        return maps
    return tf.image.resize(maps, (size, size), method="bilinear", antialias=False)


def fires(upsampled, thresholds):
    """Where each unit fires, M_k = S_k >= T_k and S_k > 0 (a bool tensor like
    ``upsampled``): a unit whose threshold is 0 (it never fires) selects nothing."""
    import tensorflow as tf

    return tf.logical_and(upsampled >= thresholds, upsampled > 0)


def channel_ious(maps: np.ndarray, masks: Mapping[str, np.ndarray], *, quantile: float,
                 chunk: int = CHANNEL_CHUNK) -> pd.DataFrame:
    """IoU of every channel of one layer's ``maps`` (n, h, w, c) with every region mask
    (bool (n, H, W), the input frame), summed over the n images: a frame of channels x
    regions.

    The upsampling, thresholding and counting run in TensorFlow, threaded, in float32: the
    counts are sums of 0/1 below 2**24, so they are exact, and the IoU is their quotient."""
    import tensorflow as tf

    regions = list(masks)
    region_masks = np.stack([np.asarray(masks[r], dtype=bool) for r in regions], axis=-1)
    n, size = region_masks.shape[0], region_masks.shape[1]
    if len(maps) != n or region_masks.shape[1:3] != (size, size):
        raise LfwcnnError(f"{len(maps)} activation maps but masks of shape "
                          f"{region_masks.shape[:3]}")
    flat_regions = tf.constant(region_masks.reshape(-1, len(regions)), dtype=tf.float32)
    region_area = region_masks.reshape(-1, len(regions)).sum(axis=0, dtype=np.float64)
    thresholds = channel_thresholds(maps, quantile)
    rows = []
    for start in range(0, maps.shape[-1], chunk):
        stop = min(start + chunk, maps.shape[-1])
        fired = fires(upsample(maps[..., start:stop], size), thresholds[start:stop])
        fired = tf.reshape(tf.cast(fired, tf.float32), (-1, stop - start))
        inter = tf.matmul(flat_regions, fired, transpose_a=True).numpy()  # regions x chans
        union = (region_area[:, None]
                 + tf.reduce_sum(fired, axis=0).numpy()[None, :].astype(np.float64) - inter)
        iou = np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64),
                        where=union > 0)
        rows.append(iou.T)
    return pd.DataFrame(np.concatenate(rows), columns=regions)


def dissect(activations: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], *,
            quantile: float, iou_threshold: float, chunk: int = CHANNEL_CHUNK) -> pd.DataFrame:
    """The tidy table (layer, channel, region, iou, detector) of every channel of every layer
    in ``activations`` (name -> (n, h, w, c) maps of the same n test faces as ``masks``)."""
    frames = []
    for layer, maps in activations.items():
        ious = channel_ious(maps, masks, quantile=quantile, chunk=chunk)
        channels, regions = ious.shape
        frames.append(pd.DataFrame({
            "layer": layer,
            "channel": np.repeat(np.arange(channels), regions),
            "region": np.tile(np.array(ious.columns, dtype=object), channels),
            "iou": ious.to_numpy().ravel(),
        }))
    table = pd.concat(frames, ignore_index=True)
    table["detector"] = table["iou"] > iou_threshold
    return table[list(COLUMNS)]


def detector_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Detectors per layer (rows, in the table's order) and region (columns)."""
    layers = list(dict.fromkeys(table["layer"]))
    regions = list(dict.fromkeys(table["region"]))
    counts = table[table["detector"]].groupby(["layer", "region"]).size()
    counts = counts.unstack(fill_value=0) if len(counts) else pd.DataFrame()
    return counts.reindex(index=layers, columns=regions, fill_value=0).astype(int)


def units_per_layer(table: pd.DataFrame) -> dict[str, int]:
    """The number of channels dissected in each layer of a :func:`dissect` table."""
    return {layer: int(group["channel"].nunique())
            for layer, group in table.groupby("layer", sort=False)}


C7_RULE = (
    "C7 holds when the trained network has more eye detectors and more mouth detectors than "
    "the same network with its untrained initial weights (same seed), counted over all "
    "dissected layers, and when its deeper layers (every layer after {first}) hold more eye "
    "and mouth detectors than {first}{per_unit}; the untrained network is the control, since "
    "untrained units also respond to position."
)


def c7_verdict(trained: pd.DataFrame, untrained: pd.DataFrame, *, first: str = "conv1",
               parts: Sequence[str] = C7_PARTS, units: Mapping[str, int] | None = None) -> dict:
    """The C7 verdict from detector counts (:func:`detector_counts`) of the trained and the
    untrained network: the counts per part, whether each condition holds, the rule in words.

    "More in deeper layers than in conv1": the eye and mouth detectors of the layers after
    ``first``, summed, exceed those of ``first``; with ``units`` (channels per layer,
    :func:`units_per_layer`), per unit: deeper detectors / deeper units > those of ``first``
    (deeper layers have more channels, so counts alone favour them)."""
    if first not in trained.index:
        raise LfwcnnError(f"the C7 rule compares with {first}, which was not dissected")
    part_counts = {}
    for part in parts:
        got = trained[part] if part in trained else pd.Series(0, index=trained.index)
        control = untrained[part] if part in untrained else pd.Series(0, index=untrained.index)
        part_counts[part] = {"trained": int(got.sum()), "untrained": int(control.sum()),
                             "trained_first": int(got.get(first, 0)),
                             "trained_deeper": int(got.drop(first).sum())}
    beats_control = all(c["trained"] > c["untrained"] for c in part_counts.values())
    in_first = sum(c["trained_first"] for c in part_counts.values())
    deeper = sum(c["trained_deeper"] for c in part_counts.values())
    verdict_depth: dict = {"first": in_first, "deeper": deeper}
    if units is None:
        grows_with_depth = deeper > in_first
    else:
        deeper_units = sum(units[layer] for layer in trained.index if layer != first)
        verdict_depth.update(first_per_unit=in_first / units[first],
                             deeper_per_unit=deeper / deeper_units if deeper_units else 0.0)
        grows_with_depth = verdict_depth["deeper_per_unit"] > verdict_depth["first_per_unit"]
    return {
        "claim": "C7",
        "holds": bool(beats_control and grows_with_depth),
        "more_than_untrained": bool(beats_control),
        "more_in_deeper_layers": bool(grows_with_depth),
        "counts": part_counts,
        "depth": verdict_depth,
        "rule": C7_RULE.format(first=first, per_unit="" if units is None else
                               " per unit (detectors divided by channels)"),
    }


def layer_activations(model, layer_names: Sequence[str], images: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """The outputs of ``layer_names`` of a Keras ``model`` for uint8 ``images`` (scaled as in
    training), as float32 arrays (:func:`lfwcnn.model.layer_outputs`' batches)."""
    import keras

    from lfwcnn.model import layer_output, layer_outputs

    extractor = keras.Model(model.input, [layer_output(model, n) for n in layer_names])
    batches = list(layer_outputs(extractor, images))
    return {name: np.concatenate([batch[i] for batch in batches])
            for i, name in enumerate(layer_names)}
