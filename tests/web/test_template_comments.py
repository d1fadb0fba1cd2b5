"""Django's {# #} comment is one line: one that runs on is shown to users as text."""

import re

from tests.conftest import ROOT


def test_no_template_has_a_one_line_comment_that_runs_on():
    runs_on = [
        f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for text in [path.read_text()]
        for match in re.finditer(r"\{#(?:(?!#\}).)*\n", text)
    ]
    assert runs_on == [], "use {% comment %} for comments of several lines"
