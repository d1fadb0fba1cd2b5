"""What the pages show of a prediction inside something else: a comparison's
card (and the withheld card of one the viewer may not open), and the tiles of
galleries and accounts."""

import statistics
from dataclasses import dataclass

from django.template.response import TemplateResponse
from django.utils import timezone
from django_htmx.http import HttpResponseStopPolling

from app.models import Access, Output, Prediction, Version


def attach_changes(prediction, comparison):
    """What the mapping changed for this prediction's version, for its card."""
    changes = comparison.changes.get(prediction.version_id, []) if comparison else []
    prediction.adjusted = [change for change in changes if change["kind"] != "default"]
    prediction.defaulted = [change for change in changes if change["kind"] == "default"]
    return prediction


def attach_live_state(prediction, usual_times=None, now=None):
    """What the card of a prediction that has not ended says, besides its
    logs: `queue_ahead` (predictions the same model server takes first),
    `elapsed` (seconds since it was asked for), `usual` (the median predict
    time of the version's recent runs, with the same steps when there are
    some), `phase` (in words) and `shown_percent` (None: a bar that says
    "working" without a figure). The figure is the steps done, or the time
    run against the usual time when the model reports no steps yet; it stops
    short of 100 until the images are stored. `usual_times` keeps the usual
    times already looked up, by version and steps, for the other cards."""
    if prediction.is_terminal:
        prediction.shown_percent = 100 if prediction.status == Prediction.Status.SUCCEEDED else prediction.percent
        return prediction
    now = now or timezone.now()
    prediction.elapsed = (now - prediction.created_at).total_seconds()
    steps = prediction.input.get("num_inference_steps")
    key = (prediction.version_id, steps)
    usual_times = {} if usual_times is None else usual_times
    if key not in usual_times:
        times = Prediction.objects.recent_predict_times(prediction.version_id, steps) if steps else []
        times = times or Prediction.objects.recent_predict_times(prediction.version_id)
        usual_times[key] = statistics.median(times) if times else None
    prediction.usual = usual_times[key]
    prediction.queue_ahead = 0
    prediction.shown_percent = None
    if prediction.status == Prediction.Status.STARTING:
        if prediction.version.backend == Version.Backend.COG:
            prediction.queue_ahead = Prediction.objects.ahead_of(prediction).count()
        if prediction.queue_ahead:
            ahead = prediction.queue_ahead
            prediction.phase = f"In the queue: {ahead} prediction{'s' if ahead != 1 else ''} ahead of it"
        else:
            prediction.phase = "Waiting for the model to start"
        return prediction
    running = (now - (prediction.started_at or prediction.created_at)).total_seconds()
    by_time = min(95, int(100 * running / prediction.usual)) if prediction.usual else None
    progress = prediction.progress
    if progress and progress[0] >= progress[1]:
        prediction.phase = f"All {progress[1]} steps done; saving the images"
        prediction.shown_percent = 99
    elif progress:
        prediction.phase = f"Step {progress[0]} of {progress[1]}"
        prediction.shown_percent = max(
            prediction.percent, min(by_time or 0, int(100 * (progress[0] + 1) / progress[1]))
        )
    else:
        prediction.phase = "Running: the model is getting ready"
        prediction.shown_percent = by_time
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


def compare_choices(predictions, user):
    """(value, label) of each image among `predictions` (a comparison's cards,
    a grid's cells) that `user` sees in full, for the compare viewer's picker
    (templates/_compare_pick.html): the value "<prediction id>:<index>"
    that /compare takes, the label the model and its version (two runs of one
    model, an old and a new version, stay apart), and the image's number when
    a prediction has several. Withheld cards, blurred and removed images are left out."""
    choices = []
    for prediction in predictions:
        if not _finished_and_open(prediction):
            continue
        outputs = list(prediction.outputs.all())
        for output in outputs:
            if not comparable(prediction, output, user):
                continue
            label = f"{prediction.version.model} · {prediction.version_id[:8]}"
            if len(outputs) > 1:
                label += f" · image {output.index + 1}"
            choices.append((f"{prediction.id}:{output.index}", label))
    return choices


def _finished_and_open(prediction):
    return not getattr(prediction, "withheld", False) and prediction.status == Prediction.Status.SUCCEEDED


def comparable(prediction, output, user):
    """Whether the compare picker offers `output` of `prediction` to `user`:
    a finished prediction they may open, an image neither removed nor one
    they only get blurred (the viewer refuses those)."""
    return (
        _finished_and_open(prediction)
        and output is not None
        and output.rating != Output.Rating.BLOCKED
        and bool(output.file)
        and output.shows_explicit_to(user)
    )
