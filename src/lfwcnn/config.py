"""Check the workflow config before any job runs, with one line that names the offending key."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lfwcnn.errors import LfwcnnError
from lfwcnn.settings import Settings, freeze
from lfwcnn.sources import LFW_SIDE
from lfwcnn.sweep import deep_merge

# The checkout this package runs from (an editable install, as README installs it): its schema
# checks every config, whether Snakemake or a step run by hand reads it.
CHECKOUT = Path(__file__).resolve().parents[2]
SCHEMA = CHECKOUT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = CHECKOUT / "config" / "config.yaml"
# Characters that open or close markup, as JSON escapes that decode to the same characters.
_MARKUP_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        # jsonschema reports the parent; name the unexpected key itself.
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path = ".".join(filter(None, [path, extra[0] if extra else ""]))
    return path or "<top level>"


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML config file as a mapping; a syntax error is one line with its file and line.

    Snakemake's own message for a broken config file names neither the file nor the line,
    so the workflow reads its config file here first.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(filter(None, [err.context, err.problem]))
        raise LfwcnnError(f"{where}: not valid YAML ({problem})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise LfwcnnError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except OSError as err:
        raise LfwcnnError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(config, dict):
        raise LfwcnnError(f"{path}: a config file must map keys to values, got "
                          f"{type(config).__name__}")
    return config


def load_config(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """Config files merged in order (nested keys too, as Snakemake's ``--configfile``), checked
    against the schema with its defaults filled: what a step run by hand reads."""
    config: dict[str, Any] = {}
    for path in paths:
        config = deep_merge(config, read_config_file(path))
    return check_config(config)


def default_settings(overlay: Mapping[str, Any] | None = None) -> Settings:
    """config/config.yaml with ``overlay`` merged in, checked and frozen: what a step gets in
    a plain run (for tests, benchmarks and notebooks, which so share the config's defaults)."""
    return freeze(check_config(deep_merge(read_config_file(DEFAULT_CONFIG), overlay or {})))


def check_config(
    config: dict[str, Any], schema_path: str | os.PathLike = SCHEMA
) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill its defaults, check cross-key rules.

    Snakemake's own ``validate`` fills the defaults; the schema is checked first with plain
    jsonschema so that the message is one line naming the key instead of a schema dump.
    """
    from snakemake.utils import validate  # imported here: the package works without a workflow

    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(config))
    if error is not None:
        raise LfwcnnError(f"config key {_key_path(error)}: {error.message}")
    validate(config, str(schema_path))
    _check_crop(config["data"]["crop"])
    return config


def _check_crop(crop: dict[str, list[int]]) -> None:
    for axis in ("rows", "cols"):
        start, stop = crop[axis]
        if not 0 <= start < stop <= LFW_SIDE:
            raise LfwcnnError(
                f"config key data.crop.{axis}: {[start, stop]} must satisfy "
                f"0 <= start < stop <= {LFW_SIDE}"
            )


def step_json(value: Any) -> str:
    """``value`` as JSON for a rule's ``params``, with no markup character in it.

    Snakemake copies every ``params`` value of a job that made a report file, unescaped, into
    a ``<script>`` block of its ``--report``; a title or path holding ``</script>`` would end
    that block. So a free-form string (title, name, path, URL) reaches a rule only inside
    this JSON, where ``<``, ``>`` and ``&`` are ``\\u`` escapes; :func:`read_step_json` (plain
    ``json.loads``) gives back the same value.
    """
    text = json.dumps(value, ensure_ascii=True)
    for char, escape in _MARKUP_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def read_step_json(text: str, what: str) -> Any:
    """Decode a :func:`step_json` value; one line naming ``what`` if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as err:
        raise LfwcnnError(f"{what} is not JSON ({err})") from None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lfwcnn.config FILE...``: check config files' YAML syntax, one line each.

    Snakemake reads an overlay given with ``--configfile`` before the workflow runs, and its
    message for a syntax error names neither the file nor the line; this names both.
    """
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        raise LfwcnnError("give the config files to check: python -m lfwcnn.config FILE...")
    for path in paths:
        read_config_file(path)


if __name__ == "__main__":
    from lfwcnn.cli import run

    raise SystemExit(run(main))
