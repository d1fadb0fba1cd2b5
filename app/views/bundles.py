"""Reproducibility pages (docs/bundles.md): a bundle's download, the import
page, a reproduction's results (per image: identical, close or different),
"re-run on the latest version" and the prediction page's reproducibility check."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from app.core import schema
from app.models import BenchmarkRun, Comparison, Grid, Prediction, Reproduction, Verdict
from app.services import bundles, limits, reproductions
from app.views.access import get_for_user, next_url, owns
from app.views.files import file_response

KINDS = {"prediction": Prediction, "comparison": Comparison, "grid": Grid, "benchmark": BenchmarkRun}


def _get_item_for_user(request, kind, item_id, owner_only=False):
    """The prediction, comparison, grid or benchmark run if `request.user` may
    open it (or owns it: `owner_only`); else 404, or Gone when moderators hid it."""
    if kind not in KINDS:
        raise Http404("Nothing of that kind")
    return get_for_user(KINDS[kind], item_id, request.user, owner_only)


def _get_reproduction_for_user(request, reproduction_id):
    return get_for_user(Reproduction, reproduction_id, request.user, owner_only=True)


def bundle_download(item, viewer):
    name, data = bundles.export(item, viewer)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def export(request, kind, item_id):
    item = _get_item_for_user(request, kind, item_id)
    return bundle_download(item, request.user)


class ImportForm(forms.Form):
    bundle = forms.FileField(
        label="Bundle (.zip)",
        help_text="A bundle exported from a Lightbox: its runs start again here, as yours (your limits apply).",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )


def read_upload(uploaded):
    """The uploaded file's bytes, or raise BundleError past the size limit."""
    if uploaded.size > settings.BUNDLE_MAX_BYTES:
        raise bundles.BundleError(
            f"The bundle is larger than {settings.BUNDLE_MAX_BYTES // (1024 * 1024)} MB (LIGHTBOX_BUNDLE_MAX_BYTES)."
        )
    return uploaded.read(settings.BUNDLE_MAX_BYTES + 1)


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                reproduction = bundles.import_bundle(request.user, read_upload(form.cleaned_data["bundle"]))
            except bundles.BundleError as exc:
                form.add_error("bundle", str(exc))
            except limits.RunRefused as exc:
                form.add_error("bundle", f"Your limits refuse these runs now: {exc.detail}")
                status = exc.status
            else:
                return redirect(reproduction)
        status = 422 if status == 200 else status
    recent = request.user.reproductions.all()[:10]
    return TemplateResponse(request, "bundle_import.html", {"form": form, "recent": recent}, status=status)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def reproduction(request, reproduction_id):
    found = _get_reproduction_for_user(request, reproduction_id)
    items = reproductions.settle(found)
    pending = any(item.verdict == Verdict.PENDING for item in items)
    context = {
        "reproduction": found,
        "items": items,
        "summary": reproductions.summary(items),
        "pending": pending,
        "close": settings.REPRO_CLOSE,
    }
    if request.htmx:
        response = TemplateResponse(request, "reproduction.html#results", context)
        if not pending:
            response.status_code = 286  # htmx stops polling
        return response
    return TemplateResponse(request, "reproduction.html", context)


@login_required
@require_POST
def rerun_latest(request, kind, item_id):
    """The run again on each model's latest version; opens the diff view."""
    item = _get_item_for_user(request, kind, item_id)
    if isinstance(item, Prediction):
        raise Http404("Re-run on the latest version is for comparisons, grids and benchmark runs")
    try:
        found = reproductions.rerun_on_latest(item, request.user)
    except schema.InputError as exc:
        messages.error(request, f"Could not re-run: {exc}")
        return redirect(item)
    except limits.RunRefused as exc:
        messages.error(request, f"Could not re-run: {exc.detail}")
        return redirect(item)
    return redirect(found)


@login_required
@require_POST
def repro_check(request, prediction_id):
    """Run the prediction again with its stored input; the page shows the verdict."""
    prediction = _get_item_for_user(request, "prediction", prediction_id, owner_only=True)
    target = next_url(request, prediction.get_absolute_url())
    if prediction.status != Prediction.Status.SUCCEEDED:
        messages.error(request, "Only a succeeded prediction can be checked: there is no image to compare with.")
        return redirect(target)
    try:
        reproductions.start_check(prediction, request.user)
    except schema.InputError as exc:
        messages.error(request, "Could not run it again: " + "; ".join(" ".join(v) for v in exc.errors.values()))
    except limits.RunRefused as exc:
        messages.error(request, f"Could not run it again: {exc.detail}")
    else:
        messages.success(request, "Running it again with the same input and seed; the result shows here when done.")
    return redirect(target)


@require_GET
def repro_status(request, prediction_id):
    """The prediction page's check line (htmx polls it while the re-run runs)."""
    prediction = _get_item_for_user(request, "prediction", prediction_id)
    check = reproductions.last_check(prediction)
    is_owner = owns(request.user, prediction)
    response = TemplateResponse(
        request, "partials/repro_check.html", {"prediction": prediction, "check": check, "is_owner": is_owner}
    )
    if check is None or check.verdict != Verdict.PENDING:
        response.status_code = 286
    return response


@login_required
@require_GET
def expected_image(request, reproduction_id, position):
    """The image a reproduction's item should reproduce (from the bundle): its importer's only."""
    found = _get_reproduction_for_user(request, reproduction_id)
    item = get_object_or_404(found.items, position=position)
    if not item.expected_file:
        raise Http404("No such image")
    try:
        handle = item.expected_file.open("rb")
    except OSError:
        raise Http404("No such image") from None
    response = file_response(handle, "image/png", f"before-{position}.png")
    response["Cache-Control"] = "private, max-age=600"
    return response
