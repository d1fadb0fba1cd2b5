"""Small template filters for the pages."""

from django import template

register = template.Library()


@register.filter
def seconds(value, digits=1):
    """1.234 -> "1.2 s"; cheaper than floatformat, which goes through Decimal
    (it showed in the gallery's profile: one per tile)."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.{int(digits)}f} s"
