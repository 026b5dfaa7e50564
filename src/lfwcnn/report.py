"""The HTML report: every claim of the paper beside what this run measured, with a verdict.

:mod:`lfwcnn.report_context` reads the outputs of every stage into one dictionary and
computes the verdicts; :func:`render` fills ``templates/report.html.j2`` with it
(:mod:`lfwcnn.templating`). The result is one HTML file with every figure inlined as a
``data:`` URI and no script, font or style sheet from elsewhere, so it opens offline, from a
mail attachment, on a phone or a wide screen.

    python -m lfwcnn.report --summary data/prepared/funneled/summary.json ... \\
        --out results/report/index.html
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from lfwcnn import templating
from lfwcnn.atomic import write_text
from lfwcnn.cli import run
from lfwcnn.config import read_step_json
from lfwcnn.environment import package_checkout
from lfwcnn.ownership import check_outputs, listed
from lfwcnn.report_context import Inputs, build_context

log = logging.getLogger(__name__)


def render(context: dict) -> str:
    return templating.render("report.html.j2", **context)


def write_report(inputs: Inputs, out: str | os.PathLike) -> dict:
    context = build_context(inputs)
    write_text(out, render(context))
    return context


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", help="default: the config's report.title")
    parser.add_argument("--config-json", help="the workflow's config as JSON (shown as YAML)")
    parser.add_argument("--repo", default=package_checkout(),
                        help="source checkout, for the git commit (default: this package's)")
    parser.add_argument("--summary", required=True, help="data summary.json")
    parser.add_argument("--source", help="source.json of the obtain step")
    parser.add_argument("--manifest", help="manifest.csv (its sha256 is shown)")
    parser.add_argument("--dataset", help="dataset.npz (its sha256 is shown)")
    parser.add_argument("--splits", nargs="*", default=[], help="split CSVs, first seed first")
    parser.add_argument("--histories", nargs="*", default=[], help="history.csv per seed")
    parser.add_argument("--train-infos", nargs="*", default=[], help="train.json per seed")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics.json per seed")
    parser.add_argument("--aggregate", help="aggregate.json")
    parser.add_argument("--accuracy-by-seed", help="accuracy_by_seed.csv")
    parser.add_argument("--figures-dir", help="output folder of `lfwcnn.figures training`")
    parser.add_argument("--activations-dir", help="output folder of lfwcnn.activations")
    parser.add_argument("--backprop-json", help="check.json of lfwcnn.verify_backprop")
    parser.add_argument("--backprop-html", help="fig4.html of lfwcnn.verify_backprop")
    parser.add_argument("--benchmarks", help="folder of Snakemake benchmark files")
    parser.add_argument("--sweep-summary", help="summary.json of lfwcnn.sweep_summary")
    parser.add_argument("--sweep-figure", help="accuracy.png of lfwcnn.sweep_summary")
    parser.add_argument("--out", required=True, help="HTML file to write")
    args = parser.parse_args(argv)
    config = read_step_json(args.config_json, "--config-json") if args.config_json else {}
    title = args.title or config.get("report", {}).get("title") or Inputs.title
    check_outputs({"--out": args.out}, {
        "--summary": args.summary, "--source": args.source, "--manifest": args.manifest,
        "--dataset": args.dataset, **listed("--splits", args.splits),
        **listed("--histories", args.histories), **listed("--train-infos", args.train_infos),
        **listed("--metrics", args.metrics), "--aggregate": args.aggregate,
        "--accuracy-by-seed": args.accuracy_by_seed, "--backprop-json": args.backprop_json,
        "--backprop-html": args.backprop_html, "--sweep-summary": args.sweep_summary,
        "--sweep-figure": args.sweep_figure})
    inputs = Inputs(
        summary=args.summary, source=args.source, manifest=args.manifest, dataset=args.dataset,
        splits=args.splits, histories=args.histories, train_infos=args.train_infos,
        metrics=args.metrics, aggregate=args.aggregate, accuracy_by_seed=args.accuracy_by_seed,
        figures_dir=args.figures_dir, activations_dir=args.activations_dir,
        backprop_json=args.backprop_json, backprop_html=args.backprop_html,
        benchmarks=args.benchmarks, sweep_summary=args.sweep_summary,
        sweep_figure=args.sweep_figure, config=config, repo=args.repo, title=title)
    context = write_report(inputs, args.out)
    log.info("%s Report: %s", context["headline"], args.out)


if __name__ == "__main__":
    raise SystemExit(run(main))
