"""The gallery of public predictions and comparisons, and the model pages."""

from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Q
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from app.core import pagination
from app.models import Comparison, Model, Prediction, Version
from app.views.cards import TILE_FIELDS, with_tiles

PAGE_SIZE = 24
STRIPS_PAGE_SIZE = 12
# What a gallery shows: single images, or comparisons as side-by-side strips.
SHOW_CHOICES = [("images", "Single images"), ("comparisons", "Comparisons")]
# Only for one's own items ("Only mine"): the public gallery shows finished images.
STATUS_CHOICES = [
    ("succeeded", "Succeeded"),
    ("any", "Any status"),
    ("processing", "Still running"),
    ("failed", "Failed"),
    ("canceled", "Canceled"),
]


def _filters(request):
    """The gallery's filters from the query string, cleaned. Visitors' lists
    show finished images only; the status filter is for one's own."""
    mine = request.GET.get("mine") == "1" and request.user.is_authenticated
    status = request.GET.get("status", "succeeded")
    show = request.GET.get("show", "images")
    return {
        "show": show if show in dict(SHOW_CHOICES) else "images",
        "q": request.GET.get("q", "").strip()[:200],
        "model": request.GET.get("model", ""),
        # Not offered as a filter (hashes mean nothing to visitors); model pages link with it.
        "version": request.GET.get("version", "")[:64],
        "status": status if mine and status in dict(STATUS_CHOICES) else "succeeded",
        "mine": mine,
    }


def _model_filter(filters):
    """Predictions of the model the filters name ("owner/name"), if they name one."""
    if filters["model"].count("/") != 1:
        return Q()
    owner, name = filters["model"].split("/")
    return Q(version__model__owner=owner, version__model__name=name)


def _filtered(request, filters):
    queryset = Prediction.objects.only(*TILE_FIELDS)
    queryset = queryset.filter(owner=request.user) if filters["mine"] else queryset.public()
    if filters["status"] == "processing":
        queryset = queryset.active()
    elif filters["status"] != "any":
        queryset = queryset.filter(status=filters["status"])
    queryset = queryset.filter(_model_filter(filters))
    if filters["version"]:
        queryset = queryset.filter(version_id=filters["version"])
    if filters["q"]:
        queryset = queryset.search(filters["q"])
    return queryset


def _filtered_comparisons(request, filters):
    queryset = Comparison.objects.standalone().only(
        "id", "owner_id", "input", "seed", "visibility", "hidden_at", "created_at"
    )
    queryset = queryset.filter(owner=request.user) if filters["mine"] else queryset.public()
    runs = Prediction.objects.filter(comparison=OuterRef("pk"))
    if not filters["mine"]:
        runs = runs.public()
    if filters["model"] or filters["version"]:
        runs = runs.filter(_model_filter(filters))
        if filters["version"]:
            runs = runs.filter(version_id=filters["version"])
        queryset = queryset.filter(Exists(runs))
    if filters["status"] == "processing":
        queryset = queryset.filter(Exists(runs.filter(status__in=Prediction.ACTIVE)))
    elif filters["status"] != "any":
        queryset = queryset.filter(Exists(runs.filter(status=filters["status"])))
    if filters["q"]:
        queryset = queryset.filter(input__prompt__icontains=filters["q"])
    return queryset


def with_strips(comparisons, user, versions):
    """Give each comparison of a page its predictions as tiles (`strip`), in
    creation order: those `user` may open by their own link, so a prediction
    moderators hid or its owner made private is not in the strip."""
    predictions = list(
        Prediction.objects.filter(comparison__in=[c.pk for c in comparisons])
        .accessible_to(user)
        .only(*TILE_FIELDS, "comparison_id", "hidden_at")
        .order_by("created_at")
    )
    with_tiles(predictions, user, versions)
    for comparison in comparisons:
        comparison.strip = [p for p in predictions if p.comparison_id == comparison.pk]
    return comparisons


def _page_url(filters, cursor):
    params = {key: value for key, value in filters.items() if value and key != "mine"}
    if filters["mine"]:
        params["mine"] = "1"
    if params.get("status") == "succeeded":
        params.pop("status")
    if params.get("show") == "images":
        params.pop("show")
    if cursor:
        params["cursor"] = cursor
    return "?" + urlencode(params) if params else "?"


@require_GET
@vary_on_headers("HX-Request")
def gallery(request):
    filters = _filters(request)
    versions = list(
        Version.objects.select_related("model")
        .defer("openapi_schema")
        .order_by("model__owner", "model__name", "-created_at")
    )
    if filters["show"] == "comparisons":
        page = pagination.paginate(_filtered_comparisons(request, filters), request.GET.get("cursor"), STRIPS_PAGE_SIZE)
        with_strips(page.items, request.user, versions)
    else:
        page = pagination.paginate(_filtered(request, filters), request.GET.get("cursor"), PAGE_SIZE)
        with_tiles(page.items, request.user, versions)
    context = {
        "page": page,
        "filters": filters,
        "next_url": _page_url(filters, page.next_cursor) if page.next_cursor else "",
        "previous_url": _page_url(filters, page.previous_cursor) if page.previous_cursor else "",
        "first_url": _page_url(filters, None),
    }
    # Going back to a pushed URL asks for the whole page again (history restore).
    partial = request.htmx and not request.htmx.history_restore_request
    if partial and request.GET.get("cursor") and request.htmx.target != "results":
        # Infinite scroll: the tiles go under those shown, which start at the
        # newest, so the pager below them offers older ones only.
        context["previous_url"] = ""
        return TemplateResponse(request, "gallery.html#more", {**context, "oob_pager": True})
    if partial and request.htmx.target == "results":
        context["status_choices"] = STATUS_CHOICES
        response = TemplateResponse(request, "gallery.html#results", context)
        # The address says what the filters say (not what the last keystroke
        # sent): reload and share show the same results.
        first = context["first_url"]
        response["HX-Push-Url"] = reverse("gallery") + ("" if first == "?" else first)
        return response
    context.update(
        versions=versions,
        models=list(dict.fromkeys(version.model for version in versions)),
        status_choices=STATUS_CHOICES,
        show_choices=SHOW_CHOICES,
        version_filtered=next((v for v in versions if v.id == filters["version"]), None),
    )
    return TemplateResponse(request, "gallery.html", context)


@require_GET
def models(request):
    found = (
        Model.objects.visible_to(request.user)
        .annotate(version_count=Count("versions", distinct=True))
        .order_by("owner", "name")
    )
    return TemplateResponse(request, "models.html", {"models": found})


def median(values):
    values = sorted(values)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _version_stats(model):
    """Per version: how many predictions, and the median predict time of the succeeded ones."""
    versions = list(
        model.versions.defer("openapi_schema")
        .annotate(
            prediction_count=Count("predictions"),
            timed_count=Count(
                "predictions",
                filter=Q(predictions__status=Prediction.Status.SUCCEEDED, predictions__predict_time__isnull=False),
            ),
        )
        .order_by("-created_at")
    )
    for version in versions:
        times = (
            Prediction.objects.filter(version=version, status=Prediction.Status.SUCCEEDED, predict_time__isnull=False)
            .order_by("predict_time")
            .values_list("predict_time", flat=True)
        )
        count = version.timed_count
        # The middle one or two rows only, not the whole column.
        start = max(0, (count - 1) // 2)
        version.median_predict_time = median(list(times[start : start + (2 - count % 2)])) if count else None
    return versions


@require_GET
def model(request, owner, name):
    found = get_object_or_404(Model.objects.visible_to(request.user), owner=owner, name=name)
    recent = list(
        Prediction.objects.public().for_model(found).filter(status=Prediction.Status.SUCCEEDED).only(*TILE_FIELDS)[:12]
    )
    versions = _version_stats(found)
    with_tiles(recent, request.user, versions)
    context = {"model": found, "versions": versions, "recent": recent}
    # Fine-tuning (trainapi): its fine-tunes, each with the base it was trained from.
    context["fine_tunes"] = found.versions.filter(base__isnull=False).select_related("base__model")
    return TemplateResponse(request, "model.html", context)
