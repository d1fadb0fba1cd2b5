"""Replicate's cloud API (https://replicate.com/docs/reference/http).

Predictions are created with a webhook back to us when SITE_URL can be reached
from the internet, and polled otherwise. Webhooks are verified with Standard
Webhooks signatures; outputs are copied into our storage at once because
Replicate deletes them after an hour.
"""

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.urls import reverse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core import http, payloads, uploads
from app.models import Training
from app.services.backends import BackendError, json_body, update_from_payload

EVENTS = ["start", "output", "logs", "completed"]
NSFW_ERROR = (
    "The model's safety checker flagged the image as NSFW, so Replicate did not return it. "
    "Try again with another seed or prompt."
)


def _headers():
    if not settings.REPLICATE_API_TOKEN:
        raise BackendError("REPLICATE_API_TOKEN is not set, so Replicate models cannot run.", permanent=True)
    return {"Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"}


def _request(method, path, headers=None, **kwargs):
    try:
        response = http.client().request(
            method, settings.REPLICATE_API_URL + path, headers={**_headers(), **(headers or {})}, **kwargs
        )
    except httpx.HTTPError as exc:
        raise BackendError(f"Replicate {http.describe(exc)}.") from exc
    if response.status_code >= 400:
        permanent = response.status_code in (400, 401, 403, 404, 422)
        raise BackendError(f"Replicate answered {response.status_code}: {_detail(response)}", permanent=permanent)
    try:
        return payloads.writable(payloads.loads(response.content))
    except ValueError as exc:
        raise BackendError("Replicate answered with something that is not JSON.") from exc


def _detail(response):
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        return str(payload.get("detail") or payload.get("title") or payload)
    return str(payload)[:300]


def split_location(location):
    """ "owner/name:version_id" -> (owner, name, version_id)."""
    ref, _, version_id = location.partition(":")
    owner, _, name = ref.partition("/")
    if not (owner and name and version_id):
        raise BackendError(f"'{location}' is not owner/name:version", permanent=True)
    return owner, name, version_id


def fetch_schema(location):
    owner, name, version_id = split_location(location)
    payload = _request("GET", f"/models/{owner}/{name}/versions/{version_id}")
    if not isinstance(payload, dict) or not isinstance(payload.get("openapi_schema"), dict):
        raise BackendError("Replicate's version has no openapi_schema.")
    return payload["openapi_schema"], payload.get("cog_version") or ""


def check(version):
    if not settings.REPLICATE_API_TOKEN:
        return "Set REPLICATE_API_TOKEN to run Replicate models."
    return ""


def use_webhooks():
    mode = settings.REPLICATE_USE_WEBHOOKS
    if mode in ("on", "off"):
        return mode == "on"
    return site_is_public()


@lru_cache(maxsize=1)
def site_is_public():
    """True when SITE_URL resolves only to public addresses (Replicate can reach it)."""
    host = urlsplit(settings.SITE_URL).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses)


def _path(run):
    return "/trainings" if isinstance(run, Training) else "/predictions"


def submit(prediction):
    if isinstance(prediction, Training):
        return _submit_training(prediction)
    owner, name, version_id = split_location(prediction.version.location)
    body = {"version": version_id, "input": prediction.input}
    if use_webhooks():
        body["webhook"] = settings.SITE_URL + reverse("hooks:replicate", args=[prediction.id])
        body["webhook_events_filter"] = EVENTS
    payload = _request("POST", "/predictions", content=json_body(body), headers={"Content-Type": "application/json"})
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise BackendError("Replicate's answer has no prediction id.")
    return payload["id"]


def server_boot(prediction):
    """Replicate keeps every prediction: it never loses one to a restart."""
    return ""


def _submit_training(training):
    """POST the training to the base's trainer at Replicate. Replicate makes
    the new version on a model of the site's account there
    (LIGHTBOX_REPLICATE_TRAINING_OWNER/<owner>-<name>, created when missing);
    Lightbox adds it to the destination as a version that runs there."""
    owner, name, version_id = split_location(training.version.location)
    destination = f"{settings.REPLICATE_TRAINING_OWNER}/{training.destination.owner}-{training.destination.name}"
    _ensure_model(destination)
    with training.images.open("rb") as archive:
        images = uploads.data_uri(archive.read(), "application/zip")
    body = {"destination": destination, "input": {**training.input, "input_images": images}}
    if use_webhooks():
        body["webhook"] = settings.SITE_URL + reverse("hooks:replicate-training", args=[training.id])
        body["webhook_events_filter"] = EVENTS
    payload = _request(
        "POST",
        f"/models/{owner}/{name}/versions/{version_id}/trainings",
        content=json_body(body),
        headers={"Content-Type": "application/json"},
    )
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise BackendError("Replicate's answer has no training id.")
    return payload["id"]


def _ensure_model(ref):
    owner, _, name = ref.partition("/")
    try:
        _request("GET", f"/models/{owner}/{name}")
    except BackendError as exc:
        if "404" not in str(exc):
            raise
        body = {"owner": owner, "name": name[:100], "visibility": "private", "hardware": "gpu-l40s"}
        _request("POST", "/models", content=json_body(body), headers={"Content-Type": "application/json"})


def poll(prediction):
    return parse_update(_request("GET", f"{_path(prediction)}/{prediction.remote_id}"))


def cancel(prediction):
    if not prediction.remote_id:
        return
    try:
        _request("POST", f"{_path(prediction)}/{prediction.remote_id}/cancel")
    except BackendError:
        pass


def parse_update(payload):
    update = update_from_payload(payload, "Replicate", extra_statuses=("aborted",))
    if update.status == "aborted":  # canceled before it started
        update.status = "canceled"
    error = payload.get("error")
    if error and "nsfw" in str(error).lower():
        error = NSFW_ERROR
    update.error = str(error) if error else None
    return update


@lru_cache(maxsize=1)
def _webhook_secret():
    if settings.REPLICATE_WEBHOOK_SECRET:
        return settings.REPLICATE_WEBHOOK_SECRET
    return _request("GET", "/webhooks/default/secret")["key"]


def verify_webhook(body, headers):
    """Raise BackendError unless the Standard Webhooks signature is valid and fresh."""
    try:
        # The body is parsed by the caller (app.core.payloads: nesting checked first).
        Webhook(_webhook_secret()).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        raise BackendError(f"Bad webhook signature: {exc}", permanent=True) from exc
