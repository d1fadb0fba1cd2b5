"""The Fine-tune page (/fine-tune) and a training's page (/t/<id>): start a
training from a base version and images, follow its steps and loss live, cancel
it, and open the comparison of base and fine-tune it starts on success."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from app.core import logs
from app.core.schema import InputError
from app.forms import FineTuneForm
from app.models import Model, Training, Version
from app.services import limits, trainings
from app.views.access import get_for_user

UPLOAD_READ_LIMIT = 80 * 1024 * 1024
COMPARISON_WAIT = 60


def _trainable_versions(user):
    """Base versions a user may fine-tune: trainable, not a fine-tune, visible."""
    visible = Model.objects.visible_to(user)
    versions = Version.objects.filter(model__in=visible, base__isnull=True).select_related("model")
    return [version for version in versions if version.trainable]


def _get_training_for_user(request, training_id):
    rows = Training.objects.select_related("version__model", "destination", "new_version")
    return get_for_user(rows, training_id, request.user, owner_only=True)


@login_required
@require_http_methods(["GET", "POST"])
def fine_tune(request):
    versions = _trainable_versions(request.user)
    by_id = {version.id: version for version in versions}
    initial = {"base": request.GET.get("base"), "steps": request.GET.get("steps")}
    form = FineTuneForm(versions, request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        version = by_id[form.cleaned_data["base"]]
        files_given = [(f.name, f.read(UPLOAD_READ_LIMIT)) for f in form.cleaned_data["images"]]
        given = {"token_string": form.cleaned_data["trigger_word"]}
        if form.cleaned_data["steps"]:
            given["max_train_steps"] = form.cleaned_data["steps"]
        try:
            with transaction.atomic():
                destination = _own_model(request.user, form.cleaned_data["destination"])
                training = trainings.start(
                    version, destination, given, owner=request.user, files_given=files_given, source="web"
                )
        except trainings.Refused as exc:
            form.add_error("destination" if exc.field == "destination" else "base", exc.detail)
        except InputError as exc:
            field_names = {"input_images": "images", "token_string": "trigger_word", "max_train_steps": "steps"}
            for field, messages in exc.errors.items():
                form.add_error(field_names.get(field), " ".join(messages))
        except limits.RunRefused as exc:
            form.add_error(None, exc.detail)
        else:
            return redirect(training)
    chosen = by_id.get(form["base"].value()) or (versions[0] if versions else None)
    context = {"form": form, "versions": versions, "chosen": chosen}
    if chosen is not None:
        steps = form["steps"].value() or trainings.defaults(chosen)["max_train_steps"]
        try:
            steps = max(1, min(int(steps), trainings.MAX_STEPS))
        except (TypeError, ValueError):
            steps = trainings.defaults(chosen)["max_train_steps"]
        seconds, cost = trainings.estimate(chosen, steps)
        context.update(defaults=trainings.defaults(chosen), steps=steps, seconds=seconds, cost=cost)
    if request.htmx and request.GET.get("part") == "estimate":
        return TemplateResponse(request, "fine_tune.html#estimate", context)
    return TemplateResponse(request, "fine_tune.html", context, status=400 if form.errors else 200)


def _own_model(user, name):
    """The user's model called `name`, made (private) when they have none;
    one of that name that is not theirs is refused by trainings.start."""
    found = Model.objects.filter(owner=user.username, name=name).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Model.objects.create(owner=user.username, name=name, user=user, visibility="private")
    except IntegrityError:
        return Model.objects.get(owner=user.username, name=name)


@login_required
def training(request, training_id):
    found = _get_training_for_user(request, training_id)
    losses = logs.losses(found.logs)[-200:]
    comparisons = list(found.comparisons.all())
    # A success is followed until its comparisons are there (a worker starts
    # them), for a minute at most: a limit reached may keep them from starting.
    awaiting = (
        found.status == "succeeded"
        and not comparisons
        and timezone.now() - found.completed_at < timedelta(seconds=COMPARISON_WAIT)
    )
    context = {
        "training": found,
        "losses": losses,
        "loss_points": _polyline(losses),
        "comparisons": comparisons,
        "polling": not found.is_terminal or awaiting,
    }
    if request.htmx and request.GET.get("part") == "progress":
        response = TemplateResponse(request, "training.html#progress", context)
        if not context["polling"]:
            response.render()
            return HttpResponseStopPolling(response.content)
        return response
    return TemplateResponse(request, "training.html", context)


def _polyline(losses, width=300, height=60):
    """The SVG points of the loss curve: steps across, loss up (scaled to fit)."""
    if len(losses) < 2:
        return ""
    values = [loss for _, loss in losses if loss == loss and abs(loss) != float("inf")]
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{height - 4 - (value - low) / span * (height - 8):.1f}"
        for index, value in enumerate(values)
    )


@login_required
@require_POST
def training_cancel(request, training_id):
    found = _get_training_for_user(request, training_id)
    trainings.cancel(found)
    return redirect(found)
