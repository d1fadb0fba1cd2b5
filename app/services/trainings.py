"""A training's lifecycle (fine-tuning, Replicate's trainings): start (check
the destination, the images, the limits; save; queue), apply what the trainer
says, and on success a new version of the destination model that runs at once.

It runs through the prediction engine's pieces, not copies of them: the one
locked state change (`Run._transition`, a Training's base), the backends' submit,
cancel, poll and webhook signing (a Cog server in train mode serves
/trainings/{id} with the rules of /predictions/{id}), the reconciler's rules
(tasks.trainings), the limits (`limits.admit`, which counts trainings), the
upload checks (`app.core.uploads.training_archive`).
"""

import logging
import re
from decimal import Decimal

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from app.core import http, jobs, netguard, payloads, uploads
from app.core.logs import without_library_warnings
from app.core.schema import InputError
from app.models import Model, Training, Version, new_version_id
from app.services import backends, catalog, comparisons, files, limits, predictions
from app.services.backends import BackendError

logger = logging.getLogger(__name__)

DESTINATION_RE = re.compile(r"^([a-z0-9][a-z0-9_.-]{0,99})/([a-z0-9][a-z0-9_.-]{0,99})$", re.I)
TRIGGER_RE = re.compile(r"^[^\s<>\"'`{}]{1,40}$")
MAX_STEPS = 20000
# What Replicate's SDXL trainer calls its inputs; the page fills these.
FAMILY_DEFAULTS = {
    "sdxl": {"max_train_steps": 1000, "resolution": 1024, "learning_rate": 1e-4, "lora_rank": 16},
    "sd": {"max_train_steps": 800, "resolution": 512, "learning_rate": 1e-4, "lora_rank": 8},
    # The tiny random-weight pipelines of the smoke tests: seconds on a CPU.
    "tiny": {"max_train_steps": 4, "resolution": 64, "learning_rate": 1e-3, "lora_rank": 4},
}
# The automatic comparison of base and fine-tune: "{}" is the trigger word.
COMPARISON_PROMPTS = (
    "a photo of {}",
    "a portrait of {} in a garden, soft light",
    "{} as an oil painting",
)


class Refused(Exception):
    """A training that may not start: `status` is the HTTP status /v1 answers
    (404 no such destination, 403 not the caller's), `field` the form field."""

    def __init__(self, detail, status=422, title="Training refused", field="destination"):
        super().__init__(detail)
        self.detail, self.status, self.title, self.field = detail, status, title, field


def family(version):
    """Which defaults fit `version`: its model's name, then its schema's width."""
    name = version.model.name.lower()
    if "tiny" in name:
        return "tiny"
    width = version.input_schema.get("properties", {}).get("width", {}).get("default")
    if "xl" in name or (isinstance(width, int) and width >= 1024):
        return "sdxl"
    return "sd"


def defaults(version):
    return dict(FAMILY_DEFAULTS[family(version)])


def estimate(version, steps):
    """(seconds, USD) a training of `steps` steps should take: the last
    trainings of this base per step, else LIGHTBOX_TRAINING_SECONDS_PER_STEP."""
    recent = list(
        Training.objects.filter(version=version, status="succeeded", predict_time__isnull=False)
        .order_by("-created_at")
        .values_list("predict_time", "input")[:10]
    )
    per_step = [time / max(1, int(given.get("max_train_steps") or 1)) for time, given in recent if time]
    seconds_per_step = sum(per_step) / len(per_step) if per_step else settings.TRAINING_SECONDS_PER_STEP
    seconds = seconds_per_step * steps
    cost = (version.effective_price_per_second * Decimal(str(seconds))).quantize(limits.CENT)
    return seconds, cost


def destination_for(owner, ref):
    """The Model `ref` ("owner/name") names, if `owner` owns it; raises Refused."""
    match = DESTINATION_RE.match(ref) if isinstance(ref, str) else None
    if not match:
        raise Refused('Give the destination as "owner/name", a model of yours.', status=422)
    found = Model.objects.visible_to(owner).filter(owner=match[1], name=match[2]).first()
    if found is None:
        raise Refused(
            f"The destination model {ref} does not exist. Create it first (POST /v1/models), then train into it.",
            status=404,
            title="Destination not found",
        )
    if found.user_id != owner.pk:
        raise Refused(
            f"You can only train into models you own; {ref} is not yours.", status=403, title="Not your model"
        )
    return found


def start(version, destination, input, *, owner, files_given=(), webhook="", webhook_events_filter=(), source="api"):
    """Check everything, save the training and queue it after commit. Raises
    Refused (the destination, the base), InputError (per input field) or
    limits.RunRefused; nothing is saved then. `files_given`: (name, bytes) of
    images or archives dropped on the page, instead of input_images."""
    if not isinstance(destination, Model):
        destination = destination_for(owner, destination)
    elif destination.user_id != owner.pk:
        raise Refused(f"You can only train into models you own; {destination} is not yours.", status=403)
    if version.base_id:
        raise Refused("Train from a base version, not from a fine-tune.", field="version")
    if version.backend == Version.Backend.COG and not version.trainer_location:
        raise Refused(f"{version.model} has no trainer: it cannot be fine-tuned here.", field="version")
    if not isinstance(input, dict):
        raise InputError({"input": ["Give the input as a JSON object."]})
    cleaned = {**defaults(version), **input}
    errors = {}
    steps = cleaned.get("max_train_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        errors["max_train_steps"] = [f"A whole number from 1 to {MAX_STEPS}."]
    trigger = cleaned.setdefault("token_string", "TOK")
    if not isinstance(trigger, str) or not TRIGGER_RE.match(trigger):
        errors["token_string"] = ["One word of 1-40 characters, no spaces or quotes (e.g. TOK)."]
    for name, value in cleaned.items():
        if name != "input_images" and not (value is None or isinstance(value, (str, int, float, bool))):
            errors.setdefault(name, []).append("Give a string, a number or a boolean.")
    try:
        archive, count = _images(cleaned.pop("input_images", None), files_given, owner)
    except uploads.UploadRejected as exc:
        errors["input_images"] = [str(exc)]
    if errors:
        raise InputError(errors)
    reason = (
        backends.cog.check_url(version.trainer_location)
        if version.backend == Version.Backend.COG
        else backends.replicate.check(version)
    )
    if reason:
        raise Refused(f"The trainer of {version.model} cannot run now: {reason}", status=503, title="Unavailable")
    cleaned["input_images"] = "images.zip"  # the checked archive, kept with the row
    with transaction.atomic():
        _, cost = estimate(version, steps)
        limits.admit(owner, [version], costs=[cost])
        training = Training(
            version=version,
            destination=destination,
            owner=owner,
            input=cleaned,
            image_count=count,
            trigger_word=trigger,
            webhook=webhook,
            webhook_events_filter=list(webhook_events_filter),
            source=source,
            cost=cost,
        )
        training.images.save("images.zip", ContentFile(archive), save=False)
        training.save()
        jobs.after_commit("tasks.trainings.run_training", training.id, robust=True)
    return training


def _images(given, files_given, owner):
    """(zip, count) of the images: dropped files, or `input_images` as a
    data: URI, a /v1/files URL of the owner's or a public http(s) URL."""
    if files_given:
        return uploads.training_archive(list(files_given))
    if not isinstance(given, str) or not given:
        raise uploads.UploadRejected("Give the training images: a zip or tar of images (a URL or a data: URI).")
    limit = settings.TRAINING_MAX_BYTES
    if given.startswith("data:"):
        try:
            data, _ = payloads.decode_data_uri(given)
        except ValueError:
            raise uploads.UploadRejected("The data: URI is not valid base64.") from None
    elif files.file_id_in(given):
        found = files.get_for_owner(owner, files.file_id_in(given))
        if found is None:
            raise uploads.UploadRejected("No such file: it does not exist, has expired or is not yours.")
        with found.file.open("rb") as handle:
            data = handle.read(limit + 1)
    elif netguard.is_http(given):
        try:
            data, _ = netguard.fetch(given, limit)
        except netguard.UnsafeURL as exc:
            raise uploads.UploadRejected(netguard.refusal("input_images", exc)) from None
        except http.TooLarge:
            raise uploads.UploadRejected(f"The archive is larger than {uploads.size_text(limit)}.") from None
    else:
        raise uploads.UploadRejected("Give an http(s) URL, a data: URI or a /v1/files URL.")
    return uploads.training_archive([("input_images", data)])


# --- What the trainer says --------------------------------------------------------


def apply_update(training, update):
    """Apply a backend's view of `training` (a webhook, a poll), as
    predictions.apply_update does; on success the weights are stored and the
    new version made before the status turns terminal."""
    if training.is_terminal:
        return False
    Status = Training.Status
    changes = {"heard_at": timezone.now()}
    logs = without_library_warnings(payloads.writable(update.logs))[0] if update.logs else None
    if logs is not None and len(logs) >= len(training.logs):
        changes["logs"] = logs
    if update.status == Status.PROCESSING or update.status in Training.TERMINAL:
        if not training.started_at:
            changes["started_at"] = timezone.now()
        if training.status == Status.STARTING:
            changes["status"] = Status.PROCESSING
    if update.status == Status.SUCCEEDED:
        try:
            return succeed(training, _output(update), changes, update.predict_time)
        except BackendError as exc:
            if not exc.permanent:
                raise  # a download that may work next time: the task retries
            return fail(training, f"The trained weights could not be kept: {exc}")
    if update.status in Training.TERMINAL:
        changes.update(
            status=update.status,
            error=payloads.writable(update.error) or "",
            completed_at=timezone.now(),
            predict_time=update.predict_time,
        )
    was_starting = training.status == Status.STARTING
    changed = training._transition(**changes)
    if changed and update.status in Training.TERMINAL:
        on_terminal(training)
    elif changed and training.webhook:
        events = ["start"] if was_starting and training.status == Status.PROCESSING else []
        events += ["logs"] if changes.get("logs") else []
        predictions.notify(training, events, task="tasks.trainings.send_webhook")
    return changed


def _output(update):
    """The trainer's output object: Cog and Replicate say {"weights": ...}
    (Replicate adds "version"); the backends' Update wraps it in a list."""
    output = update.output[-1] if isinstance(update.output, list) and update.output else update.output
    if not isinstance(output, dict) or not isinstance(output.get("weights"), str):
        raise BackendError("The trainer's output has no weights file.", permanent=True)
    return output


def succeed(training, output, changes, predict_time):
    """Store the weights, add the new version to the destination (through
    catalog.add_version), then end the training, in one transaction."""
    data = _weights(training, output["weights"])
    base = training.version
    destination = training.destination
    if base.backend == Version.Backend.REPLICATE:
        # Replicate made the version on its side: it runs there, by its ref.
        location = output.get("version") if isinstance(output.get("version"), str) else ""
        if not location:
            raise BackendError("Replicate's training output names no version.", permanent=True)
        version_id = location.rpartition(":")[2]
    else:
        location, version_id = base.location, new_version_id()
    with transaction.atomic():
        version = catalog.add_version(
            destination.owner,
            destination.name,
            base.backend,
            location,
            base.openapi_schema,
            base.cog_version,
            version_id=version_id,
        )
        version.base = base
        version.trigger_word = training.trigger_word
        version.price_per_second = base.price_per_second
        version.available, version.checked_at = base.available, base.checked_at
        version.weights.save(f"{version.id[:2]}/{version.id}.safetensors", ContentFile(data), save=False)
        version.save(update_fields=["base", "trigger_word", "price_per_second", "available", "checked_at", "weights"])
        changes.update(
            status=Training.Status.SUCCEEDED,
            new_version=version,
            output={"version": version.ref, "weights": backends.cog.weights_url(version)},
            completed_at=timezone.now(),
            predict_time=predict_time,
        )
        changed = training._transition(**changes)
        if not changed:
            transaction.set_rollback(True)
    if not changed:
        version.weights.delete(save=False)
        return False
    on_terminal(training)
    return True


def _weights(training, item):
    """The bytes of the trained weights, checked to be a .safetensors file."""
    if item.startswith("data:"):
        try:
            data, _ = payloads.decode_data_uri(item)
        except ValueError as exc:
            raise BackendError("The weights data: URI is not valid base64.", permanent=True) from exc
    else:
        try:
            data, _ = http.download(http.client(), item, settings.TRAINING_MAX_BYTES * 4, timeout=300)
        except (http.BadStatus, http.TooLarge, httpx.HTTPError) as exc:
            raise BackendError(f"Downloading the weights failed ({exc}).") from exc
    if not is_safetensors(data):
        raise BackendError("The trainer's weights are not a .safetensors file.", permanent=True)
    return data


def is_safetensors(data):
    """A .safetensors file: an 8-byte little-endian header length, then that
    many bytes of a JSON object."""
    if len(data) < 10:
        return False
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 or size > 100_000_000:
        return False
    try:
        header = payloads.loads(data[8 : 8 + size])
    except ValueError:
        return False
    return isinstance(header, dict)


def fail(training, error):
    changed = training._transition(status=Training.Status.FAILED, error=error, completed_at=timezone.now())
    if changed:
        on_terminal(training)
    return changed


def cancel(training):
    """Cancel at the trainer (if it has the training) and here."""
    if training.is_terminal:
        return False
    if training.dispatched_at:
        backends.for_version(training.version).cancel(training)
    changed = training._transition(status=Training.Status.CANCELED, completed_at=timezone.now())
    if changed:
        on_terminal(training)
    return changed


def on_terminal(training):
    """After the terminal commit: settle the cost, tell the caller's webhook,
    and for a success compare base and fine-tune."""
    limits.settle_cost(training)
    if training.webhook and training.wants_event("completed"):
        jobs.after_commit("tasks.trainings.send_webhook", training.id, "completed")
    if training.status == Training.Status.SUCCEEDED:
        jobs.after_commit("tasks.trainings.compare", training.id)


def compare(training):
    """Base against fine-tune on COMPARISON_PROMPTS with the trigger word, one
    seed for all: what the training changed. A refusal (a limit reached) is
    logged, never the training's failure."""
    if training.status != Training.Status.SUCCEEDED or training.new_version is None:
        return []
    if training.comparisons.exists():
        return list(training.comparisons.all())
    versions = [training.version, training.new_version]
    seed = comparisons.pick_seed(versions)
    started = []
    for prompt in COMPARISON_PROMPTS:
        try:
            comparison = comparisons.start(
                versions,
                {"prompt": prompt.format(training.trigger_word)},
                owner=training.owner,
                visibility="private",
                seed=seed,
            )
        except (InputError, limits.RunRefused) as exc:
            logger.warning("training %s: comparison not started: %s", training.id, exc)
            break
        training.comparisons.add(comparison)
        started.append(comparison)
    return started


def prompt_hint(version):
    """The playground's prompt hint for a fine-tune: its trigger word in use."""
    return COMPARISON_PROMPTS[0].format(version.trigger_word) if version.trigger_word else ""


def fine_tunes(model):
    """The fine-tunes among `model`'s versions, with their bases (the model page)."""
    return model.versions.filter(base__isnull=False).select_related("base__model")
