"""The one Jinja environment for every HTML the package writes (the templates in ``templates/``):
autoescape on (a name, title or note is text; trusted markup comes as :class:`markupsafe.Markup`),
an undefined name is an error rather than an empty string, and the same filters for numbers.
"""

from __future__ import annotations

import functools
import math

import jinja2
import numpy as np


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(value, digits: int = 2) -> str:
    """A share as ``83.47 %``; a missing or NaN value as ``-``."""
    return "-" if missing(value) else f"{100 * float(value):.{digits}f} %"


def number(value, digits: int = 3) -> str:
    """An int as is, a bool as yes/no, a float to ``digits``; a missing or NaN value as ``-``."""
    if missing(value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(int(value)) if isinstance(value, int | np.integer) else f"{float(value):.{digits}f}"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("lfwcnn", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(percent=percent, number=number)
    return env


def render(name: str, **context) -> str:
    """The template ``templates/<name>`` filled with ``context``."""
    return environment().get_template(name).render(**context)
