"""The playground: one prompt, several model versions, one comparison; and
its settings restored from a PNG or A1111's parameters text."""

import re

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from app.core import schema, uploads
from app.forms import PlaygroundForm, RestoreForm, advanced_name
from app.models import Comparison, Output, Prediction, Version
from app.services import catalog, grids, limits
from app.services.comparisons import COMMON_FIELDS
from app.views.cards import TILE_FIELDS, with_tiles
from app.views.running import can_run, refused, start_comparison

# The guide's five Stable Diffusion models, by model name; then the tiny ones.
GUIDE_MODELS = ("sdxl", "sd-1.5", "sd-2.1", "sdxl-turbo", "sd-turbo", "stable-diffusion")
TINY_MODELS = ("tiny-sd", "tiny-sdxl")
# What a visitor without an account sees of what others made.
RECENT_COMPARISONS = 6


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


def _image_of(prediction, index, user):
    """Output `index` of `prediction` as a data URI, for "use as the image to
    start from"; None when there is none `user` may see in full."""
    output = next((o for o in prediction.outputs.all() if o.index == index), None)
    if output is None or output.rating == Output.Rating.BLOCKED or not output.shows_explicit_to(user):
        return None
    with output.file.open("rb") as handle:
        return uploads.clean_image(handle.read()).data_uri


# The prediction page's "use seed" and "use prompt" (?from=<id>&use=...):
# what they take; "all" takes everything, "remix" all but the seed.
USE_ONLY = {"seed": ("seed",), "prompt": ("prompt", "negative_prompt")}


def _as_initial(version, values):
    """A version's input as the form's initial values: its own fields under
    their "advanced" names."""
    initial = dict(values)
    for field in list(initial):
        if field not in COMMON_FIELDS and field not in ("prompt", "seed"):
            initial[advanced_name(version, field)] = initial.pop(field)
    return initial


def _source(request):
    """(version ids, initial values) of what the page starts from: a comparison
    (?remix=), one prediction (?from=, with ?use= seed, prompt, all or remix
    (all but the seed), with ?output=N its image N as the image to start
    from), or None. Images go back in as kept images (the form's
    `<name>_kept`), which file inputs cannot hold."""
    if request.GET.get("remix"):
        comparison = get_object_or_404(Comparison.objects.accessible_to(request.user), pk=request.GET["remix"])
        versions = [p.version for p in comparison.predictions.select_related("version__model").order_by("created_at")]
        initial = dict(comparison.input)
        if comparison.seed is not None:
            initial["seed"] = comparison.seed
        for version in versions:
            for field, value in comparison.extra_input.get(version.id, {}).items():
                initial[advanced_name(version, field)] = value
    elif request.GET.get("from"):
        prediction = get_object_or_404(
            Prediction.objects.accessible_to(request.user).select_related("version__model").prefetch_related("outputs"),
            pk=request.GET["from"],
        )
        use = request.GET.get("use", "all")
        versions, initial = [prediction.version], _as_initial(prediction.version, prediction.input)
        if use in USE_ONLY:
            # Only the seed or the prompt: onto the models the page starts with.
            versions = []
            initial = {name: initial[name] for name in USE_ONLY[use] if initial.get(name) not in (None, "")}
        elif use == "remix":
            initial.pop("seed", None)
        if request.GET.get("output", "").isdigit():
            initial.pop("mask", None)
            initial["image"] = _image_of(prediction, int(request.GET["output"]), request.user)
            initial.pop("seed", None)
    else:
        return None
    for name in ("image", "mask"):
        if name in initial:
            initial[f"{name}_kept"] = initial.pop(name) or ""
    return [version.id for version in versions], initial


def _initial_from_query(request):
    return {
        key: value
        for key, value in request.GET.items()
        if key not in ("version", "remix", "from", "output", "use") and not key.endswith("_kept") and value != ""
    }


def _recent_comparisons(user):
    """The latest public comparisons, each with the tiles of its public predictions."""
    recent = list(Comparison.objects.standalone().public().order_by("-created_at")[:RECENT_COMPARISONS])
    tiles = with_tiles(
        list(
            Prediction.objects.public()
            .filter(comparison__in=recent)
            .only(*TILE_FIELDS, "comparison_id")
            .order_by("created_at")
        ),
        user,
    )
    for comparison in recent:
        comparison.tiles = [tile for tile in tiles if tile.comparison_id == comparison.pk][:4]
    return [comparison for comparison in recent if comparison.tiles]


def _render(request, versions, chosen, form, status=200, left_out=(), restore_form=None, restored=None, grid=None):
    context = {
        "restore_form": restore_form or RestoreForm(),
        "restored": restored,
        "grid": grid or _grid_context(request, chosen),
        "available_versions": [version for version in versions if version.available],
        "offline_versions": [(version, catalog.how_to_start(version)) for version in versions if not version.available],
        "chosen_ids": {version.id for version in chosen},
        "left_out": left_out,
        "form": form,
        "can_run": can_run(request.user),
        # The browser checks and scales an image before sending it (static/js/app.js).
        "upload_max_bytes": settings.UPLOAD_IMAGE_MAX_BYTES,
        "upload_max_pixels": settings.UPLOAD_MAX_PIXELS,
    }
    if not context["can_run"]:
        context["recent"] = _recent_comparisons(request.user)
    template = "playground.html"
    if request.htmx and request.htmx.target in ("fields", "playground"):
        template = f"playground.html#{request.htmx.target}"
    elif request.htmx and request.htmx.target == "grid-preview":
        template = "playground.html#grid_preview"
    return TemplateResponse(request, template, context, status=status)


@require_GET
@vary_on_headers("HX-Request")
def playground(request):
    # The stored state: the beat refreshes it (tasks.predictions.refresh_versions).
    versions = _all_versions()
    by_id = {version.id: version for version in versions}
    source = _source(request)
    if source:
        ids, initial = source
    else:
        ids, initial = request.GET.getlist("version"), _initial_from_query(request)
    picked = [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
    # An offline version is never chosen for the visitor: it would stop the run.
    chosen = [version for version in picked if version.available] if picked else default_versions(versions)
    left_out = [version for version in picked if not version.available]
    return _render(request, versions, chosen, PlaygroundForm(chosen, initial=initial), left_out=left_out)


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


# What a restore says it filled, by input name.
RESTORED_LABELS = {
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "width": "width",
    "height": "height",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "scheduler": "scheduler",
    "seed": "seed",
}
SOURCE_NAMES = {"lightbox": "Lightbox", "a1111": "AUTOMATIC1111", "comfyui": "ComfyUI"}


def _model_matches(version, named):
    """Whether a PNG's model name (A1111: a checkpoint file's name, maybe with
    a "[hash]"; ours: "owner/name:version") names this version's model."""
    named = re.sub(r"\s*\[[0-9a-f]+\]$", "", named.strip().lower())  # A1111: "name [hash]"
    named = re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", named)  # a checkpoint's file name
    model = version.model
    return named in (model.name.lower(), str(model).lower(), version.ref.lower(), str(version).lower())


def _restored_versions(found, versions, current):
    """(versions, note) the restored settings go to: Lightbox's own version
    when it is here and can run, else the latest available version of the
    model the PNG names, else the models chosen before; the note says why
    the PNG's model was not taken ("" when it was, or named none)."""
    by_id = {version.id: version for version in versions}
    if found.version in by_id:
        version = by_id[found.version]
        if version.available:
            return [version], ""
        return current, f"{version.model} is offline; the models chosen before are kept."
    if found.model:
        named = [version for version in versions if _model_matches(version, found.model)]
        # The very version our own text names first, then the model's latest.
        named.sort(key=lambda version: version.ref.lower() != found.model.strip().lower())
        running = [version for version in named if version.available]
        if running:
            return running[:1], ""
        if named:
            return current, f"{named[0].model} is offline; the models chosen before are kept."
        return current, "Not in this Lightbox's catalog; the models chosen before are kept."
    return current, ""


def _restored_initial(found, chosen):
    """(initial values, filled labels, unmapped (label, value)) of `found`
    for a form of the `chosen` versions: a value only goes where a field
    takes it (a scheduler only where one of the models offers it)."""
    form = PlaygroundForm(chosen)
    initial, filled, unmapped = {}, [], list(found.unmapped)
    own = _as_initial(chosen[0], found.values) if found.source == "lightbox" and len(chosen) == 1 else found.values
    for name, value in own.items():
        if name in ("image", "mask") and name in form.file_names and isinstance(value, str):
            if value.startswith("data:image/"):
                initial[f"{name}_kept"] = value
                filled.append(name)
            continue
        field = form.fields.get(name)
        if field is None or name.endswith(("_kept", "_remove")) or name in ("publish", "mask_painted"):
            label = RESTORED_LABELS.get(name, name)
            unmapped.append((label, f"{str(value)[:80]}: none of the chosen models takes it"))
            continue
        choices = {str(choice) for choice, _ in getattr(field, "choices", [])}
        if choices and str(value) not in choices:
            models = ", ".join(version.model.name for version in chosen)
            unmapped.append((RESTORED_LABELS.get(name, name), f"{value}: not offered by {models}"))
            continue
        initial[name] = value
        filled.append(RESTORED_LABELS.get(name, field.label.lower() if field.label else name))
    return initial, filled, unmapped


@require_POST
def restore(request):
    """The playground filled from a PNG's generation parameters or pasted
    A1111 text (app.core.pngmeta): the model when it is in the catalog, each
    value a field takes, and a list of what could not be used. An htmx
    request (the playground's drop zone) gets the playground region."""
    if not can_run(request.user):
        return redirect_to_login("/")
    versions = _all_versions()
    by_id = {version.id: version for version in versions}
    current = [by_id[i] for i in dict.fromkeys(request.POST.getlist("version")) if i in by_id and by_id[i].available]
    current = current or default_versions(versions)
    restore_form = RestoreForm(request.POST, request.FILES)
    if not restore_form.is_valid():
        if request.htmx:
            # Only the panel, with its message: what was typed in the form stays.
            response = TemplateResponse(request, "playground.html#restore", {"restore_form": restore_form})
            response["HX-Retarget"], response["HX-Reswap"] = "#restore", "outerHTML"
            return response
        return _render(request, versions, current, PlaygroundForm(current), status=400, restore_form=restore_form)
    found = restore_form.cleaned_data["found"]
    chosen, model_note = _restored_versions(found, versions, current)
    if not chosen:
        restore_form.add_error(None, "No model can run right now, so there is no form to fill.")
        return _render(
            request,
            versions,
            chosen,
            PlaygroundForm(chosen),
            status=200 if request.htmx else 400,
            restore_form=restore_form,
        )
    initial, filled, unmapped = _restored_initial(found, chosen)
    if model_note:
        unmapped.insert(0, ("Model", f"{found.model[:120]}: {model_note}"))
    restored = {"source": SOURCE_NAMES[found.source], "filled": filled, "unmapped": unmapped, "models": chosen}
    return _render(
        request,
        versions,
        chosen,
        PlaygroundForm(chosen, initial=initial),
        restore_form=RestoreForm(),
        restored=restored,
    )


# --- grids (issue 14): the playground's "Make a grid" block ---
# An axis is chosen in one select: the model axis, prompt search/replace,
# seeds, or "field:<name>" for any other field of the chosen versions.
AXIS_KINDS = (
    ("version", "Models (the versions chosen above)"),
    ("prompt", "Prompt: search/replace"),
    ("seed", "Seeds"),
)
AXIS_HELP = {
    "version": "No values to type: one column per chosen version.",
    "prompt": "fox|cat|owl: the first word is found in the prompt, each replaces it.",
    "seed": "1, 2, 3 · 1-100 (+10) · 8 random",
}


def _axis_options(versions):
    """(value, label) of the select of one axis."""
    fields = [
        (f"field:{name}", name.replace("_", " "))
        for name, spec in grids.field_specs(versions).items()
        if name not in ("seed", "prompt") and not schema.is_file_input(spec)
    ]
    return [*AXIS_KINDS, *fields]


def _raw_axes(data):
    """[{"kind", "field", "text"}] of the axes filled in, X, Y, Z in order."""
    raw = []
    for name in ("x", "y", "z"):
        choice = str(data.get(f"axis_{name}_kind", ""))[:200]
        if not choice:
            continue
        kind, _, field = choice.partition(":")
        raw.append({"kind": kind, "field": field, "text": str(data.get(f"axis_{name}_text", ""))})
    return raw


def _grid_context(request, chosen, errors=None, found=None):
    data = request.POST if request.method == "POST" else request.GET
    rows = [
        {
            "name": name,
            "kind": str(data.get(f"axis_{name.lower()}_kind", ""))[:200],
            "text": str(data.get(f"axis_{name.lower()}_text", ""))[:2000],
            "errors": (errors or {}).get(f"axis_{name.lower()}", []),
        }
        for name in ("X", "Y", "Z")
    ]
    general = [m for key, messages in (errors or {}).items() if not key.startswith("axis_") for m in messages]
    return {
        "options": _axis_options(chosen),
        "help": AXIS_HELP,
        "rows": rows,
        "open": any(row["kind"] for row in rows),
        "errors": general,
        "preview": found,
        "cap": settings.GRID_MAX_CELLS,
    }


def _grid_form(request):
    versions = _all_versions()
    ids = set(request.POST.getlist("version"))
    chosen = [version for version in versions if version.id in ids]
    form = PlaygroundForm(chosen, request.POST, request.FILES)
    return versions, chosen, form


@require_POST
def grid_preview(request):
    """Cells, estimate and limits of the grid the form describes (an htmx
    partial; without JavaScript, the playground page with it shown)."""
    if not request.user.is_authenticated:
        return redirect_to_login("/")
    versions, chosen, form = _grid_form(request)
    errors, found = {}, None
    if form.is_valid():
        try:
            found = grids.preview(
                request.user, chosen, form.common_input(), _raw_axes(request.POST), extra_input=form.extra_input()
            )
        except grids.GridError as exc:
            errors = exc.errors
    grid = _grid_context(request, chosen, errors, found)
    grid["open"] = True
    # htmx swaps only 2xx answers: the partial says what is wrong either way.
    status = 400 if (errors or form.errors) and not request.htmx else 200
    return _render(request, versions, chosen, form, status=status, grid=grid)


@require_POST
def grid_new(request):
    if not request.user.is_authenticated:
        return redirect_to_login("/")
    versions, chosen, form = _grid_form(request)
    errors = {}
    if not chosen:
        form.add_error(None, "Pick at least one model version.")
    if form.is_valid():
        try:
            grid = grids.create(
                request.user,
                chosen,
                form.common_input(),
                _raw_axes(request.POST),
                seed=form.cleaned_data.get("seed"),
                visibility=form.visibility(),
                extra_input=form.extra_input(),
            )
        except grids.GridError as exc:
            errors = exc.errors
        else:
            return redirect(grid)
    grid = _grid_context(request, chosen, errors)
    grid["open"] = True
    return _render(request, versions, chosen, form, status=400, grid=grid)


# --- end grids ---
