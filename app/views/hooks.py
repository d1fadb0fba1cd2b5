"""Inbound calls from backends: Cog webhooks and uploads, Replicate webhooks."""

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from celery import Task
from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from app.core import payloads, spool
from app.models import Prediction, Training, Version
from app.services import predictions, storage, trainings
from app.services.backends import BackendError, cog, replicate
from app.views.files import file_response
from app.views.problems import problem
from tasks.predictions import finish_prediction
from tasks.trainings import finish_training

log = logging.getLogger(__name__)


def _read_body(request, limit):
    """The raw body, or None when it is over `limit` (Cog may send data URIs)."""
    length = int(request.headers.get("Content-Length") or 0)
    if length > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _json(body):
    """The JSON object of a webhook body, or None. A model may print anything,
    so text no page could show (a lone surrogate, NUL) is replaced, not refused:
    refusing it would lose the result."""
    try:
        payload = payloads.loads(body)
    except payloads.BadPayload:
        return None
    return payloads.writable(payload) if isinstance(payload, dict) else None


def _not_json():
    detail = f"The body is not a JSON object nested at most {payloads.MAX_DEPTH} levels deep."
    return JsonResponse({"detail": detail}, status=400)


@csrf_exempt
@require_http_methods(["PUT", "GET"])
def cog_upload(request, token, filename, upload_id=None):
    """Cog's --upload-url: PUT stores a file until the webhook names it. The
    token names the Cog server; a file is kept for that server's predictions."""
    server = storage.upload_server(token)
    if server is None:
        return HttpResponse(status=403)
    if request.method == "GET":
        found = storage.open_upload(upload_id, server) if _plain_id(upload_id) else None
        if found is None:
            return HttpResponse(status=404)
        return file_response(*found)
    # A "/" in the name (even encoded) reaches the route with an upload id.
    if upload_id is not None or not _safe_filename(filename):
        return HttpResponse(
            "The file name must be 1-100 characters with no path (/, \\, ..), no leading dot and no control "
            "characters.",
            status=400,
            content_type="text/plain",
        )
    body = _read_body(request, settings.UPLOAD_MAX_BYTES)
    if body is None:
        return HttpResponse("Upload too large (LIGHTBOX_UPLOAD_MAX_BYTES).", status=413)
    try:
        content_type = storage.stored_type(body)
    except storage.RefusedFile as exc:
        return HttpResponse(str(exc), status=415, content_type="text/plain")
    remote_id = request.headers.get("X-Prediction-Id", "")[:100]
    try:
        upload_id = storage.receive_upload(server, remote_id, filename, content_type, body)
    except OSError as exc:
        # Cog does not upload again: the reconciler runs the prediction again once.
        if spool.is_disk_full(exc):
            return problem(
                507,
                "Insufficient Storage",
                f"The disk that keeps uploads is full ({exc.strerror}); the file was not kept.",
            )
        return problem(503, "Upload not kept", f"The file could not be written to disk: {exc.strerror or exc}.")
    response = HttpResponse(status=201)
    response["Location"] = f"{storage.upload_url(server)}{upload_id}/{quote(filename)}"
    return response


def _safe_filename(name):
    """No path, no hidden file, nothing a header or a log line could break on."""
    return (
        0 < len(name) <= 100
        and not name.startswith(".")
        and not any(part in name for part in ("/", "\\", ".."))
        and not any(unicodedata.category(char).startswith("C") for char in name)
    )


def _plain_id(upload_id):
    return bool(upload_id) and upload_id.isascii() and upload_id.isalnum()


# --- A prediction's or a training's webhooks ------------------------------------------
# One path for both kinds: progress is applied at once; what must be stored
# off the web thread (a prediction's outputs to download, a training's weights
# and new version) goes to the kind's worker task.


@dataclass(frozen=True)
class _Kind:
    name: str
    route: str  # the salt of its Cog webhook tokens (cog.webhook_token_ok)
    rows: Callable[[], QuerySet]
    finish: Task  # applies a succeeded update in a worker
    in_worker: Callable  # (run, update): whether a succeeded update goes to `finish`
    apply_update: Callable
    fail_storing: Callable  # (run, exc): a BackendError while storing what it sent


def _needs_download(prediction, update):
    # Data: URIs and files its server uploaded here are stored at once.
    return any(
        isinstance(item, str) and not item.startswith("data:") and not storage.is_upload(item, prediction.version)
        for item in update.output or []
    )


_PREDICTION = _Kind(
    name="prediction",
    route="predictions",
    rows=lambda: Prediction.objects.select_related("version__model"),
    finish=finish_prediction,
    in_worker=_needs_download,
    apply_update=predictions.apply_update,
    fail_storing=predictions.fail_storing,
)
_TRAINING = _Kind(
    name="training",
    route="trainings",
    rows=lambda: Training.objects.select_related("version__model", "destination"),
    finish=finish_training,
    # Its weights are stored (maybe downloaded) and a version made: always a worker's job.
    in_worker=lambda training, update: True,
    apply_update=trainings.apply_update,
    fail_storing=lambda training, exc: trainings.fail(training, str(exc)),  # as finish_training does
)
_KINDS = {kind.name: kind for kind in (_PREDICTION, _TRAINING)}


def _apply(kind, run, payload, backend):
    """Apply an update now, or in a worker (`kind.finish`)."""
    try:
        update = backend.parse_update(payload)
    except BackendError as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    # A terminal run takes nothing more (a late or repeated webhook).
    if update.status == "succeeded" and not run.is_terminal and kind.in_worker(run, update):
        kind.finish.delay(run.id, payload)
        return HttpResponse(status=202)
    try:
        kind.apply_update(run, update)
    except BackendError as exc:
        log.warning("%s %s: storing outputs failed: %s", kind.name, run.id, exc)
        kind.fail_storing(run, exc)
    return HttpResponse(status=200)


# The kind ("prediction" or "training") comes from the route (lightbox/urls.py).
@csrf_exempt
@require_POST
def cog_webhook(request, kind, run_id, token):
    kind = _KINDS[kind]
    if not cog.webhook_token_ok(run_id, token, route=kind.route):
        return HttpResponse(status=403)
    body = _read_body(request, settings.WEBHOOK_MAX_BYTES)
    if body is None:
        return HttpResponse("Webhook body too large (LIGHTBOX_WEBHOOK_MAX_BYTES).", status=413)
    payload = _json(body)
    if payload is None:
        return _not_json()
    run = kind.rows().filter(pk=run_id).first()
    if run is None:
        # Deleted meanwhile: say so, so the server stops retrying.
        return HttpResponse(status=410)
    return _apply(kind, run, payload, cog)


@csrf_exempt
@require_POST
def replicate_webhook(request, kind, run_id):
    kind = _KINDS[kind]
    body = _read_body(request, settings.WEBHOOK_MAX_BYTES)
    if body is None:
        return HttpResponse(status=413)
    try:
        replicate.verify_webhook(body, request.headers)
    except BackendError as exc:
        return JsonResponse({"detail": str(exc)}, status=401)
    payload = _json(body)
    if payload is None:
        return _not_json()
    run = kind.rows().filter(pk=run_id).first()
    if run is None:
        return HttpResponse(status=410)
    if payload.get("id") and run.remote_id and payload["id"] != run.remote_id:
        return JsonResponse({"detail": f"The webhook is for another {kind.name}."}, status=400)
    return _apply(kind, run, payload, replicate)


@require_http_methods(["GET", "HEAD"])
def weights(request, version_id, token):
    """A fine-tune's weights, for the model server that runs it (its `lora`
    input) and the training's caller (output.weights): the URL is signed for
    the version and never changes, so servers cache the file by it."""
    if not cog.weights_token_ok(version_id, token):
        return HttpResponse(status=403)
    version = Version.objects.filter(pk=version_id).exclude(weights="").first()
    if version is None:
        return HttpResponse(status=404)
    response = FileResponse(version.weights.open("rb"), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{version.id[:12]}.safetensors"'
    return response
