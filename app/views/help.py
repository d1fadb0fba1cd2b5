"""Help pages: what a page links to when it cannot do something by itself."""

from django.conf import settings
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from app.services import catalog

README_SECTION = "## Running real models"


def readme_section(heading, readme=None):
    """The README's section under `heading` (up to the next "## "), as its
    Markdown text: the README stays the one place these steps are written."""
    path = readme or settings.BASE_DIR / "README.md"
    try:
        text = path.read_text()
    except OSError:
        return ""
    start = text.find(heading + "\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start + len(heading) : end if end >= 0 else None].strip()


@require_GET
def running_models(request):
    servers = [(name, catalog.local_url(name), catalog.LOCAL_MODELS[name][2]) for name in catalog.LOCAL_MODELS]
    return TemplateResponse(
        request,
        "help_models.html",
        {
            "section": readme_section(README_SECTION),
            "availability_interval": settings.AVAILABILITY_INTERVAL,
            "servers": servers,
        },
    )
