"""The pipeline's steps, and the one way each is called: by a Snakemake rule or by hand.

A step is a plain function of keyword-only, typed parameters (``split.split_dataset``), named
like the rule that runs it. Its callers bind parameters by name, so a name means the same on
both sides of the seam and output files are named once, by the rule:

* a rule (``script: "../scripts/step.py"``) gives its input, output, params, wildcards,
  threads and resources; a string in params is JSON (:func:`lfwcnn.config.step_json`), and a
  parameter annotated :class:`~lfwcnn.settings.Settings` gets its config section frozen;
* ``python -m lfwcnn STEP NAME=VALUE ... [--configfile FILE]`` gives the same names, and the
  config sections from config/config.yaml with the files given merged over it, checked by
  the schema as the workflow checks them.

Either way a failure is one line, ``error: ...``, and exit status 1 (:func:`lfwcnn.cli.guarded`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lfwcnn.cli import OneLineParser, guarded
from lfwcnn.config import CHECKOUT, DEFAULT_CONFIG, load_config, read_step_json
from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings, freeze

STEPS = {
    "download_lfw": "lfwcnn.download",
    "obtain_lfw": "lfwcnn.obtain",
    "prepare_dataset": "lfwcnn.prepare",
    "split_dataset": "lfwcnn.split",
    "train_model": "lfwcnn.train",
    "evaluate_model": "lfwcnn.evaluate",
    "aggregate_seeds": "lfwcnn.aggregate",
    "export_activations": "lfwcnn.activations",
    "draw_activations": "lfwcnn.figures",
    "draw_training": "lfwcnn.figures",
    "summarize_sweep": "lfwcnn.sweep_summary",
    "write_report": "lfwcnn.report",
    "verify_backprop": "lfwcnn.verify_backprop",
    "find_landmarks": "lfwcnn.landmarks",
    "view_network": "lfwcnn.views",
}
# commands that are no step (no rule runs them): they read what the steps wrote
COMMANDS = {"progress": ("lfwcnn.progress", "how far every training of a results folder is")}


def _is_section(hint: Any) -> bool:
    """Whether a parameter's annotation asks for a config section."""
    return isinstance(hint, type) and issubclass(hint, Settings)


def step_function(name: str) -> Callable[..., Any]:
    if name not in STEPS:
        raise LfwcnnError(f"unknown step {name!r}; steps: {', '.join(sorted(STEPS))}")
    return getattr(importlib.import_module(STEPS[name]), name)


def _convert(name: str, value: Any, hint: Any) -> Any:
    """``value`` (from a rule, or a string typed by hand) as the parameter's annotation says."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str | Sequence) and len(value) == 0):
            return None  # an optional input a rule left out (Snakemake gives an empty list)
        return _convert(name, value, next(arg for arg in args if arg is not type(None)))
    if isinstance(value, list) and origin is not list:
        if len(value) != 1:
            raise LfwcnnError(f"{name} is given {len(value)} times; it takes one value")
        value = value[0]  # a rule's input function may return a one-item list
    if origin is list:
        items = [value] if isinstance(value, str | os.PathLike) else list(value)
        return [_convert(name, item, args[0] if args else Any) for item in items]
    if hint is Path:
        return Path(value)
    if _is_section(hint):
        if not isinstance(value, Mapping | Settings):
            raise LfwcnnError(f"{name} is a config section: give it in a config file "
                              "(--configfile), not as a value")
        return freeze(value, name)
    if hint in (int, float) and isinstance(value, str):
        try:
            return hint(value)
        except ValueError:
            kind = "an integer" if hint is int else "a number"
            raise LfwcnnError(f"{name}: {value!r} is not {kind}") from None
    if hint is bool and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise LfwcnnError(f"{name}: {value!r} is not true or false")
        return value.lower() == "true"
    return value


def call(function: Callable[..., Any], values: Mapping[str, Any],
         optional: Mapping[str, Any] = types.MappingProxyType({})) -> Any:
    """Call ``function`` with the ``values`` its parameters name, converted to their types.

    Every entry of ``values`` must be a parameter (a misspelt name is an error); entries of
    ``optional`` (wildcards, threads, resources) are passed only where a parameter asks.
    """
    params = inspect.signature(function).parameters
    hints = typing.get_type_hints(function)
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise LfwcnnError(f"step {function.__name__} takes no {', '.join(unknown)} "
                          f"(it takes {', '.join(params)})")
    given = {**{k: v for k, v in optional.items() if k in params}, **values}
    missing = [p.name for p in params.values()
               if p.name not in given and p.default is inspect.Parameter.empty]
    if missing:
        raise LfwcnnError(f"step {function.__name__} needs {', '.join(missing)}")
    return function(**{k: _convert(k, v, hints.get(k, Any)) for k, v in given.items()})


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's params, JSON strings decoded (how rules pass strings past Snakemake's report)."""
    return {key: read_step_json(value, f"params.{key}") if isinstance(value, str) else value
            for key, value in params.items()}


@contextlib.contextmanager
def _output_to(log: str | None) -> Iterator[None]:
    """Send this process's stdout and stderr, native libraries' included, into the job's log
    (what ``> {log} 2>&1`` did for a shell rule)."""
    if not log:
        yield
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        yield


def run_job(job: Any) -> None:
    """Run the step of a Snakemake ``script:`` job (its ``snakemake`` object); exit 1 on error."""
    with _output_to(job.log[0] if job.log else None):
        code = guarded(lambda: call(
            step_function(job.rule),
            {**dict(job.input.items()), **dict(job.output.items()), **_params(job.params)},
            {**dict(job.wildcards.items()), "threads": job.threads,
             **dict(job.resources.items())},
        ))
    sys.exit(code)


def _from_command_line(values: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a name given more than once is a list."""
    pairs: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise LfwcnnError(f"{item!r}: give values as NAME=VALUE")
        pairs.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in pairs.items()}


def _usage(name: str) -> str:
    """One line of help: a step and the names it takes (config sections in brackets)."""
    function = step_function(name)
    hints = typing.get_type_hints(function)
    names = [f"[{p}]" if _is_section(hints.get(p)) else p
             for p in inspect.signature(function).parameters]
    return f"  {name} {' '.join(names)}"


def run_step(
    name: str, values: Mapping[str, Any], config: Mapping[str, Any] | Settings | None = None
) -> Any:
    """Run step ``name`` with ``values`` (parameter name -> value, as strings typed by hand
    or as objects); its config sections come from ``config`` (checked by the schema), else
    from config/config.yaml. What ``python -m lfwcnn`` does, callable from Python."""
    function = step_function(name)
    hints = typing.get_type_hints(function)
    sections = [key for key, hint in hints.items() if key not in values and _is_section(hint)]
    if sections and config is None:
        config = load_config([DEFAULT_CONFIG])
    section = config.__getitem__ if isinstance(config, Mapping) else config.__getattribute__
    return call(function, {**values, **{key: section(key) for key in sections}})


class _Parser(OneLineParser):
    """The runner's parser, whose help lists every step (built only when asked: it imports
    every step's module)."""

    help_hint = "--help lists the steps"

    def format_help(self) -> str:
        self.epilog = (
            "steps and the NAMEs they take (a rule's input, output, params, wildcards; "
            "[section]: from the config files):\n" + "\n".join(map(_usage, sorted(STEPS)))
            + f"\nconfig: {DEFAULT_CONFIG.relative_to(CHECKOUT)} with each --configfile "
            "merged over it, checked by the schema\ncommands (python -m lfwcnn COMMAND --help):\n"
            + "\n".join(f"  {name}: {what}" for name, (_, what) in COMMANDS.items()))
        return super().format_help()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one step of the pipeline by hand, as its rule runs it (or a command, e.g. progress)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
        return
    parser = _Parser(prog="python -m lfwcnn", description=main.__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE")
    parser.add_argument("--configfile", action="append", default=[], metavar="FILE")
    args = parser.parse_intermixed_args(argv)
    if args.step is None:
        parser.error("give a step")
    config = load_config([DEFAULT_CONFIG, *args.configfile]) if args.configfile else None
    run_step(args.step, _from_command_line(args.values), config)
