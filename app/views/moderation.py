"""The moderation page (/moderation): the review queue of reported predictions
and comparisons, with large previews, the reports' reasons and who filed them,
and one form per item to approve, hide, mark NSFW or delete its images. Only
moderators (app.core.roles.is_moderator) get it; app.services.moderation acts,
writes the audit trail and tells the owner (and, if asked, the reporters)."""

from collections import Counter
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db.models import Exists, OuterRef, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from app.core.roles import is_moderator
from app.forms import DecisionForm
from app.models import ArenaVote, Comparison, Output, Prediction, Report
from app.services import arena as arena_service
from app.services import moderation

QUEUE_SIZE = 50
KINDS = {"prediction": Prediction, "comparison": Comparison}
SHOWN = {"all": "Everything", "prediction": "Predictions", "comparison": "Comparisons"}
ACTIONS = {
    "approve": (moderation.approve, "Approved: its reports are dismissed"),
    "hide": (moderation.hide, "Hidden"),
    "nsfw": (moderation.mark_nsfw, "Marked NSFW"),
    "delete": (moderation.delete_outputs, "Its images are deleted"),
}


def moderator_required(view):
    """Moderators only: others are asked to log in, or get 404 (the page is not theirs to know of)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_moderator(request.user):
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return wrapped


def _filters(request):
    shown = request.GET.get("show", "all")
    return {"q": request.GET.get("q", "").strip()[:200], "show": shown if shown in SHOWN else "all"}


def _queue(filters):
    """Reported items, most reported and then most recently reported first."""
    items = []
    if filters["show"] in ("all", "prediction"):
        predictions = Prediction.objects.with_open_reports().select_related("owner", "version__model")
        if filters["q"]:
            predictions = predictions.search(filters["q"])
        items += list(predictions.defer("version__openapi_schema", "logs").order_by("-open_reports")[:QUEUE_SIZE])
    if filters["show"] in ("all", "comparison"):
        comparisons = Comparison.objects.with_open_reports().select_related("owner")
        if filters["q"]:
            comparisons = comparisons.filter(input__prompt__icontains=filters["q"])
        items += list(comparisons.order_by("-open_reports")[:QUEUE_SIZE])
    items.sort(key=lambda item: (item.open_reports, item.last_reported), reverse=True)
    return _with_reports_and_previews(items[:QUEUE_SIZE])


def _with_reports_and_previews(items):
    """Give each item its open reports (`open`, each marked `trusted` when it
    counts toward hiding), the reasons counted (`reason_counts`) and its
    previews (`previews`: every image of a prediction, the first of each
    prediction of a comparison), in two queries."""
    predictions = {i.pk for i in items if isinstance(i, Prediction)}
    comparisons = {i.pk for i in items if isinstance(i, Comparison)}
    trusted = moderation.trusted_reporters().filter(pk=OuterRef("reporter"))
    reports = (
        Report.objects.filter(Q(prediction__in=predictions) | Q(comparison__in=comparisons), state=Report.State.OPEN)
        .select_related("reporter")
        .annotate(trusted=Exists(trusted))
        .order_by("-created_at")
    )
    grouped = {}
    for report in reports:
        grouped.setdefault(report.prediction_id or report.comparison_id, []).append(report)
    outputs = (
        Output.objects.filter(Q(prediction__in=predictions) | Q(prediction__comparison__in=comparisons, index=0))
        .select_related("prediction__version__model")
        .defer("prediction__logs", "prediction__version__openapi_schema")
        .order_by("prediction__created_at", "index")
    )
    previews = {}
    for output in outputs:
        if output.prediction_id in predictions:
            previews.setdefault(output.prediction_id, []).append(output)
        if output.prediction.comparison_id in comparisons and output.index == 0:
            previews.setdefault(output.prediction.comparison_id, []).append(output)
    for item in items:
        item.kind = item._meta.model_name
        item.open = grouped.get(item.pk, [])
        item.reason_counts = Counter(report.get_reason_display() for report in item.open).most_common()
        item.accounts = len({r.reporter_id for r in item.open if r.reporter_id})
        item.trusted_reporters = len({r.reporter_id for r in item.open if r.trusted})
        item.anonymous_reports = sum(1 for r in item.open if r.reporter_id is None)
        item.previews = previews.get(item.pk, [])
        item.form = DecisionForm(auto_id=f"{item.kind}-{item.pk}-%s")
    return items


def _queue_response(request, filters, failed=None, status=200):
    items = _queue(filters)
    if failed is not None:
        # The item whose decision was refused keeps its form with the errors, at the top.
        item, form = failed
        items = [i for i in items if not (type(i) is type(item) and i.pk == item.pk)]
        (item,) = _with_reports_and_previews([item])
        item.form = form
        items.insert(0, item)
    context = {"items": items, "filters": filters, "shown_choices": SHOWN, "queue_url": _queue_url(filters)}
    # Arena voters whose choices look random or constant (app.services.arena).
    context["arena_voters"] = arena_service.flagged_voters()
    context["arena_excluded"] = arena_service.excluded_voters()
    return TemplateResponse(request, "moderation.html", context, status=status)


def _queue_url(filters):
    params = {key: value for key, value in filters.items() if value and value != "all"}
    return reverse("moderation") + ("?" + urlencode(params) if params else "")


@require_GET
@moderator_required
def queue(request):
    return _queue_response(request, _filters(request))


@require_POST
@moderator_required
def decide(request, kind, item_id):
    """One decision on one item. Deleting images asks again first (a page of
    its own, so it holds without JavaScript); nothing changes until then."""
    model = KINDS.get(kind)
    if model is None:
        raise Http404("No such kind")
    item = get_object_or_404(model.objects.select_related("owner"), pk=item_id)
    filters = {"q": request.POST.get("q", "").strip()[:200], "show": request.POST.get("show", "all")}
    filters["show"] = filters["show"] if filters["show"] in SHOWN else "all"
    form = DecisionForm(request.POST, auto_id=f"{kind}-{item_id}-%s")
    if not form.is_valid():
        return _queue_response(request, filters, failed=(item, form), status=400)
    decision, reason = form.cleaned_data["decision"], form.cleaned_data["reason"]
    tell_reporters = form.cleaned_data["tell_reporters"]
    if decision == "delete" and request.POST.get("confirmed") != "yes":
        (item,) = _with_reports_and_previews([item])
        context = {"item": item, "form": form, "filters": filters, "queue_url": _queue_url(filters)}
        return TemplateResponse(request, "moderation_confirm.html", context)
    action, done = ACTIONS[decision]
    action(item, request.user, reason, tell_reporters=tell_reporters)
    told = "its owner and its reporters were told" if tell_reporters else "its owner was told"
    owner_note = f"; {told}" if item.owner_id else ""
    messages.success(request, f"{done}: {moderation.described(item)}{owner_note}.")
    return redirect(_queue_url(filters))


# --- Arena voters (issue 15) ---------------------------------------------------------

ARENA_ACTIONS = {"exclude": "excluded from the leaderboards", "include": "counted again", "remove": "deleted"}


@require_POST
@moderator_required
def arena_voter(request):
    """Exclude a flagged voter's votes (one action; the leaderboards are
    fitted again), count them again, or delete them; always audited."""
    voter_key = request.POST.get("voter", "")[:64]
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "").strip()[:500]
    if action not in ARENA_ACTIONS or not ArenaVote.objects.filter(voter_key=voter_key).exists():
        messages.error(request, "No such voter or action.")
        return redirect(reverse("moderation") + "#arena-voters")
    if not reason:
        messages.error(request, "Give a reason: it goes into the audit trail.")
        return redirect(reverse("moderation") + "#arena-voters")
    name = arena_service.describe_voter(voter_key)
    if action == "remove":
        count = arena_service.remove_votes(ArenaVote.objects.filter(voter_key=voter_key), request.user, reason)
    else:
        count = arena_service.set_excluded(voter_key, action == "exclude", request.user, reason)
    messages.success(request, f"{count} arena vote{'s' if count != 1 else ''} of {name} {ARENA_ACTIONS[action]}.")
    return redirect(reverse("moderation") + "#arena-voters")
