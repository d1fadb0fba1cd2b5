"""The playground: one prompt, several model versions, one comparison."""

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from app.core import schema
from app.forms import PlaygroundForm, advanced_name
from app.models import Comparison, Version
from app.services import limits
from app.views.running import can_run, refused, start_comparison

# The guide's five Stable Diffusion models, by model name; then the tiny ones.
GUIDE_MODELS = ("sdxl", "sd-1.5", "sd-2.1", "sdxl-turbo", "sd-turbo", "stable-diffusion")
TINY_MODELS = ("tiny-sd", "tiny-sdxl")


def default_versions(versions):
    """The latest available version of each guide model, else the tiny models,
    else the first two that are available."""
    latest = {}
    for version in versions:
        if version.available:
            latest.setdefault(version.model_id, version)
    available = list(latest.values())
    for names in (GUIDE_MODELS, TINY_MODELS):
        chosen = [version for version in available if version.model.name in names]
        if chosen:
            return chosen[:5]
    return available[:2]


def _all_versions():
    return list(Version.objects.select_related("model").order_by("model__owner", "model__name", "-created_at"))


def _remix_source(request):
    """(versions ids, initial values) of the comparison named by ?remix=."""
    comparison_id = request.GET.get("remix")
    if not comparison_id:
        return None
    comparison = get_object_or_404(Comparison.objects.accessible_to(request.user), pk=comparison_id)
    versions = [p.version for p in comparison.predictions.select_related("version__model").order_by("created_at")]
    initial = dict(comparison.input)
    if comparison.seed is not None:
        initial["seed"] = comparison.seed
    for version in versions:
        for field, value in comparison.extra_input.get(version.id, {}).items():
            initial[advanced_name(version, field)] = value
    # Images are not put back into a file input; the remix starts without them.
    initial.pop("image", None)
    initial.pop("mask", None)
    return [version.id for version in versions], initial


def _initial_from_query(request):
    return {key: value for key, value in request.GET.items() if key not in ("version", "remix") and value != ""}


def _render(request, versions, chosen, form, status=200):
    context = {
        "versions": versions,
        "chosen_ids": {version.id for version in chosen},
        "form": form,
        "can_run": can_run(request.user),
    }
    template = "playground.html#fields" if request.htmx and request.htmx.target == "fields" else "playground.html"
    return TemplateResponse(request, template, context, status=status)


@require_GET
@vary_on_headers("HX-Request")
def playground(request):
    # The stored state: the beat refreshes it (tasks.predictions.refresh_versions).
    versions = _all_versions()
    by_id = {version.id: version for version in versions}
    remix = _remix_source(request)
    if remix:
        ids, initial = remix
    else:
        ids, initial = request.GET.getlist("version"), _initial_from_query(request)
    chosen = [by_id[i] for i in ids if i in by_id] if ids else default_versions(versions)
    return _render(request, versions, chosen, PlaygroundForm(chosen, initial=initial))


@require_POST
def run(request):
    if not can_run(request.user):
        return redirect_to_login("/")
    versions = _all_versions()
    ids = set(request.POST.getlist("version"))
    chosen = [version for version in versions if version.id in ids]
    form = PlaygroundForm(chosen, request.POST, request.FILES)
    if not chosen:
        form.add_error(None, "Pick at least one model version.")
    if form.is_valid():
        try:
            comparison = start_comparison(
                request,
                chosen,
                form.common_input(),
                visibility=form.visibility(),
                seed=form.cleaned_data.get("seed"),
                extra_input=form.extra_input(),
            )
        except schema.InputError as exc:
            for model, messages in exc.errors.items():
                form.add_error(None, f"{model}: {' '.join(messages)}")
        except limits.RunRefused as exc:
            form.add_error(None, exc.detail)
            return refused(_render(request, versions, chosen, form), exc)
        else:
            return redirect(comparison)
    return _render(request, versions, chosen, form, status=400)
