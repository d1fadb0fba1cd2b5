"""Prompt sets and benchmark runs: the sets' page, the form that starts a run,
a run's page (/b/<id>: progress, results, every image per prompt) and the
side-by-side of a watched model's new version against its reference run."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from app.core import pagination
from app.forms import BenchmarkForm, PromptSetForm, VisibilityForm
from app.models import Access, BenchmarkRun, Model, Prediction, PromptSet, Version, Visibility, Watch
from app.services import benchmarks, prompt_sets
from app.views.access import get_for_user, owns
from app.views.cards import TILE_FIELDS, with_tiles

STRIP_PAGE = 20
RUNS_PAGE = 30


def _get_run_for_user(request, run_id, owner_only=False):
    """The run if `request.user` may see it (or act on it: `owner_only`);
    else 404, or Gone when moderators hid it."""
    runs = BenchmarkRun.objects.select_related("owner", "prompt_set", "baseline")
    return get_for_user(runs, run_id, request.user, owner_only)


def _strip(run, versions, user, page_number):
    """One page of the run's prompts x seeds, each with its image per version,
    in a fixed number of queries whatever the page size."""
    comparisons = run.comparisons.select_related("benchmark_prompt").order_by("benchmark_prompt__position", "seed")
    page = Paginator(comparisons, STRIP_PAGE).get_page(page_number)
    rows = list(page.object_list)
    found = list(
        Prediction.objects.filter(comparison__in=[row.pk for row in rows])
        .only(*TILE_FIELDS, "comparison_id", "hidden_at")
        .order_by("created_at")
    )
    with_tiles(found, user, versions)
    latest = {(p.comparison_id, p.version_id): p for p in found}  # a rerun after a failure comes last
    for row in rows:
        row.cells = []
        for version in versions:
            prediction = latest.get((row.pk, version.pk))
            withheld = prediction is not None and prediction.access_for(user) != Access.OPEN
            row.cells.append((version, None if withheld else prediction, withheld))
    return page, rows


@require_GET
@vary_on_headers("HX-Request")
def benchmark(request, run_id):
    run = _get_run_for_user(request, run_id)
    versions = benchmarks.versions_of(run)
    summary = benchmarks.summary(run, versions)
    is_owner = owns(request.user, run)
    context = {
        "run": run,
        "summary": summary,
        "versions": versions,
        "is_owner": is_owner,
        "prompt_count": run.planned // max(1, len(run.seeds)),
    }
    if request.htmx and request.GET.get("part") == "progress":
        response = TemplateResponse(request, "benchmark.html#progress", context)
        if summary["state"] in ("finished", "stopped"):
            response.status_code = 286  # htmx stops polling
        return response
    page, rows = _strip(run, versions, request.user, request.GET.get("page"))
    watched = set()
    if is_owner:
        watched = set(Watch.objects.filter(user=request.user, run=run).values_list("model_id", flat=True))
    models = {version.model_id: version.model for version in versions}
    context.update(
        page=page,
        rows=rows,
        visibility_form=VisibilityForm(initial={"visibility": run.visibility}),
        watchable=[(model, model.pk in watched) for model in models.values()],
        skipped=list(run.skipped.values())[:5],
    )
    return TemplateResponse(request, "benchmark.html", context)


@login_required
@require_GET
def benchmarks_list(request):
    runs = BenchmarkRun.objects.filter(owner=request.user).select_related("prompt_set")
    page = pagination.paginate(runs, request.GET.get("cursor"), RUNS_PAGE)
    return TemplateResponse(request, "benchmarks.html", {"page": page, **pagination_links(request, page)})


def pagination_links(request, page):
    base = request.path
    return {
        "next_url": f"{base}?cursor={page.next_cursor}" if page.next_cursor else "",
        "previous_url": f"{base}?cursor={page.previous_cursor}" if page.previous_cursor else "",
        "first_url": base,
    }


def _available_versions():
    return [
        version
        for version in Version.objects.select_related("model").defer("openapi_schema").order_by("model__name")
        if version.available and version.model.visibility == Model.Visibility.PUBLIC
    ]


@login_required
@require_http_methods(["GET", "POST"])
def benchmark_new(request):
    prompt_sets.ensure_shipped()
    sets = PromptSet.objects.usable_by(request.user).order_by("owner_id", "name")
    versions = _available_versions()
    form = BenchmarkForm(sets, versions, request.POST or None, initial={"prompt_set": sets.first()})
    estimate = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        prompt_count = len(
            benchmarks.plan_prompts(
                data["prompt_set"].pk, data["category_name"], data["sample_size"], data["sample_seed"] or 0
            )
        )
        estimate = benchmarks.estimate(request.user, data["chosen_versions"], prompt_count, data["seed_count"])
        if request.POST.get("action") == "start":
            try:
                run = benchmarks.create(
                    request.user,
                    data["prompt_set"],
                    data["chosen_versions"],
                    category=data["category_name"],
                    sample_size=data["sample_size"],
                    sample_seed=data["sample_seed"],
                    seed_count=data["seed_count"],
                    input=form.run_input(),
                    visibility=data["visibility"],
                    title=data["title"],
                )
            except benchmarks.RunError as exc:
                for field, errors in exc.errors.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(
                    request, f"Benchmark started: {run.planned:,} prompts x seeds on {run.versions.count()} versions."
                )
                return redirect(run)
    status = 422 if request.method == "POST" and form.errors else 200
    return TemplateResponse(
        request, "benchmark_new.html", {"form": form, "estimate": estimate, "versions": versions}, status=status
    )


@login_required
@require_POST
def benchmark_stop(request, run_id):
    run = _get_run_for_user(request, run_id, owner_only=True)
    canceled = benchmarks.stop(run)
    messages.info(
        request, f"Stopped; {canceled} prediction{'s' if canceled != 1 else ''} canceled. Go on when you like."
    )
    return redirect(run)


@login_required
@require_POST
def benchmark_resume(request, run_id):
    run = _get_run_for_user(request, run_id, owner_only=True)
    benchmarks.resume(run)
    messages.info(request, "Going on: what is missing, failed or canceled starts again.")
    return redirect(run)


@login_required
@require_POST
def benchmark_visibility(request, run_id):
    run = _get_run_for_user(request, run_id, owner_only=True)
    form = VisibilityForm(request.POST)
    if form.is_valid():
        benchmarks.set_visibility(run, form.cleaned_data["visibility"])
        messages.success(request, f"Now {Visibility(run.visibility).label.lower()}, with all its predictions.")
    return redirect(run)


@login_required
@require_POST
def benchmark_watch(request, run_id):
    run = _get_run_for_user(request, run_id, owner_only=True)
    model_id = request.POST.get("model", "")
    model = Model.objects.filter(pk=int(model_id)).first() if model_id.isdigit() and len(model_id) < 18 else None
    if model is None:
        messages.error(request, "Pick a model of this run to watch.")
        return redirect(run)
    if request.POST.get("action") == "unwatch":
        benchmarks.unwatch(request.user, model)
        messages.info(request, f"No longer watching {model}.")
        return redirect(run)
    try:
        benchmarks.watch(request.user, run, model)
    except benchmarks.RunError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Watching {model}: a new version runs these prompts and seeds, side by side.")
    return redirect(run)


@require_GET
def benchmark_versus(request, run_id):
    """Per prompt and seed: the reference run's image of the old version next
    to this run's image of the new one."""
    run = _get_run_for_user(request, run_id)
    old, new = benchmarks.versus_version(run)
    if old is None:
        raise Http404("This run repeats no reference run")
    page, rows = _strip(run, [new], request.user, request.GET.get("page"))
    reference = run.baseline
    olds = {
        (c.benchmark_prompt_id, c.seed): c.pk
        for c in reference.comparisons.filter(benchmark_prompt_id__in=[row.benchmark_prompt_id for row in rows])
    }
    before = list(
        Prediction.objects.filter(comparison__in=list(olds.values()), version=old)
        .only(*TILE_FIELDS, "comparison_id", "hidden_at")
        .order_by("created_at")
    )
    with_tiles(before, request.user, [old])
    before_of = {p.comparison_id: p for p in before}
    reference_open = reference.access_for(request.user) == Access.OPEN
    for row in rows:
        prediction = before_of.get(olds.get((row.benchmark_prompt_id, row.seed)))
        row.before = (
            prediction if reference_open and prediction and prediction.access_for(request.user) == Access.OPEN else None
        )
    context = {"run": run, "reference": reference, "old": old, "new": new, "page": page, "rows": rows}
    return TemplateResponse(request, "benchmark_versus.html", context)


@require_http_methods(["GET", "POST"])
def prompt_set_list(request):
    """The shipped sets with their licences, the user's own, and a form to add one."""
    prompt_sets.ensure_shipped()
    form = PromptSetForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"/account/login/?next={request.path}")
        if form.is_valid():
            try:
                created = prompt_sets.create(request.user, form.cleaned_data["name"], form.cleaned_data["rows"])
            except prompt_sets.SetError as exc:
                for field, errors in exc.errors.items():
                    form.add_error(field if field == "name" else form.cleaned_data["where"], errors)
            else:
                messages.success(request, f"{created.name}: {created.prompts.count()} prompts saved.")
                return redirect("prompt-sets")
        status = 422
    sets = list(PromptSet.objects.usable_by(request.user).order_by("owner_id", "name"))
    for prompt_set in sets:
        prompt_set.category_counts = prompt_sets.categories(prompt_set)
        prompt_set.size = sum(count for _, count in prompt_set.category_counts)
    return TemplateResponse(request, "prompt_sets.html", {"sets": sets, "form": form}, status=status)
