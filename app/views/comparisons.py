"""The comparison page: one card per version, updated by HTMX polling."""

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.core import images, schema
from app.forms import VisibilityForm
from app.models import Access, Comparison, Output, Version, Visibility
from app.services import comparisons, limits
from app.views import reports
from app.views.access import get_for_user, next_url, owns
from app.views.cards import WithheldCard, attach_changes, attach_live_state, card_response, compare_choices
from app.views.running import can_run, start_comparison

PREVIEW_COLUMNS = 4


def _get_comparison_for_user(request, comparison_id, owner_only=False):
    """The comparison if `request.user` may see it (or act on it: `owner_only`);
    else 404, or Gone when moderators hid it."""
    return get_for_user(Comparison.objects.select_related("owner"), comparison_id, request.user, owner_only)


def _predictions(comparison, user):
    """The comparison's cards for `user`: each prediction by its own access rule."""
    predictions = list(
        comparison.predictions.select_related("version__model")
        .defer("version__openapi_schema")
        .prefetch_related("outputs")
        .order_by("created_at")
    )
    cards = []
    for prediction in predictions:
        access = prediction.access_for(user)
        if access != Access.OPEN:
            cards.append(WithheldCard(prediction.version, access))
            continue
        attach_changes(prediction, comparison)
        for output in prediction.outputs.all():
            output.shown = output.shows_explicit_to(user)
        cards.append(prediction)
    return cards, predictions


# Inputs the header shows apart (the title, thumbnails) or not at all.
NOT_IN_HEADER = ("prompt", "image", "mask", "seed")


def _adjustments(comparison, cards):
    """(model, change) for every value a version could not take as given: the
    mapping, said once above the cards."""
    return [
        (card.version.model, change)
        for card in cards
        if not getattr(card, "withheld", False)
        for change in comparison.changes.get(card.version_id, [])
        if change["kind"] in (comparisons.REPLACED, comparisons.DROPPED)
    ]


def _effective_values(comparison, cards):
    """(field, what ran) for each value the user gave: one value when every
    version ran it, else each version's ("4 for sd-turbo · 8 for tiny-sd")."""
    shown = [card for card in cards if not getattr(card, "withheld", False)]
    values = []
    for field in comparison.input:
        if field in NOT_IN_HEADER:
            continue
        used = {}
        for card in shown:
            used.setdefault(str(card.input.get(field, "not used")), []).append(card.version.model.name)
        if len(used) <= 1:
            values.append((field, next(iter(used), str(comparison.input[field]))))
        else:
            values.append((field, " · ".join(f"{value} for {', '.join(names)}" for value, names in used.items())))
    return values


@require_GET
def comparison(request, comparison_id):
    comparison = _get_comparison_for_user(request, comparison_id)
    cards, predictions = _predictions(comparison, request.user)
    is_owner = owns(request.user, comparison)
    context = {"comparison": comparison, "is_owner": is_owner}
    card_id = request.GET.get("card")
    if request.htmx and card_id:
        card = next((card for card, p in zip(cards, predictions) if p.id == card_id), None)
        if card is None:
            raise Http404("No such card")
        # The header's controls follow too: "Cancel all" goes once nothing runs.
        active = any(not other.is_terminal for other in cards)
        if not getattr(card, "withheld", False):
            attach_live_state(card)
        return card_response(request, card, context={**context, "active": active, "controls_oob": True})
    usual_times = {}  # one look per version and step count, however many cards
    for card in cards:
        if not getattr(card, "withheld", False):
            attach_live_state(card, usual_times)
    shown = {prediction.version_id for prediction in predictions}
    others = [v for v in Version.objects.select_related("model").defer("openapi_schema") if v.id not in shown]
    context.update(
        og_image=_preview_url(request, comparison, predictions),
        predictions=cards,
        active=any(not card.is_terminal for card in cards),
        # Only versions that can run may be added; offline ones are listed, disabled.
        other_versions=[version for version in others if version.available],
        other_offline=[version for version in others if not version.available],
        adjustments=_adjustments(comparison, cards),
        effective=_effective_values(comparison, cards),
        input_images=[(name, comparison.input[name]) for name in ("image", "mask") if comparison.input.get(name)],
        can_run=can_run(request.user),
        compare_choices=compare_choices(cards, request.user),
        visibility_form=VisibilityForm(initial={"visibility": comparison.visibility}),
        **reports.report_context(request.user, comparison),
    )
    return TemplateResponse(request, "comparison.html", context)


def _preview_outputs(comparison, predictions):
    """What the link preview shows: the first safe image of each prediction
    anyone may open (chat apps fetch it without a session), four at most;
    nothing for a comparison that is not open to everyone."""
    if not comparison.is_open_to_everyone:
        return []
    firsts = []
    for prediction in predictions:
        if prediction.is_open_to_everyone:
            safe = [o for o in prediction.outputs.all() if o.rating == Output.Rating.SAFE and o.file]
            firsts += safe[:1]
    return firsts[:PREVIEW_COLUMNS]


def _preview_url(request, comparison, predictions):
    outputs = _preview_outputs(comparison, predictions)
    if not outputs:
        return ""
    # Named by what it shows, so a chat app's cached copy is not reused once
    # moderators hide one of them.
    shows = hashlib.sha256(",".join(str(o.pk) for o in outputs).encode()).hexdigest()[:12]
    return request.build_absolute_uri(f"{reverse('comparison-preview', args=[comparison.pk])}?shows={shows}")


@require_GET
def comparison_preview(request, comparison_id):
    """The link preview (og:image): the models' images side by side, named."""
    comparison = get_object_or_404(Comparison, pk=comparison_id)
    predictions = (
        comparison.predictions.select_related("version__model")
        .defer("version__openapi_schema", "logs")
        .prefetch_related("outputs")
        .order_by("created_at")
    )
    outputs = _preview_outputs(comparison, predictions)
    if not outputs:
        raise Http404("No preview")
    pictures = []
    for output in outputs:
        with output.file.open("rb") as handle:
            pictures.append((handle.read(), output.prediction.version.model.name))
    response = HttpResponse(images.side_by_side(pictures), content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=300"
    return response


@require_http_methods(["GET", "POST"])
def comparison_report(request, comparison_id):
    """Anyone who can see it may report it (app.views.reports)."""
    comparison = _get_comparison_for_user(request, comparison_id)
    return reports.report(request, comparison)


@login_required
@require_POST
def comparison_cancel(request, comparison_id):
    comparison = _get_comparison_for_user(request, comparison_id, owner_only=True)
    canceled = comparisons.cancel(comparison)
    if canceled:
        messages.info(request, f"Canceled {canceled} running prediction{'s' if canceled != 1 else ''}.")
    else:
        messages.info(request, "Nothing was running: every prediction had already ended.")
    return redirect(comparison)


@require_POST
def comparison_rerun(request, comparison_id):
    """The same input on the same versions, with the same seed or a new one."""
    comparison = _get_comparison_for_user(request, comparison_id)
    if not can_run(request.user):
        return redirect("login")
    versions = [p.version for p in comparison.predictions.select_related("version__model").order_by("created_at")]
    seed = comparison.seed if request.POST.get("seed") == "same" else None
    try:
        rerun = start_comparison(
            request,
            versions,
            comparison.input,
            visibility=comparison.visibility if comparison.owner_id == request.user.pk else None,
            seed=seed,
            extra_input=comparison.extra_input,
        )
    except schema.InputError as exc:
        messages.error(request, f"Could not rerun: {exc}")
        return redirect(comparison)
    except limits.RunRefused as exc:
        messages.error(request, f"Could not rerun: {exc.detail}")
        return redirect(comparison)
    return redirect(rerun)


@login_required
@require_POST
def comparison_add_version(request, comparison_id):
    comparison = _get_comparison_for_user(request, comparison_id, owner_only=True)
    version = Version.objects.select_related("model").filter(pk=request.POST.get("version", "")).first()
    if version is None:
        messages.error(request, "Pick a version to add.")
        return redirect(comparison)
    try:
        comparisons.add_version(comparison, version)
    except schema.InputError as exc:
        messages.error(request, f"Could not add it: {exc}")
    except limits.RunRefused as exc:
        messages.error(request, f"Could not add it: {exc.detail}")
    return redirect(comparison)


@login_required
@require_POST
def comparison_visibility(request, comparison_id):
    comparison = _get_comparison_for_user(request, comparison_id, owner_only=True)
    form = VisibilityForm(request.POST)
    if form.is_valid():
        comparison.set_visibility(form.cleaned_data["visibility"])
        messages.success(request, f"Now {Visibility(comparison.visibility).label.lower()}.")
    return redirect(next_url(request, comparison.get_absolute_url()))


@login_required
@require_POST
def comparison_delete(request, comparison_id):
    """Delete the comparison with its predictions and their images."""
    comparison = _get_comparison_for_user(request, comparison_id, owner_only=True)
    comparisons.cancel(comparison)
    comparison.delete()
    messages.success(request, "Comparison deleted, with its predictions and images.")
    return redirect("profile")
