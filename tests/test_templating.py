"""Templates in one folder, loaded by one Jinja environment that escapes."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

import lfwcnn
from lfwcnn import templating

PACKAGE = Path(lfwcnn.__file__).parent


def test_every_template_lives_in_the_templates_folder_and_loads():
    names = templating.environment().list_templates()
    assert sorted(names) == sorted(p.name for p in (PACKAGE / "templates").iterdir())
    assert {"report.html.j2", "fig4.html.j2"} <= set(names)
    for name in names:
        templating.environment().get_template(name)


def test_no_module_builds_its_own_template():
    """One way to load a template: nothing else makes a Jinja Template or Environment."""
    own = sorted(path.name for path in PACKAGE.glob("*.py")
                 if path.name != "templating.py"
                 and ("jinja2.Template" in (text := path.read_text(encoding="utf-8"))
                      or "jinja2.Environment" in text or "<table" in text))
    assert own == []


def test_text_is_escaped_and_markup_is_kept():
    table = {"caption": "<script>alert(1)</script>",
             "rows": [[{"expr": Markup("X<sub>11</sub>"), "eq": None, "value": "1 & 2"}]]}
    check = {"cases": 1, "max_relative_error": {"filter": 1e-16}, "tolerance": 1e-10}
    html = templating.render(
        "fig4.html.j2", report={"pass": True}, tables=[table], autodiff=check,
        numerical=check, fig4={"equations": {"1": True}}, keras_sgd=check)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "X<sub>11</sub>" in html and "1 &amp; 2" in html


def test_an_undefined_name_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError):
        templating.render("fig4.html.j2", report={"pass": True}, tables=[])


@pytest.mark.parametrize(("value", "text"), [(None, "-"), (float("nan"), "-"), (0.8347, "83.47 %")])
def test_percent_filter(value, text):
    assert templating.percent(value) == text


@pytest.mark.parametrize(("value", "text"), [(True, "yes"), (3, "3"), (0.5, "0.500"), (None, "-")])
def test_number_filter(value, text):
    assert templating.number(value) == text
