"""The one Jinja environment: every HTML the package writes is a template in ``templates/``.

One environment means one set of rules for all of them: autoescape on (a person's folder
name, a title or a note from the config is text, never markup; trusted markup is passed as
:class:`markupsafe.Markup`), undefined names an error rather than an empty string, and the
same filters for numbers.
"""

from __future__ import annotations

import functools
import math

import jinja2
import numpy as np


def percent(value, digits: int = 2) -> str:
    """A share as ``83.47 %``; a missing or NaN value as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * float(value):.{digits}f} %"


def number(value, digits: int = 3) -> str:
    """An int as is, a bool as yes/no, a float to ``digits``; a missing or NaN value as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.{digits}f}"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lfwcnn", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = percent
    env.filters["number"] = number
    return env


def render(name: str, **context) -> str:
    """The template ``templates/<name>`` filled with ``context``."""
    return environment().get_template(name).render(**context)
