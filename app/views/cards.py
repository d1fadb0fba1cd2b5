"""What the pages show of a prediction inside something else: a comparison's
card (and the withheld card of one the viewer may not open), and the tiles of
galleries and accounts."""

from dataclasses import dataclass

from django.template.response import TemplateResponse
from django_htmx.http import HttpResponseStopPolling

from app.models import Access, Output, Version


def attach_changes(prediction, comparison):
    """What the mapping changed for this prediction's version, for its card."""
    changes = comparison.changes.get(prediction.version_id, []) if comparison else []
    prediction.adjusted = [change for change in changes if change["kind"] != "default"]
    prediction.defaulted = [change for change in changes if change["kind"] == "default"]
    return prediction


@dataclass
class WithheldCard:
    """The card of a prediction in a comparison that `user` may not open by
    its own link (its owner made it private, moderators hid it): it says which,
    and holds nothing else of the prediction (no id, status, seed, logs, input
    or images), so no template can show them."""

    version: Version
    access: Access
    withheld = True
    is_terminal = True  # nothing to poll


def card_response(request, prediction, template="comparison.html#card", context=None):
    """One card; the last one a poll gets (286) once the prediction has ended."""
    response = TemplateResponse(request, template, {"prediction": prediction, **(context or {})})
    if prediction.is_terminal:
        response.render()
        return HttpResponseStopPolling(response.content)
    return response


# What a tile shows (templates/_thumb.html); a prediction's logs and a
# version's schema can be many kilobytes each, so they are not read.
TILE_FIELDS = ("id", "version_id", "owner_id", "input", "status", "visibility", "created_at", "predict_time")


def with_tiles(predictions, user, versions=None):
    """Give each prediction of a page its version (with its model), its first
    output and the thumbnail `user` gets of it (blurred when nsfw, none when
    blocked: Output.thumbnail_for), in two queries whatever the page size, and
    without joining the catalog into the page's query (a handful of rows, often
    loaded anyway)."""
    if versions is None:
        versions = (
            Version.objects.select_related("model")
            .defer("openapi_schema")
            .filter(pk__in={prediction.version_id for prediction in predictions})
        )
    by_id = {version.id: version for version in versions}
    firsts = Output.objects.filter(prediction__in=[prediction.pk for prediction in predictions], index=0).only(
        "id", "prediction_id", "index", "file", "thumbnail", "blurred_thumbnail", "width", "height", "rating"
    )
    first_of = {output.prediction_id: output for output in firsts}
    for prediction in predictions:
        prediction.version = by_id[prediction.version_id]
        output = prediction.tile_output = first_of.get(prediction.pk)
        if output is not None:
            output.prediction = prediction
        prediction.tile_thumbnail = output.thumbnail_for(user) if output is not None else None
    return predictions
