"""Any Cog HTTP server: Lightbox's own, or a model container you run.

Protocol facts (docs/protocols.md): one slot, 409 when busy; PUT /predictions/{id} is
idempotent while the prediction runs; there is no GET for a prediction, so
state arrives by webhook; outputs are uploaded to us with --upload-url or come
back as data: URIs.
"""

import json
import re
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core import signing
from django.urls import reverse

from app.core import http, netguard, payloads, uploads
from app.models import Prediction, Training
from app.services.backends import BackendError, Busy, json_body, update_from_payload

EVENTS = ["start", "output", "logs", "completed"]


def server(prediction):
    """Where `prediction` runs: the instance of its version's pool it was
    handed to (app.services.pools), or the version's own server; a Training,
    on its base version's trainer (a Cog server in train mode)."""
    if isinstance(prediction, Training):
        return prediction.version.trainer_location.rstrip("/")
    if prediction.instance_id:
        return prediction.instance.url
    return prediction.version.location.rstrip("/")


def fetch_schema(location):
    try:
        response = http.client().get(location.rstrip("/") + "/openapi.json")
    except httpx.HTTPError as exc:
        raise BackendError(f"Cog server at {location} {http.describe(exc)}") from exc
    if response.status_code != 200:
        raise BackendError(
            f"Cog server at {location} has no input schema (GET /openapi.json answered {response.status_code}); "
            "it needs .cog/openapi_schema.json"
        )
    try:
        schema = payloads.loads(response.content)
    except ValueError as exc:
        raise BackendError(f"Cog server at {location} answered /openapi.json with something that is not JSON") from exc
    version = ""
    try:
        version = http.client().get(location.rstrip("/") + "/health-check").json().get("version", {}).get("coglet", "")
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return schema, version


def check(version):
    return check_url(version.location)


def check_url(location):
    """Why the Cog server at `location` cannot run predictions now, or ""."""
    try:
        response = http.client().get(location.rstrip("/") + "/health-check", timeout=3)
        status = response.json().get("status")
    except httpx.HTTPError as exc:
        return f"The model server at {location} does not answer ({http.describe(exc)})."
    except (ValueError, AttributeError):
        return f"The model server at {location} did not answer its health check with JSON."
    if status in ("READY", "BUSY"):
        return ""
    if status == "STARTING":
        return "The model server is still starting (loading weights)."
    return f"The model server reports {status}."


def server_boot(prediction):
    """Which run of the server answers where `prediction` runs (server()):
    coglet's health check names when its setup started (to the nanosecond),
    which a restart changes. "" from a server that does not say, None when
    its health check does not answer."""
    try:
        health = http.client().get(f"{server(prediction)}/health-check", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
    setup = health.get("setup") if isinstance(health, dict) else None
    started = setup.get("started_at") if isinstance(setup, dict) else None
    return started[:64] if isinstance(started, str) else ""


def _route(run):
    """The Cog server's resource for `run`: a train-mode server serves
    /trainings/{id} with the same rules as /predictions/{id}."""
    return "trainings" if isinstance(run, Training) else "predictions"


def _webhook_salt(route):
    return "cog-webhook" if route == "predictions" else "cog-training-webhook"


def webhook_url(prediction):
    route = _route(prediction)
    token = signing.Signer(salt=_webhook_salt(route)).signature(prediction.id)
    name = "hooks:cog" if route == "predictions" else "hooks:cog-training"
    return settings.SITE_URL + reverse(name, args=[prediction.id, token])


def webhook_token_ok(prediction_id, token, route="predictions"):
    # unsign, not a compare with signature(): it also accepts the tokens of
    # SECRET_KEY_FALLBACKS, so predictions in flight survive a key rotation.
    try:
        return signing.Signer(salt=_webhook_salt(route)).unsign(f"{prediction_id}:{token}") == prediction_id
    except signing.BadSignature:
        return False


def weights_url(version):
    """Where the model server downloads a fine-tune's weights (its `lora`
    input): signed for this version, and the same URL every time, so a server
    that caches LoRAs by URL downloads them once."""
    token = signing.Signer(salt="lora-weights").signature(version.id)
    return settings.SITE_URL + reverse("hooks:weights", args=[version.id, token])


def weights_url_prefix():
    """What every weights_url starts with: the local model servers trust it
    (LIGHTBOX_WEIGHTS_URL, inference/weights.py), though SITE_URL is private."""
    return settings.SITE_URL + reverse("hooks:weights", args=["-", "-"])[: -len("-/-")]


def weights_token_ok(version_id, token):
    try:
        return signing.Signer(salt="lora-weights").unsign(f"{version_id}:{token}") == version_id
    except signing.BadSignature:
        return False


def submit(prediction):
    """Start the prediction on the server without waiting for it to finish."""
    _put(prediction)
    return prediction.id


def resubmit(prediction):
    """Hand a prediction over again, as PUT allows: True when the server was
    still running it (it answers the running state), False when it had
    forgotten it and has started it anew (it answers "starting"). A server
    forgets a prediction when it restarts, and also as soon as it finishes
    one: so this runs a finished prediction whose webhook is merely late
    again, and the reconciler calls it only when the prediction is lost
    (docs/protocols.md)."""
    return _put(prediction).get("status") not in (None, "starting")


def _model_input(prediction):
    if isinstance(prediction, Training):
        # The images as Lightbox checked and re-packed them, inline: the
        # trainer fetches nothing.
        with prediction.images.open("rb") as archive:
            images = uploads.data_uri(archive.read(), "application/zip")
        return {**prediction.input, "input_images": images}
    try:
        # The server gets users' image URLs as data: URIs fetched through the
        # guard, so it never requests an inside address for them; a LoRA's URL
        # is checked again here, and by the server when it downloads it.
        model_input = uploads.inline_urls(prediction.version, prediction.input)
    except netguard.UnsafeURL as exc:
        raise BackendError(exc.message("an input"), permanent=True) from exc
    if prediction.version.base_id and prediction.version.weights:
        # A fine-tune runs on its base's server with its own weights: our URL,
        # after the guard (the server's own allowlist must let it fetch it).
        model_input["lora"] = weights_url(prediction.version)
    return model_input


def _put(prediction):
    model_input = _model_input(prediction)
    route = _route(prediction)
    body = {
        "id": prediction.id,
        "input": model_input,
        "webhook": webhook_url(prediction),
        "webhook_events_filter": EVENTS,
    }
    try:
        response = http.client().put(
            f"{server(prediction)}/{route}/{prediction.id}",
            content=json_body(body),
            headers={"Prefer": "respond-async", "Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise BackendError(f"The model server at {server(prediction)} {http.describe(exc)}.") from exc
    if response.status_code == 409:
        raise Busy("The model server is busy with another prediction.")
    if response.status_code == 422:
        raise BackendError(f"The model server refused the input: {_detail(response)}", permanent=True)
    if response.status_code >= 400:
        raise BackendError(f"The model server answered {response.status_code}: {_detail(response)}")
    try:
        payload = payloads.loads(response.content)
    except ValueError as exc:
        raise BackendError("The model server answered with something that is not JSON.") from exc
    if not isinstance(payload, dict):
        raise BackendError("The model server answered with something that is not a prediction.")
    return payload


def cancel(prediction):
    try:
        http.client().post(f"{server(prediction)}/{_route(prediction)}/{prediction.id}/cancel", timeout=5)
    except httpx.HTTPError:
        # The server is gone or the prediction finished: nothing left to stop.
        pass


# coglet's words when its one upload of an output failed (it does not try
# again): the model ran, but the output never reached us. Its webhook says so
# only in words; read them here, once, into a code.
UPLOAD_FAILED = ("failed to upload output", "failed to upload file output")


# coglet 0.23.1 uploads a list's files at once and lists each as its upload
# finishes (out-2, out-0, out-3, out-1), not in the order the predictor
# returned them; safety-checker flags, seeds and comparisons go by position.
# Files one predictor numbered (diffusers' out-0.png, out-1.png ...) get their
# order back; any other names keep the order the server gave.
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.\w+)?$")


def _in_predictor_order(output):
    if not isinstance(output, list) or len(output) < 2 or not all(isinstance(item, str) for item in output):
        return output
    numbered = []
    for item in output:
        found = _NUMBERED.match(urlsplit(item).path.rsplit("/", 1)[-1]) if not item.startswith("data:") else None
        if not found:
            return output
        numbered.append((found[1], found[3], int(found[2])))
    if len({(stem, suffix) for stem, suffix, _ in numbered}) != 1 or len({n for _, _, n in numbered}) != len(output):
        return output
    return [item for _, item in sorted(zip((n for _, _, n in numbered), output))]


def parse_update(payload):
    update = update_from_payload(payload, "Cog")
    update.output = _in_predictor_order(update.output)
    error = payload.get("error")
    if update.status == "failed" and isinstance(error, str) and error.lower().startswith(UPLOAD_FAILED):
        update.error_code = Prediction.ErrorCode.OUTPUT_NOT_RECEIVED
        update.error = f"The model ran, but its server could not hand the output over to Lightbox (Cog: {error})."
    else:
        update.error = _plain_error(error)
    return update


def _plain_error(error):
    if error in (None, ""):
        return None
    error = error if isinstance(error, str) else json.dumps(error)
    if error.lower().startswith("worker crashed"):
        # coglet's words when its predictor process dies: a crash, running out
        # of memory, or the server being stopped. "Worker" would read as ours.
        return f"The model server crashed or was restarted while running this prediction (Cog: {error})."
    return error


def _detail(response):
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        detail = payload.get("detail") or payload.get("error") or payload
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
                if isinstance(item, dict)
                else str(item)
                for item in detail
            )
        return str(detail)
    return str(payload)[:300]


def runtime(location):
    """What the Cog server at `location` says it is, in its health check's
    `version` (coglet's and its SDK's versions, Python's); {} when it does not answer."""
    try:
        health = http.client().get(location.rstrip("/") + "/health-check", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}
    found = health.get("version") if isinstance(health, dict) else None
    return {str(k)[:50]: str(v)[:100] for k, v in found.items()} if isinstance(found, dict) else {}
