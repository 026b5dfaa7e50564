"""The HTML report: every claim of the paper beside what this run measured, with a verdict.

:mod:`lfwcnn.report_context` reads the outputs of every stage into one dictionary and
computes the verdicts; :func:`render` fills ``templates/report.html.j2`` with it
(:mod:`lfwcnn.templating`). The result is one HTML file with every figure inlined as a
``data:`` URI and no script, font or style sheet from elsewhere, so it opens offline, from a
mail attachment, on a phone or a wide screen. The step is :func:`write_report` (rule
``write_report``; by hand ``python -m lfwcnn write_report NAME=VALUE ...``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from lfwcnn import templating
from lfwcnn.atomic import write_text
from lfwcnn.environment import package_checkout
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.report_context import Inputs, build_context
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)


# write_report's parameters that are not files it reads (the rest are report_context.Inputs)
NOT_FILES = ("html", "report", "run_config", "benchmarks")


def render(context: dict) -> str:
    return templating.render("report.html.j2", **context)


def write_report(
    *,
    summary: Path,
    html: Path,
    report: Settings,
    run_config: dict | None = None,
    source: Path | None = None,
    manifest: Path | None = None,
    dataset: Path | None = None,
    splits: list[Path] | None = None,
    histories: list[Path] | None = None,
    train_infos: list[Path] | None = None,
    metrics: list[Path] | None = None,
    aggregate: Path | None = None,
    accuracy_by_seed: Path | None = None,
    curves_figure: Path | None = None,
    accuracy_figure: Path | None = None,
    confusion_figure: Path | None = None,
    confusion_table: Path | None = None,
    per_class: Path | None = None,
    activation_summary: Path | None = None,
    activation_record: Path | None = None,
    activation_manifest: Path | None = None,
    activation_input: Path | None = None,
    activation_sparsity: Path | None = None,
    activation_grids: list[Path] | None = None,
    timings: list[Path] | None = None,
    benchmarks: Path | None = None,
    backprop_json: Path | None = None,
    backprop_html: Path | None = None,
    sweep_summary: Path | None = None,
    sweep_figure: Path | None = None,
) -> None:
    """Step: the report ``html`` from ``summary`` and what else is given, of the run whose
    whole config is ``run_config`` (shown as YAML), titled ``report.title``. A stage left out
    is shown as not run (the workflow gives every one it has; the activations need all of
    theirs). ``timings`` are the activations' benchmark files: the report reads every
    benchmark file below ``benchmarks``."""
    files = {name: value for name, value in locals().items() if name not in NOT_FILES}
    if run_config is not None and not isinstance(run_config, Mapping):
        raise LfwcnnError("run_config is the whole config of a run (a mapping, as the rule "
                          "gives it), not a value")
    check_outputs({"html": html}, {
        key: path for label, value in files.items() if value is not None
        for key, path in (listed(label, value) if isinstance(value, list) else
                          {label: value}).items()})
    given = {label: [str(p) for p in value] if isinstance(value, list) else str(value)
             for label, value in files.items() if value is not None and label != "timings"}
    inputs = Inputs(**given, benchmarks=None if benchmarks is None else str(benchmarks),
                    config=run_config or {}, repo=package_checkout(), title=report.title)
    context = build_context(inputs)
    write_text(html, render(context))
    log.info("%s Report: %s", context["headline"], html)
