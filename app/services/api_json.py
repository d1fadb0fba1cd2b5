"""JSON shapes of the /v1 API (Replicate's), shared by its views and the
outbound webhooks, and the signing of those webhooks. Errors and request
bodies are app.views.problems'."""

import base64
import functools
import time
import uuid
from datetime import datetime, timezone

from django.conf import settings
from django.urls import get_script_prefix, reverse
from django.utils.crypto import salted_hmac
from standardwebhooks.webhooks import Webhook

from app.core.prepared import Prepared
from app.models import Output
from app.services.storage import signed_url


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def absolute(url, base=None):
    if url.startswith(("http://", "https://")):
        return url
    return (base or settings.SITE_URL) + url


def prediction_json(prediction, base=None, outputs=None, viewer=None):
    """A prediction as /v1 shows it; `outputs`, its Outputs when the caller has
    them; `viewer`, who it is shown to (output_urls), when not its owner."""
    base = base or settings.SITE_URL
    metrics = {}
    if prediction.predict_time is not None:
        metrics["predict_time"] = prediction.predict_time
    if prediction.total_time is not None:
        metrics["total_time"] = prediction.total_time
    outputs = list(prediction.outputs.all()) if outputs is None else outputs
    payload = {
        "id": prediction.id,
        "model": str(prediction.version.model),
        "version": prediction.version_id,
        "input": prediction.input,
        "logs": prediction.logs,
        "output": output_urls(prediction, base, outputs, viewer),
        "data_removed": any(output.rating == output.Rating.BLOCKED for output in outputs),
        "error": prediction.error or None,
        "status": prediction.status,
        "created_at": _iso(prediction.created_at),
        "started_at": _iso(prediction.started_at),
        "completed_at": _iso(prediction.completed_at),
        "source": prediction.source,
        "visibility": prediction.visibility,
        "metrics": metrics,
        "urls": {
            "get": f"{base}{_predictions_path(get_script_prefix())}/{prediction.id}",
            "cancel": f"{base}{_predictions_path(get_script_prefix())}/{prediction.id}/cancel",
            "web": base + f"/p/{prediction.id}",
        },
    }
    if prediction.is_hidden:
        # Only its owner and moderators get a hidden prediction at all.
        payload["moderation"] = {"hidden": True, "reason": prediction.hidden_reason}
    return payload


def outputs_of(prediction):
    """A prediction's Outputs, by a query compiled once (app.core.prepared)."""
    return _prepared_outputs().all(prediction.pk)


def outputs_by_prediction(predictions):
    """{prediction id: its Outputs} for a page of predictions, in one query.

    prefetch_related("outputs") gives the same, but builds a related manager
    and a queryset for each prediction: ~0.1 ms each, 10 ms on a page of 100."""
    grouped = {prediction.pk: [] for prediction in predictions}
    for output in Output.objects.filter(prediction_id__in=list(grouped)):
        grouped[output.prediction_id].append(output)
    return grouped


@functools.cache
def _prepared_outputs():
    return Prepared(lambda prediction_id: Output.objects.filter(prediction_id=prediction_id))


@functools.cache
def _predictions_path(script_prefix):
    """/v1/predictions, under which each prediction's URLs sit (lightbox/urls.py).

    reverse() costs ~50 us here, and a list page has 200 of these URLs."""
    return reverse("api:predictions")


def output_urls(prediction, base, outputs=None, viewer=None):
    """Signed URLs of our stored copies, once stored; None while nothing is.
    They work without a session, for as long as `viewer` may see them
    (app.services.storage.signed_url); `viewer` None is the owner (their API client,
    their webhook). An nsfw image `viewer` may not see unblurred is its
    blurred thumbnail, as on the pages; images moderators removed are left out."""
    outputs = list(prediction.outputs.all()) if outputs is None else outputs
    if not outputs:
        return None
    if viewer is None:
        return [
            absolute(signed_url(output.file, prediction.owner_id), base)
            for output in outputs
            if output.rating != output.Rating.BLOCKED
        ]
    shown = [
        output.file if output.shows_explicit_to(viewer) else output.thumbnail_for(viewer)
        for output in outputs
        if output.rating != output.Rating.BLOCKED
    ]
    return [absolute(signed_url(field, viewer), base) for field in shown if field]


def training_json(training, base=None):
    """A training as /v1 shows it: Replicate's shape, with output
    {version, weights} once it succeeded (the weights at a URL signed for them)."""
    base = base or settings.SITE_URL
    metrics = {}
    if training.predict_time is not None:
        metrics["predict_time"] = training.predict_time
    if training.total_time is not None:
        metrics["total_time"] = training.total_time
    path = reverse("api:trainings")
    return {
        "id": training.id,
        "model": str(training.version.model),
        "version": training.version_id,
        "destination": str(training.destination),
        "input": training.input,
        "logs": training.logs,
        "output": training.output if training.status == "succeeded" else None,
        "error": training.error or None,
        "status": training.status,
        "created_at": _iso(training.created_at),
        "started_at": _iso(training.started_at),
        "completed_at": _iso(training.completed_at),
        "source": training.source,
        "metrics": metrics,
        "urls": {
            "get": f"{base}{path}/{training.id}",
            "cancel": f"{base}{path}/{training.id}/cancel",
            "web": base + reverse("training", args=[training.id]),
        },
    }


def version_json(version):
    return {
        "id": version.id,
        "created_at": _iso(version.created_at),
        "cog_version": version.cog_version or "",
        "openapi_schema": version.openapi_schema,
    }


def model_json(model, base=None, run_count=0, default_example=None):
    base = base or settings.SITE_URL
    latest = model.latest_version
    return {
        "url": base + f"/models/{model.owner}/{model.name}",
        "owner": model.owner,
        "name": model.name,
        "description": model.description or None,
        "visibility": model.visibility,
        "github_url": model.github_url or None,
        "paper_url": model.paper_url or None,
        "license_url": model.license_url or None,
        "weights_url": model.weights_url or None,
        "run_count": run_count,
        "cover_image_url": model.cover_image_url or None,
        "default_example": default_example,
        "latest_version": version_json(latest) if latest else None,
    }


def file_json(found, base=None):
    """A file of /v1/files as Replicate shows one; `urls.get` is what
    Replicate's clients give a model as the input (app.services.files)."""
    base = base or settings.SITE_URL
    return {
        "id": found.id,
        "name": found.name,
        "content_type": found.content_type,
        "size": found.size,
        "etag": found.sha256,
        "checksums": {"sha256": found.sha256},
        "metadata": found.metadata,
        "created_at": _iso(found.created_at),
        "expires_at": _iso(found.expires_at),
        "urls": {"get": base + reverse("api:file", args=[found.id])},
    }


def account_json(user):
    return {
        "type": "user",
        "username": user.username,
        "name": user.get_full_name() or user.username,
        "github_url": None,
    }


def deployment_json(deployment):
    return {
        "owner": deployment.owner.username,
        "name": deployment.name,
        "current_release": {
            "number": deployment.release,
            "model": str(deployment.version.model),
            "version": deployment.version_id,
            "created_at": _iso(deployment.released_at),
            "created_by": account_json(deployment.released_by or deployment.owner),
            "configuration": {
                "hardware": deployment.hardware,
                "min_instances": deployment.min_instances,
                "max_instances": deployment.max_instances,
            },
        },
    }


def collection_json(collection, models=None, base=None):
    """A collection (app.services.collections); `models`, those its reader
    may see, for the collection's own page (the list leaves them out, as Replicate's)."""
    payload = {
        "name": collection.name,
        "slug": collection.slug,
        "description": collection.description,
    }
    if models is not None:
        payload["full_description"] = collection.full_description or None
        payload["models"] = [model_json(model, base, run_count=getattr(model, "run_count", 0)) for model in models]
    return payload


# --- Outbound webhooks, signed as Replicate signs them (Standard Webhooks) ---


def webhook_secret(user, key=None):
    """Each user's signing secret, served at /v1/webhooks/default/secret:
    derived from the secret key (`key`, default SECRET_KEY) with a salt of its
    own, so nothing secret is stored, and rotating a leaked key rotates these
    too. It stays the same while the key does, as Replicate's does."""
    digest = salted_hmac("lightbox.webhook-secret", f"user:{user.pk}", secret=key, algorithm="sha256").digest()
    return "whsec_" + base64.b64encode(digest[:24]).decode()


def webhook_headers(prediction, body):
    message_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    if prediction.owner is None:
        return {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    # One signature per key, the current one and each of SECRET_KEY_FALLBACKS
    # (Standard Webhooks receivers accept any that matches): a receiver that
    # still holds the secret from before a key rotation keeps verifying until
    # the old key is dropped, and fetches the new secret meanwhile.
    sent_at = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    signature = " ".join(
        Webhook(webhook_secret(prediction.owner, key)).sign(message_id, sent_at, body)
        for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    )
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
