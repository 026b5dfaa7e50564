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
from pathlib import Path

from lfwcnn import templating
from lfwcnn.atomic import write_text
from lfwcnn.environment import package_checkout
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.report_context import Inputs, build_context
from lfwcnn.settings import Settings

log = logging.getLogger(__name__)


def render(context: dict) -> str:
    return templating.render("report.html.j2", **context)


def write_report(
    *,
    summary: Path,
    source: Path,
    manifest: Path,
    dataset: Path,
    splits: list[Path],
    histories: list[Path],
    train_infos: list[Path],
    metrics: list[Path],
    aggregate: Path,
    accuracy_by_seed: Path,
    curves_figure: Path,
    accuracy_figure: Path,
    confusion_figure: Path,
    confusion_table: Path,
    per_class: Path,
    activation_summary: Path,
    activation_record: Path,
    activation_manifest: Path,
    activation_input: Path,
    activation_sparsity: Path,
    activation_grids: list[Path],
    timings: list[Path],
    html: Path,
    run_config: dict,
    report: Settings,
    benchmarks: Path,
    backprop_json: Path | None = None,
    backprop_html: Path | None = None,
    sweep_summary: Path | None = None,
    sweep_figure: Path | None = None,
) -> None:
    """Step: the report ``html`` of the run whose whole config is ``run_config`` (shown as
    YAML), titled ``report.title``. ``timings`` are the benchmark files of the activations
    (the report reads every benchmark file below ``benchmarks``); the backprop check and the
    sweep comparison are optional (the report then says "not run" or leaves them out)."""
    files = {
        "summary": summary, "source": source, "manifest": manifest, "dataset": dataset,
        "splits": splits, "histories": histories, "train_infos": train_infos,
        "metrics": metrics, "aggregate": aggregate, "accuracy_by_seed": accuracy_by_seed,
        "curves_figure": curves_figure, "accuracy_figure": accuracy_figure,
        "confusion_figure": confusion_figure, "confusion_table": confusion_table,
        "per_class": per_class, "activation_summary": activation_summary,
        "activation_record": activation_record, "activation_manifest": activation_manifest,
        "activation_input": activation_input, "activation_sparsity": activation_sparsity,
        "activation_grids": activation_grids, "backprop_json": backprop_json,
        "backprop_html": backprop_html, "sweep_summary": sweep_summary,
        "sweep_figure": sweep_figure,
    }
    check_outputs({"html": html}, {
        **{label: path for label, path in files.items() if not isinstance(path, list)},
        **{key: path for label, paths in {**files, "timings": timings}.items()
           if isinstance(paths, list) for key, path in listed(label, paths).items()}})
    inputs = Inputs(
        **{label: ([str(p) for p in path] if isinstance(path, list)
                   else None if path is None else str(path)) for label, path in files.items()},
        benchmarks=str(benchmarks), config=run_config, repo=package_checkout(),
        title=report.title)
    context = build_context(inputs)
    write_text(html, render(context))
    log.info("%s Report: %s", context["headline"], html)
