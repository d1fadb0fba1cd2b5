"""The prediction page (/p/<id>): a shareable result, and the owner's actions on it."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Exists, OuterRef
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.forms import VisibilityForm
from app.models import Access, Prediction, ReproCheck
from app.services import predictions, reproductions
from app.services.api_json import prediction_json
from app.views import reports
from app.views.access import get_for_user, next_url, owns
from app.views.cards import attach_changes, attach_live_state, card_response, compare_choices

SNIPPET_STRING_MAX = 200


def _get_prediction_for_user(request, prediction_id, owner_only=False):
    """The prediction if `request.user` may see it (or act on it: `owner_only`);
    else 404, or Gone when moderators hid it."""
    rows = (
        Prediction.objects.select_related("version__model", "comparison")
        .defer("version__openapi_schema")
        .prefetch_related("outputs")
        # In the same query: most predictions were never checked, and their page reads no check.
        .annotate(was_checked=Exists(ReproCheck.objects.filter(prediction=OuterRef("pk"))))
    )
    return get_for_user(rows, prediction_id, request.user, owner_only)


def with_shown_outputs(prediction, user):
    """Mark each output with what `user` gets: the image, or (nsfw) its blurred thumbnail."""
    for output in prediction.outputs.all():
        output.shown = output.shows_explicit_to(user)
    return prediction


# The file a snippet reads for a file input: "input.png" for the image to
# start from, "mask.png" for the mask, "<name>.png" for any other.
SNIPPET_FILE_NAMES = {"image": "input", "mask": "mask"}


def _is_file(value):
    return isinstance(value, str) and value.startswith("data:")


def _file_name(key, value):
    """The local file a snippet reads in place of a data URI."""
    media_type = value[5:].split(";", 1)[0].split(",", 1)[0]
    extension = {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(media_type, "png")
    return f"{SNIPPET_FILE_NAMES.get(key, key)}.{extension}"


def snippets(prediction):
    """curl and Python that run the same prediction again through /v1, as they
    are: file inputs read from local files ("input.png"), the token and the
    address from the same variables the official clients read (as the profile
    says: REPLICATE_API_TOKEN, REPLICATE_BASE_URL)."""
    files = {key: _file_name(key, value) for key, value in prediction.input.items() if _is_file(value)}
    marks = {key: f"@@file:{key}@@" for key in files}
    body = {"version": prediction.version.ref, "input": {k: marks.get(k, v) for k, v in prediction.input.items()}}
    payload = json.dumps(body, indent=2).replace("'", "'\\''")
    for key, name in files.items():
        # Leave the single-quoted JSON for the file's base64, then come back.
        media_type = prediction.input[key][5:].split(";", 1)[0]
        payload = payload.replace(marks[key], f"data:{media_type};base64,'\"$(base64 < {name} | tr -d '\\n')\"'")
    curl = (
        'curl -s -X POST "$REPLICATE_BASE_URL/v1/predictions" \\\n'
        '  -H "Authorization: Bearer $REPLICATE_API_TOKEN" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        '  -H "Prefer: wait" \\\n'
        f"  -d '{payload}'"
    )
    fields = "".join(
        f'        {key!r}: open("{files[key]}", "rb"),\n' if key in files else f"        {key!r}: {value!r},\n"
        for key, value in prediction.input.items()
    )
    # Files go inline as data URIs, which every Lightbox takes.
    encoding = '    file_encoding_strategy="base64",\n' if files else ""
    python = (
        "import replicate  # pip install replicate; it reads REPLICATE_API_TOKEN and REPLICATE_BASE_URL\n\n"
        f"output = replicate.run(\n    {prediction.version.ref!r},\n"
        f"    input={{\n{fields}    }},\n{encoding})\n"
        "print(output)"
    )
    return curl, python, sorted(set(files.values()))


def input_rows(prediction):
    """(name, value, whether it is an image to show as one) of each input."""
    return [
        (key, value, True) if _is_file(value) and value.startswith("data:image/") else (key, _short(value), False)
        for key, value in prediction.input.items()
    ]


def _short(value):
    """Input for the table: long data URIs that are not images cut."""
    if _is_file(value) and len(value) > SNIPPET_STRING_MAX:
        return value[:40] + "…"
    return value


def _compare_context(prediction, user):
    """The compare viewer's entry on a prediction page: its first image, to
    compare with another image of its comparison (or its own others)."""
    mine = compare_choices([prediction], user)
    if not mine:
        return {}
    siblings = [prediction]
    if prediction.comparison_id:
        others = (
            prediction.comparison.predictions.exclude(pk=prediction.pk)
            .select_related("version__model")
            .defer("logs", "version__openapi_schema")
            .prefetch_related("outputs")
            .order_by("created_at")
        )
        siblings += [other for other in others if other.access_for(user) == Access.OPEN]
    fixed = mine[0][0]
    choices = [choice for choice in compare_choices(siblings, user) if choice[0] != fixed]
    return {"compare_fixed": fixed, "compare_choices": choices}


@require_GET
def prediction(request, prediction_id):
    prediction = with_shown_outputs(_get_prediction_for_user(request, prediction_id), request.user)
    is_owner = owns(request.user, prediction)
    context = {"prediction": prediction, "is_owner": is_owner}
    if request.htmx and request.GET.get("part") == "result":
        return card_response(request, prediction, template="prediction.html#result", context=context)
    base = request.build_absolute_uri("/").rstrip("/")
    curl, python, snippet_files = snippets(prediction)
    outputs = list(prediction.outputs.all())
    context.update(
        outputs=outputs,
        input_rows=input_rows(prediction),
        # Its output URLs work for this viewer only, and only while they may see them.
        api_json=json.dumps(prediction_json(prediction, base, viewer=request.user), indent=2),
        curl=curl,
        python=python,
        snippet_files=snippet_files,
        base_url=base,
        share_url=request.build_absolute_uri(),
        share_description=f"{prediction.version.model} · seed {prediction.input.get('seed')} · on Lightbox",
        # Chat apps preview the image, fetched without a session: only a safe
        # one that anyone may open.
        og_image=(
            base + outputs[0].file.url
            if outputs and outputs[0].rating == "safe" and prediction.is_open_to_everyone
            else ""
        ),
        visibility_form=VisibilityForm(initial={"visibility": prediction.visibility}),
        # The last reproducibility check (docs/bundles.md), settled if its re-run ended.
        check=reproductions.last_check(prediction) if prediction.was_checked else None,
        **_compare_context(prediction, request.user),
        **reports.report_context(request.user, prediction),
    )
    return TemplateResponse(request, "prediction.html", context)


@require_http_methods(["GET", "POST"])
def prediction_report(request, prediction_id):
    """Anyone who can see it may report it (app.views.reports)."""
    prediction = _get_prediction_for_user(request, prediction_id)
    return reports.report(request, prediction)


@login_required
@require_POST
def prediction_cancel(request, prediction_id):
    prediction = _get_prediction_for_user(request, prediction_id, owner_only=True)
    predictions.cancel(prediction)
    if request.htmx:
        attach_changes(prediction, prediction.comparison)
        attach_live_state(prediction)
        with_shown_outputs(prediction, request.user)
        context = {"is_owner": True, "comparison": prediction.comparison}
        if prediction.comparison:
            # The comparison's "Cancel all" goes with its last running prediction.
            context.update(active=prediction.comparison.predictions.active().exists(), controls_oob=True)
        return card_response(request, prediction, context=context)
    return redirect(
        next_url(request, prediction.comparison.get_absolute_url() if prediction.comparison else f"/p/{prediction.id}")
    )


@login_required
@require_POST
def prediction_delete(request, prediction_id):
    prediction = _get_prediction_for_user(request, prediction_id, owner_only=True)
    predictions.cancel(prediction)
    prediction.delete()
    messages.success(request, "Prediction deleted, with its images.")
    return redirect(next_url(request, "profile"))


@login_required
@require_POST
def prediction_visibility(request, prediction_id):
    prediction = _get_prediction_for_user(request, prediction_id, owner_only=True)
    form = VisibilityForm(request.POST)
    if form.is_valid():
        prediction.visibility = form.cleaned_data["visibility"]
        prediction.save(update_fields=["visibility"])
        messages.success(request, f"Now {prediction.get_visibility_display().lower()}.")
    return redirect(next_url(request, f"/p/{prediction.id}"))
