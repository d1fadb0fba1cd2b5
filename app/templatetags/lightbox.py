"""Small template filters for the pages."""

from django import template

from app.services import storage

register = template.Library()


@register.filter
def seconds(value, digits=1):
    """1.234 -> "1.2 s"; cheaper than floatformat, which goes through Decimal
    (it showed in the gallery's profile: one per tile)."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.{int(digits)}f} s"


@register.simple_tag
def disk_problem():
    """What the admin says about a full disk ("" when there is room)."""
    return storage.disk_problem()
