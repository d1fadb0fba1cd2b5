"""The comparison page: one card per version, updated by HTMX polling."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.core import schema
from app.forms import VisibilityForm
from app.models import Access, Comparison, Output, Version, Visibility
from app.services import comparisons, limits
from app.views import reports
from app.views.access import Gone, allowed_or_raise, gone_response, next_url
from app.views.cards import WithheldCard, attach_changes, card_response
from app.views.running import can_run, start_comparison


def _get_comparison_for_user(request, comparison_id, owner_only=False):
    """The comparison if `request.user` may see it (or act on it: `owner_only`);
    else 404, or Gone when moderators hid it."""
    comparison = get_object_or_404(Comparison.objects.select_related("owner"), pk=comparison_id)
    is_owner = request.user.is_authenticated and comparison.owner_id == request.user.pk
    if is_owner:
        return comparison
    if owner_only:
        raise Http404("No such comparison")
    return allowed_or_raise(comparison, request.user)


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
    try:
        comparison = _get_comparison_for_user(request, comparison_id)
    except Gone:
        return gone_response(request)
    cards, predictions = _predictions(comparison, request.user)
    is_owner = request.user.is_authenticated and comparison.owner_id == request.user.pk
    context = {"comparison": comparison, "is_owner": is_owner}
    card_id = request.GET.get("card")
    if request.htmx and card_id:
        card = next((card for card, p in zip(cards, predictions) if p.id == card_id), None)
        if card is None:
            raise Http404("No such card")
        return card_response(request, card, context=context)
    shown = {prediction.version_id for prediction in predictions}
    # The first safe image previews the link in chat apps, which fetch it
    # without a session: only from a prediction anyone may open.
    safe = [o for p in predictions if p.is_open_to_everyone for o in p.outputs.all() if o.rating == Output.Rating.SAFE]
    others = [v for v in Version.objects.select_related("model").defer("openapi_schema") if v.id not in shown]
    context.update(
        og_image=request.build_absolute_uri(safe[0].file.url) if safe else "",
        predictions=cards,
        active=any(not card.is_terminal for card in cards),
        # Only versions that can run may be added; offline ones are listed, disabled.
        other_versions=[version for version in others if version.available],
        other_offline=[version for version in others if not version.available],
        adjustments=_adjustments(comparison, cards),
        effective=_effective_values(comparison, cards),
        input_images=[(name, comparison.input[name]) for name in ("image", "mask") if comparison.input.get(name)],
        can_run=can_run(request.user),
        visibility_form=VisibilityForm(initial={"visibility": comparison.visibility}),
        **reports.report_context(request.user, comparison),
    )
    return TemplateResponse(request, "comparison.html", context)


@require_http_methods(["GET", "POST"])
def comparison_report(request, comparison_id):
    """Anyone who can see it may report it (app.views.reports)."""
    try:
        comparison = _get_comparison_for_user(request, comparison_id)
    except Gone:
        return gone_response(request)
    return reports.report(request, comparison)


@login_required
@require_POST
def comparison_cancel(request, comparison_id):
    comparison = _get_comparison_for_user(request, comparison_id, owner_only=True)
    canceled = comparisons.cancel(comparison)
    messages.info(request, f"Canceled {canceled} running prediction{'s' if canceled != 1 else ''}.")
    return redirect(comparison)


@require_POST
def comparison_rerun(request, comparison_id):
    """The same input on the same versions, with the same seed or a new one."""
    try:
        comparison = _get_comparison_for_user(request, comparison_id)
    except Gone:
        return gone_response(request)
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
        messages.error(request, "Could not rerun: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items()))
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
        messages.error(request, "Could not add it: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items()))
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
