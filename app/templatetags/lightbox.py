"""Small template filters for the pages."""

from django import template

from app.core import images
from app.services import storage

register = template.Library()


@register.filter
def seconds(value, digits=1):
    """1.234 -> "1.2 s"; cheaper than floatformat, which goes through Decimal
    (it showed in the gallery's profile: one per tile)."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.{int(digits)}f} s"


@register.filter
def duration(value):
    """Seconds as a person reads a running clock: "12 s", "1 min 44 s"."""
    if value is None or value == "":
        return "—"
    seconds = int(value)
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60} s"


@register.simple_tag
def download_name(prediction, output):
    """The name a page's download link saves an output as: the same as its
    file's Content-Disposition (app/views/media.py)."""
    return images.download_name(
        prediction.version.model.name,
        prediction.input.get("prompt", ""),
        prediction.input.get("seed"),
        output.index,
        storage.EXTENSIONS.get(output.content_type, "bin"),
    )


@register.simple_tag
def disk_problem():
    """What the admin says about a full disk ("" when there is room)."""
    return storage.disk_problem()
