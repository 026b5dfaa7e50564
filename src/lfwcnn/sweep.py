"""Sweeps: several values per setting, every combination a run, runs sharing prepared data.

The config key ``sweep`` maps an axis name to its values, each value name to a config
overlay (a nested mapping of ordinary config keys)::

    sweep:
      variant:
        deepfunneled: {data: {variant: deepfunneled, source: ../shared/lfw}}
        funneled_approx: {data: {variant: funneled, source: ../shared/lfw_funneled_approx}}
      crop:
        centre128: {data: {crop: {rows: [61, 189], cols: [61, 189]}}}
        whole250: {data: {crop: {rows: [0, 250], cols: [0, 250]}}}

A *run* is one combination (the Cartesian product over the axes, in the order they are
listed): the base config deep-merged with one overlay per axis, checked like any config. A
*dataset* is the data-relevant part of a run (its ``data`` and ``split`` config): runs whose
data config is equal share one prepared dataset. A *source* is where the images come from
(variant, location, checksums): datasets with the same source share one download and one
``data/raw/{source}/`` folder. With no sweep there is one run, one dataset and one source,
all named after ``data.variant``, so the paths are those of a plain run.

This module only plans (no Snakemake, no TensorFlow): ``workflow/rules/common.smk`` calls
:func:`plan_sweep` and names its paths after the plan.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lfwcnn.errors import LfwcnnError

# keys an overlay may not set: the sweep itself, and settings shared by every run
FORBIDDEN_KEYS = {
    "sweep": "a sweep cannot nest another sweep",
    "seeds": "every run trains the same seeds (seeds are the inner loop of the sweep)",
    "backprop": "the backpropagation check does not depend on a run",
    "report": "there is one report for the whole sweep",
}
DATA_SECTIONS = ("data", "split")
SOURCE_KEYS = ("variant", "source", "sha256", "md5")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]*$")
SEPARATOR = "-"  # joins value names; not allowed inside a name, so joined names never collide


@dataclass
class Source:
    """Where one set of LFW images comes from; downloaded and obtained once."""

    name: str
    config: dict  # variant, source, sha256, md5, download


@dataclass
class PreparedData:
    """The plan of one prepared dataset (``data/prepared/{name}``) and its splits: the config
    they are made with, not the arrays (those are :class:`lfwcnn.dataset.Dataset`)."""

    name: str
    config: dict  # {"data": ..., "split": ...}
    source: str  # Source.name


@dataclass
class Run:
    """One combination of sweep values: its merged config, dataset and source."""

    name: str
    settings: dict[str, str]  # axis -> value name (empty without a sweep)
    config: dict
    dataset: str
    source: str


@dataclass
class Plan:
    axes: dict[str, list[str]] = field(default_factory=dict)  # axis -> value names, in order
    runs: dict[str, Run] = field(default_factory=dict)
    datasets: dict[str, PreparedData] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)

    @property
    def is_sweep(self) -> bool:
        return bool(self.axes)

    @property
    def first(self) -> Run:
        return next(iter(self.runs.values()))

    def table(self) -> list[dict]:
        """One row per run, for the summary step: name, settings, dataset, variant, source."""
        return [{"run": run.name, "settings": run.settings, "dataset": run.dataset,
                 "source_name": run.source, "variant": run.config["data"]["variant"],
                 "source": run.config["data"]["source"]} for run in self.runs.values()]


def deep_merge(base: Mapping, overlay: Mapping) -> dict:
    """``base`` with ``overlay`` merged in: nested mappings merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_name(kind: str, name: Any, where: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise LfwcnnError(
            f"config key {where}: {kind} name {name!r} must match {NAME_PATTERN.pattern} "
            f"(letters, digits, '_' and '.'; it names output folders, joined with "
            f"'{SEPARATOR}')"
        )


def _check_axes(sweep: Any) -> dict[str, dict[str, dict]]:
    if not isinstance(sweep, Mapping):
        raise LfwcnnError(f"config key sweep: must be a mapping of axes, got {sweep!r}")
    for axis, values in sweep.items():
        _check_name("axis", axis, "sweep")
        if not isinstance(values, Mapping) or not values:
            raise LfwcnnError(f"config key sweep.{axis}: must map at least one value name to "
                              "a config overlay")
        for value, overlay in values.items():
            _check_name("value", value, f"sweep.{axis}")
            where = f"sweep.{axis}.{value}"
            if overlay is None:
                continue
            if not isinstance(overlay, Mapping):
                raise LfwcnnError(f"config key {where}: the overlay must be a mapping of config "
                                  f"keys, got {overlay!r}")
            for key in overlay:
                if key in FORBIDDEN_KEYS:
                    raise LfwcnnError(f"config key {where}.{key}: an overlay may not set "
                                      f"{key} ({FORBIDDEN_KEYS[key]})")
    return {axis: {value: dict(overlay or {}) for value, overlay in values.items()}
            for axis, values in sweep.items()}


def _touches(overlays: Mapping[str, Mapping], keys: Callable[[Mapping], bool]) -> bool:
    return any(keys(overlay) for overlay in overlays.values())


def _touches_data(overlay: Mapping) -> bool:
    return any(section in overlay for section in DATA_SECTIONS)


def _touches_source(overlay: Mapping) -> bool:
    data = overlay.get("data")
    return isinstance(data, Mapping) and any(key in data for key in SOURCE_KEYS)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _join(settings: Mapping[str, str], axes: list[str], fallback: str) -> str:
    return SEPARATOR.join(settings[axis] for axis in axes) or fallback


def _shared_name(key: str, names_by_key: dict, planned: dict, name: str, what: str,
                 where: str, make: Callable[[str], Any]) -> str:
    """The name of the entry for config ``key``: runs with equal config share one entry."""
    if key not in names_by_key:
        if name in planned:
            raise LfwcnnError(f"{where}: two different {what} would both be named "
                              f"{name!r}; give the values distinct names")
        names_by_key[key] = name
        planned[name] = make(name)
    return names_by_key[key]


def plan_sweep(config: Mapping, check: Callable[[dict], dict] | None = None) -> Plan:
    """Expand ``config['sweep']`` into runs, datasets and sources.

    ``check`` validates one merged config (and fills its defaults), e.g.
    ``lambda c: lfwcnn.config.check_config(c, schema)``; its error is re-raised naming the
    axis and value. ``config`` itself should already be checked.
    """
    axes = _check_axes(config.get("sweep") or {})
    base = {key: value for key, value in config.items() if key != "sweep"}
    data_axes = [axis for axis, values in axes.items() if _touches(values, _touches_data)]
    source_axes = [axis for axis, values in axes.items() if _touches(values, _touches_source)]
    run_axes = list(axes)  # every axis names the run, a one-value axis too (it says what was set)
    plan = Plan(axes={axis: list(values) for axis, values in axes.items()})
    datasets_by_config: dict[str, str] = {}
    sources_by_config: dict[str, str] = {}
    layers = None
    for combination in itertools.product(*(list(values.items()) for values in axes.values())):
        settings = {axis: value for axis, (value, _) in zip(axes, combination, strict=True)}
        merged = base
        for _, overlay in combination:
            merged = deep_merge(merged, overlay)
        merged.pop("sweep", None)
        where = ", ".join(f"sweep.{axis}.{value}" for axis, value in settings.items())
        if check is not None:
            try:
                merged = check(merged)
            except LfwcnnError as err:
                raise LfwcnnError(f"{where}: {err}") from None
        merged.pop("sweep", None)
        blocks = len(merged.get("model", {}).get("filters", ()))
        if layers is None:
            layers = blocks
        elif blocks != layers:
            raise LfwcnnError(f"{where}: model.filters has {blocks} layers, the first run "
                              f"{layers}; every run must have the same number of conv blocks "
                              "(the activation stage lists its layers once)")
        variant = merged["data"]["variant"]
        name = _join(settings, run_axes, variant)

        source_config = {key: merged["data"].get(key) for key in SOURCE_KEYS}
        source_config["download"] = merged["data"].get("download")
        source_config["extract"] = merged["data"].get("extract")
        source_name = _shared_name(
            _canonical({k: source_config[k] for k in SOURCE_KEYS}), sources_by_config,
            plan.sources, _join(settings, source_axes, variant), "LFW sources", where,
            lambda name, cfg=source_config: Source(name, cfg),
        )

        data_config = {section: copy.deepcopy(merged[section]) for section in DATA_SECTIONS}
        dataset_name = _shared_name(
            _canonical(data_config), datasets_by_config, plan.datasets,
            _join(settings, data_axes, variant), "datasets", where,
            lambda name, cfg=data_config, src=source_name: PreparedData(name, cfg, src),
        )

        if name in plan.runs:
            raise LfwcnnError(f"{where}: run name {name!r} is used twice")
        plan.runs[name] = Run(name, settings, merged, dataset_name, source_name)
    return plan


def split_seed(split_config: Mapping, seed: int | str) -> int:
    """The split a training seed uses: its own, unless the config pins ``split.seed``."""
    pinned = split_config.get("seed")
    return int(seed) if pinned is None else int(pinned)
