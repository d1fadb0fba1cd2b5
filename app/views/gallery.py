"""The gallery of public predictions, and the model pages."""

from urllib.parse import urlencode

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from app.core import pagination
from app.models import Model, Prediction, Version
from app.views.cards import TILE_FIELDS, with_tiles

PAGE_SIZE = 24
STATUS_CHOICES = [
    ("succeeded", "Succeeded"),
    ("any", "Any status"),
    ("processing", "Running"),
    ("failed", "Failed"),
    ("canceled", "Canceled"),
]


def _filters(request):
    """The gallery's filters from the query string, cleaned."""
    status = request.GET.get("status", "succeeded")
    return {
        "q": request.GET.get("q", "").strip()[:200],
        "model": request.GET.get("model", ""),
        "version": request.GET.get("version", ""),
        "status": status if status in dict(STATUS_CHOICES) else "succeeded",
        "mine": request.GET.get("mine") == "1" and request.user.is_authenticated,
    }


def _filtered(request, filters):
    queryset = Prediction.objects.only(*TILE_FIELDS)
    queryset = queryset.filter(owner=request.user) if filters["mine"] else queryset.public()
    if filters["status"] == "processing":
        queryset = queryset.active()
    elif filters["status"] != "any":
        queryset = queryset.filter(status=filters["status"])
    if filters["model"].count("/") == 1:
        owner, name = filters["model"].split("/")
        queryset = queryset.filter(version__model__owner=owner, version__model__name=name)
    if filters["version"]:
        queryset = queryset.filter(version_id=filters["version"])
    if filters["q"]:
        queryset = queryset.search(filters["q"])
    return queryset


def _page_url(filters, cursor):
    params = {key: value for key, value in filters.items() if value and key != "mine"}
    if filters["mine"]:
        params["mine"] = "1"
    if params.get("status") == "succeeded":
        params.pop("status")
    if cursor:
        params["cursor"] = cursor
    return "?" + urlencode(params) if params else "?"


@require_GET
@vary_on_headers("HX-Request")
def gallery(request):
    filters = _filters(request)
    page = pagination.paginate(_filtered(request, filters), request.GET.get("cursor"), PAGE_SIZE)
    versions = list(
        Version.objects.select_related("model")
        .defer("openapi_schema")
        .order_by("model__owner", "model__name", "-created_at")
    )
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
        return TemplateResponse(request, "gallery.html#more", {**context, "oob_pager": True})
    if partial and request.htmx.target == "results":
        return TemplateResponse(request, "gallery.html#results", context)
    context.update(
        versions=versions,
        models=list(dict.fromkeys(version.model for version in versions)),
        status_choices=STATUS_CHOICES,
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
    return TemplateResponse(request, "model.html", context)
