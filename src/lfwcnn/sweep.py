"""Sweeps: several values per setting, every combination a run, runs sharing prepared data.

``sweep`` maps an axis to value names, each to a config overlay. A *run* is one combination
(the product over the axes, in their order): the base config deep-merged with one overlay per
axis and checked. Runs with equal ``data`` and ``split`` config share one prepared *dataset*,
datasets with the same *source* (variant, location, checksums) one download. Without a sweep
there is one of each, named after ``data.variant``. ``workflow/rules/common.smk`` plans here."""

from __future__ import annotations

import copy
import itertools
import json
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


@dataclass
class Source:
    """Where one set of LFW images comes from; downloaded and obtained once."""

    name: str
    config: dict  # variant, source, sha256, md5, download, extract


@dataclass
class PreparedData:
    """The config of one prepared dataset (``data/prepared/{name}``) and its splits."""

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


def _join(settings: Mapping[str, str], axes: list[str], fallback: str) -> str:
    # '-' is not allowed inside a name (the schema's pattern), so joined names never collide
    return "-".join(settings[axis] for axis in axes) or fallback


def _shared(entry: Source | PreparedData, key: Any, names_by_key: dict, planned: dict) -> str:
    """The name for config ``key``: ``entry`` is planned unless an equal config already is
    (runs with equal config share one entry). Unequal configs differ on an axis that names the
    entry, so two of them never get one name."""
    name = names_by_key.setdefault(json.dumps(key, sort_keys=True), entry.name)
    planned.setdefault(name, entry)
    return name


def plan_sweep(config: Mapping, check: Callable[[dict], dict]) -> Plan:
    """Expand ``config['sweep']`` of a schema-checked ``config`` into runs, datasets, sources;
    ``check`` validates one merged config and fills its defaults (``config.check_config``),
    its error re-raised naming the axis and value."""
    axes = {axis: {value: overlay or {} for value, overlay in values.items()}
            for axis, values in config["sweep"].items()}
    for axis, values in axes.items():
        for value, overlay in values.items():
            for key in overlay:
                if key in FORBIDDEN_KEYS:
                    raise LfwcnnError(f"config key sweep.{axis}.{value}.{key}: an overlay may "
                                      f"not set {key} ({FORBIDDEN_KEYS[key]})")
    base = {key: value for key, value in config.items() if key != "sweep"}
    data_axes = [axis for axis, values in axes.items()
                 if any(section in overlay for overlay in values.values()
                        for section in DATA_SECTIONS)]
    source_axes = [axis for axis, values in axes.items()
                   if any(isinstance(overlay.get("data"), Mapping) and key in overlay["data"]
                          for overlay in values.values() for key in SOURCE_KEYS)]
    plan = Plan(axes={axis: list(values) for axis, values in axes.items()})
    sources_by_config, datasets_by_config = {}, {}  # canonical config -> name
    layers = None
    for combination in itertools.product(*(list(values.items()) for values in axes.values())):
        settings = {axis: value for axis, (value, _) in zip(axes, combination, strict=True)}
        merged = base
        for _, overlay in combination:
            merged = deep_merge(merged, overlay)
        where = ", ".join(f"sweep.{axis}.{value}" for axis, value in settings.items())
        try:
            merged = check(merged)
        except LfwcnnError as err:
            raise LfwcnnError(f"{where}: {err}") from None
        merged.pop("sweep", None)
        blocks = len(merged["model"]["filters"])
        if layers is None:
            layers = blocks
        elif blocks != layers:
            raise LfwcnnError(f"{where}: model.filters has {blocks} layers, the first run "
                              f"{layers}; every run must have the same number of conv blocks "
                              "(the activation stage lists its layers once)")
        variant = merged["data"]["variant"]
        source_config = {key: merged["data"].get(key)
                         for key in (*SOURCE_KEYS, "download", "extract")}
        source_name = _shared(
            Source(_join(settings, source_axes, variant), source_config),
            {k: source_config[k] for k in SOURCE_KEYS}, sources_by_config, plan.sources)
        data_config = {section: copy.deepcopy(merged[section]) for section in DATA_SECTIONS}
        dataset_name = _shared(
            PreparedData(_join(settings, data_axes, variant), data_config, source_name),
            data_config, datasets_by_config, plan.datasets)
        # every axis names the run, a one-value axis too (it says what was set)
        name = _join(settings, list(axes), variant)
        plan.runs[name] = Run(name, settings, merged, dataset_name, source_name)
    return plan


def split_seed(split_config: Mapping, seed: int | str) -> int:
    """The split a training seed uses: its own, unless the config pins ``split.seed``."""
    pinned = split_config.get("seed")
    return int(seed) if pinned is None else int(pinned)
