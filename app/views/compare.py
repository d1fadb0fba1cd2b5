"""The compare viewer: any two images of Lightbox (two cards of a comparison,
two cells of a grid, an old and a new version's) by their predictions,
/compare?a=<prediction id>[:<image index>]&b=...

Each image goes by the rules its media URL goes by (app.views.media): the
prediction by its own access (404 private, 410 hidden; its owner always),
a removed image is gone, an NSFW image only to those who opted in. The
modes (side by side with synchronised zoom and pan, slider wipe, flip, the
difference heatmap) are static/js/compare.js; the heatmap is made here
(/compare/diff.png, app.core.images.difference) and kept in the cache: the
stored images never change.
"""

import re
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from app.core import images
from app.models import Access, Output, Prediction
from app.views.access import access_of
from app.views.cards import compare_choices

# "<prediction id>" or "<prediction id>:<image index>".
IMAGE_REF = re.compile(r"^([A-Za-z0-9_-]{1,64})(?::(\d{1,3}))?$")
DIFF_CACHE_SECONDS = 24 * 3600


class Refused(Exception):
    """One of the two images cannot be compared: the reason in words, and the status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Side:
    """One image of the two: its prediction, its output, the query value that
    names it, and its label (the model, and which image when it has several)."""

    letter: str
    ref: str
    prediction: Prediction
    output: Output
    label: str


def _get_output_for_user(request, letter):
    """Image `letter` ("a" or "b") of the query, if `request.user` may see it
    in full; else Refused with what they would be told of its media URL."""
    name = letter.upper()
    ref = request.GET.get(letter, "").strip()
    match = IMAGE_REF.match(ref)
    if not match:
        raise Refused(400, f"Image {name}: give a prediction id, and an image number after a colon if it has several.")
    prediction_id, index = match.group(1), int(match.group(2) or 0)
    prediction = (
        Prediction.objects.select_related("version__model")
        .defer("logs", "version__openapi_schema")
        .filter(pk=prediction_id)
        .first()
    )
    access = access_of(prediction, request.user)
    if access == Access.HIDDEN:
        raise Refused(410, f"Image {name} was hidden by moderators.")
    if access == Access.PRIVATE:
        raise Refused(404, f"Image {name}: there is no such prediction.")
    output = prediction.outputs.filter(index=index).first()
    if output is None:
        raise Refused(404, f"Image {name}: that prediction has no image {index + 1}.")
    if output.rating == Output.Rating.BLOCKED or not output.file:
        raise Refused(410, f"Image {name} was removed by moderators.")
    if not output.shows_explicit_to(request.user):
        raise Refused(403, f"Image {name} is rated NSFW: log in and turn on NSFW images in your profile to compare it.")
    label = str(prediction.version.model)
    if prediction.outputs.count() > 1:
        label += f" · image {index + 1}"
    return Side(letter, f"{prediction.id}:{index}", prediction, output, label)


def _both(request):
    return _get_output_for_user(request, "a"), _get_output_for_user(request, "b")


def _difference(a, b):
    """(heatmap PNG, stats) of two outputs, from the cache when made before."""
    key = f"compare-diff:{a.output.pk}:{a.output.sha256}:{b.output.pk}:{b.output.sha256}"
    made = cache.get(key)
    if made is None:
        with a.output.file.open("rb") as first, b.output.file.open("rb") as second:
            made = images.difference(first.read(), second.read())
        cache.set(key, made, DIFF_CACHE_SECONDS)
    return made


def _others(a, b, user):
    """The images of A's and B's comparisons `user` may compare, to pick others there."""
    ids = {side.prediction.comparison_id for side in (a, b)} - {None}
    if not ids:
        return []
    predictions = (
        Prediction.objects.filter(comparison_id__in=ids)
        .select_related("version__model")
        .defer("logs", "version__openapi_schema")
        .prefetch_related("outputs")
        .order_by("created_at")
    )
    return compare_choices([p for p in predictions if p.access_for(user) == Access.OPEN], user)


@require_GET
def compare(request):
    try:
        a, b = _both(request)
    except Refused as refused:
        context = {"refusal": refused.message}
        return TemplateResponse(request, "compare.html", context, status=refused.status)
    query = urlencode({"a": a.ref, "b": b.ref})
    _, stats = _difference(a, b)
    context = {
        "a": a,
        "b": b,
        "stats": stats,
        "changed_percent": round(stats["changed"] * 100, 1),
        "diff_url": f"{reverse('compare-diff')}?{query}",
        "swap_url": f"{reverse('compare')}?{urlencode({'a': b.ref, 'b': a.ref})}",
        "compare_choices": _others(a, b, request.user),
        "compare_a": a.ref,
        "compare_b": b.ref,
    }
    return TemplateResponse(request, "compare.html", context)


@require_GET
def compare_diff(request):
    """The difference heatmap of the two images, as a PNG, for whoever may see both."""
    try:
        a, b = _both(request)
    except Refused as refused:
        return HttpResponse(refused.message, status=refused.status, content_type="text/plain")
    heatmap, _ = _difference(a, b)
    response = HttpResponse(heatmap, content_type="image/png")
    # Who may see it is decided per request (an image can be hidden later).
    response["Cache-Control"] = "private, max-age=600"
    response["Vary"] = "Cookie"
    response["X-Content-Type-Options"] = "nosniff"
    return response
