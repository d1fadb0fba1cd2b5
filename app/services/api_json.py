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


# --- Reproducibility bundles (Lightbox extension; docs/bundles.md) ---


def reproduction_json(reproduction, items, base):
    """A bundle imported (or a re-run on the latest versions): how its
    versions were mapped, what could not run, and each image's verdict."""
    return {
        "id": reproduction.id,
        "kind": reproduction.kind,
        "title": reproduction.title,
        "created_at": _iso(reproduction.created_at),
        "source": reproduction.source,
        "versions": reproduction.mapping,
        "skipped": reproduction.skipped,
        "comparison": reproduction.comparison_id,
        "grid": reproduction.grid_id,
        "benchmark": reproduction.benchmark_id,
        "items": [
            {
                "position": item.position,
                "source_prediction": item.source_prediction,
                "prediction": item.prediction_id,
                "index": item.index,
                "expected_pixel_sha256": item.expected_pixels,
                "verdict": item.verdict,
                "distance": item.distance,
            }
            for item in items
        ],
        "urls": {
            "get": f"{base}/v1/bundles/{reproduction.id}",
            "web": f"{base}{reproduction.get_absolute_url()}",
        },
    }


# --- bench: prompt sets and benchmark runs (Lightbox's own /v1 endpoints) ---


def prompt_set_json(prompt_set, categories):
    return {
        "id": prompt_set.pk,
        "slug": prompt_set.slug,
        "name": prompt_set.name,
        "shipped": prompt_set.owner_id is None,
        "description": prompt_set.description,
        "license": prompt_set.license,
        "attribution": prompt_set.attribution,
        "source_url": prompt_set.source_url,
        "prompt_count": sum(count for _, count in categories),
        "categories": [{"name": name, "prompt_count": count} for name, count in categories],
    }


def benchmark_json(run, base=None, summary=None, versions=None):
    """A benchmark run; with `summary` (app.services.benchmarks.summary), its
    progress and per-version results."""
    base = base or settings.SITE_URL
    payload = {
        "id": run.pk,
        "title": run.title,
        "prompt_set": run.prompt_set_id,
        "category": run.category or None,
        "sample_size": run.sample_size,
        "sample_seed": run.sample_seed,
        "seeds": run.seeds,
        "input": run.input,
        "visibility": run.visibility,
        "baseline": run.baseline_id,
        "created_at": _iso(run.created_at),
        "urls": {
            "get": f"{base}/v1/benchmarks/{run.pk}",
            "predictions": f"{base}/v1/benchmarks/{run.pk}/predictions",
            "stop": f"{base}/v1/benchmarks/{run.pk}/stop",
            "resume": f"{base}/v1/benchmarks/{run.pk}/resume",
            "web": f"{base}/b/{run.pk}",
        },
    }
    if versions is not None:
        payload["versions"] = [f"{version.model}:{version.pk}" for version in versions]
    if summary is not None:
        payload["status"] = summary["state"]
        payload["note"] = summary["note"] or None
        payload["progress"] = {
            key: summary[key]
            for key in (
                "planned_predictions",
                "planned_comparisons",
                "started_comparisons",
                "skipped",
                "done",
                "succeeded",
                "failed",
                "canceled",
                "active",
                "percent",
            )
        }
        payload["cost"] = str(summary["cost"])
        payload["summary"] = [
            {
                "version": f"{row['version'].model}:{row['version'].pk}",
                "succeeded": row["succeeded"],
                "failed": row["failed"],
                "canceled": row["canceled"],
                "active": row["active"],
                "failure_rate": row["failure_rate"],
                "median_predict_time": row["median_predict_time"],
                "cost": str(row["cost"]),
            }
            for row in summary["versions"]
        ]
        payload["categories"] = [dict(row) for row in summary["categories"]]
    return payload


# --- grids (issue 14): Lightbox's own /v1 extension, not Replicate's ---


def grid_json(grid, base=None, counts=None):
    """A grid as /v1/grids shows it; `counts`, {status: n} of its predictions."""
    base = base or settings.SITE_URL
    counts = counts or {}
    done = sum(n for status, n in counts.items() if status in ("succeeded", "failed", "canceled"))
    active = sum(n for status, n in counts.items() if status in ("starting", "processing"))
    if grid.canceled_at:
        status = "canceled"
    elif grid.materialised_at and not active:
        status = "finished"
    else:
        status = "running"
    api = base + f"/v1/grids/{grid.id}"
    return {
        "id": grid.id,
        "status": status,
        "input": grid.input,
        "seed": grid.seed,
        "versions": grid.version_ids,
        "axes": [
            {
                "name": name,
                "kind": axis["kind"],
                "field": axis["field"],
                "text": axis["text"],
                "values": axis["values"],
                "labels": axis["labels"],
            }
            for name, axis in zip("XYZ", grid.axes)
        ],
        "cells": grid.planned,
        "counts": {
            "started": sum(counts.values()),
            "done": done,
            **{k: counts.get(k, 0) for k in ("succeeded", "failed", "canceled")},
        },
        "not_run": grid.problems,
        "visibility": grid.visibility,
        "created_at": _iso(grid.created_at),
        "canceled_at": _iso(grid.canceled_at),
        "urls": {
            "get": api,
            "cancel": api + "/cancel",
            "predictions": api + "/predictions",
            "web": base + f"/g/{grid.id}",
            "png": base + f"/g/{grid.id}/grid.png",
            "zip": base + f"/g/{grid.id}/grid.zip",
        },
    }


# --- end grids ---
# --- Comparisons (Lightbox's own /v1 operations) ------------------------------------


def comparison_json(comparison, base=None, predictions=None, outputs=None, viewer=None):
    """A comparison as /v1/comparisons shows it: one input on several versions,
    its predictions in full. `predictions` (with `outputs`, {prediction id:
    [Output]}) when the caller loaded them; `viewer` as for prediction_json."""
    base = base or settings.SITE_URL
    predictions = list(comparison.predictions.all()) if predictions is None else predictions
    outputs = outputs_by_prediction(predictions) if outputs is None else outputs
    url = base + reverse("api:comparison", args=[comparison.id])
    return {
        "id": comparison.id,
        "input": comparison.input,
        "seed": comparison.seed,
        "extra_input": comparison.extra_input,
        # Per version id: what the mapping changed to fit that version's schema.
        "changes": comparison.changes,
        "visibility": comparison.visibility,
        "created_at": _iso(comparison.created_at),
        "grid": comparison.grid_id,
        "benchmark": comparison.benchmark_id,
        "predictions": [prediction_json(p, base, outputs.get(p.pk, []), viewer) for p in predictions],
        "urls": {"get": url, "predictions": f"{url}/predictions", "web": f"{base}/c/{comparison.id}"},
    }
