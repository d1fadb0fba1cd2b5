"""The default catalog: the five Stable Diffusion models of the guide, on
Replicate and on Lightbox's own Cog servers, plus the tiny smoke-test models."""

import hashlib
import json
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app.core import jobs
from app.models import Model, Version, Watch
from app.services import backends, pools
from app.services.backends import BackendError

REPLICATE_CATALOG = Path(__file__).parent / "catalog_data" / "replicate.json"

# name -> (port offset, description, what the server loads[, family]). Ports
# are LIGHTBOX_COG_BASE_PORT + offset (5101 up by default), so two checkouts
# can run side by side; tiny models are written to var/models by `python -m
# inference.tiny` and take Turbo defaults (1-4 steps), so a CPU answers in
# about a second.
LOCAL_MODELS = {
    "tiny-sd": (
        1,
        "Tiny random-weight SD-shaped pipeline: a smoke test that always runs, no download.",
        "var/models/tiny-sd",
        "sd-turbo",
    ),
    "tiny-sdxl": (
        2,
        "Tiny random-weight SDXL-shaped pipeline: a smoke test that always runs, no download.",
        "var/models/tiny-sdxl",
        "sdxl-turbo",
    ),
    "sd-turbo": (3, "SD Turbo, served by Lightbox's own Cog server.", "stabilityai/sd-turbo"),
    "sdxl-turbo": (4, "SDXL Turbo, served by Lightbox's own Cog server.", "stabilityai/sdxl-turbo"),
    "sd-1.5": (
        5,
        "Stable Diffusion 1.5, served by Lightbox's own Cog server.",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
    ),
    "sd-2.1": (6, "Stable Diffusion 2.1, served by Lightbox's own Cog server.", "stabilityai/stable-diffusion-2-1"),
    "sdxl": (7, "SDXL 1.0, served by Lightbox's own Cog server.", "stabilityai/stable-diffusion-xl-base-1.0"),
}


def local_port(name, index=0):
    """The port of instance `index` of a local model: its own port for the
    first, then + 10 for each next one (tiny-sd*3: 5101, 5111, 5121)."""
    return settings.COG_BASE_PORT + LOCAL_MODELS[name][0] + 10 * index


def local_url(name, index=0):
    return f"http://{settings.COG_HOST}:{local_port(name, index)}"


def local_urls(name):
    """Every server `make run` starts for local/`name` (LIGHTBOX_LOCAL_MODELS)."""
    return [local_url(name, index) for index in range(settings.LOCAL_POOLS.get(name, 1))]


# --- trainer (issue 13): where a local model's trainer listens ---------------
# Past every predictor instance's port (+ 10 per instance, at most
# MAX_LOCAL_INSTANCES), so the two never meet.
TRAINER_PORT_OFFSET = 200


def local_trainer_port(name):
    """The port of local/`name`'s trainer (`manage.py serve_trainer NAME`)."""
    return settings.COG_BASE_PORT + TRAINER_PORT_OFFSET + LOCAL_MODELS[name][0]


def local_trainer_url(name):
    return f"http://{settings.COG_HOST}:{local_trainer_port(name)}"


# --- end trainer ---------------------------------------------------------------


def how_to_start(version):
    """What whoever runs Lightbox does to bring an offline version back, in
    words for the pages ("" when its reason already says it)."""
    if version.backend == Version.Backend.REPLICATE:
        return ""
    model = version.model
    if model.owner == "local" and model.name in LOCAL_MODELS and version.location == local_url(model.name):
        return (
            f"start it with python manage.py serve_model {model.name} "
            f'(or LIGHTBOX_LOCAL_MODELS="{model.name}" make run)'
        )
    return f"start the model server at {version.location}"


def cog_version_id(location, openapi_schema=None):
    """A version is one build: the same server with another schema is another version."""
    material = location + (json.dumps(openapi_schema, sort_keys=True) if openapi_schema else "")
    return hashlib.sha256(material.encode()).hexdigest()


@transaction.atomic
def add_version(
    owner,
    name,
    backend,
    location,
    openapi_schema=None,
    cog_version="",
    description="",
    version_id=None,
    created_at=None,
):
    model, _ = Model.objects.get_or_create(owner=owner, name=name, defaults={"description": description})
    if description and model.description != description:
        model.description = description
        model.save(update_fields=["description"])
    version_id = version_id or cog_version_id(location, openapi_schema)
    defaults = {
        "model": model,
        "backend": backend,
        "location": location,
        "cog_version": cog_version,
        "timeout": settings.PREDICTION_TIMEOUT,
    }
    if openapi_schema:
        defaults["openapi_schema"] = openapi_schema
    if created_at:
        defaults["created_at"] = created_at
    version, created = Version.objects.update_or_create(pk=version_id, defaults=defaults)
    if created:
        # Watchers of the model get their reference benchmark run on it (after
        # commit). Queued by name: benchmarks imports this module's callers.
        if Watch.objects.filter(model_id=version.model_id).exists():
            jobs.after_commit("tasks.benchmarks.on_new_version", version.pk, robust=True)
    return version


def import_version(ref, model_name=None):
    """Add a version from a Cog server URL or a Replicate "owner/name:version"."""
    if ref.startswith(("http://", "https://")):
        location = ref.rstrip("/")
        schema, cog_version = backends.cog.fetch_schema(location)
        owner, _, name = (model_name or _name_from_url(location)).partition("/")
        return add_version(owner, name, "cog", location, schema, cog_version)
    owner, name, version_id = backends.replicate.split_location(ref)
    schema, cog_version = backends.replicate.fetch_schema(ref)
    return add_version(owner, name, "replicate", ref, schema, cog_version, version_id=version_id)


def _name_from_url(url):
    host = url.split("://", 1)[1].split("/", 1)[0].replace(":", "-").replace(".", "-")
    return f"cog/{host}"


def load_default():
    """Idempotent: add the default catalog's models and versions."""
    versions = []
    if REPLICATE_CATALOG.exists():
        for entry in json.loads(REPLICATE_CATALOG.read_text()):
            versions.append(
                add_version(
                    entry["owner"],
                    entry["name"],
                    "replicate",
                    f"{entry['owner']}/{entry['name']}:{entry['version_id']}",
                    entry["openapi_schema"],
                    entry.get("cog_version", ""),
                    entry.get("description", ""),
                    version_id=entry["version_id"],
                    created_at=entry.get("created_at"),
                )
            )
    for name, (_, description, *_) in LOCAL_MODELS.items():
        location = local_url(name)
        try:
            schema, cog_version = backends.cog.fetch_schema(location)
        except BackendError:
            existing = Version.objects.filter(model__owner="local", model__name=name, location=location).first()
            versions.append(existing or add_version("local", name, "cog", location, description=description))
            continue
        versions.append(add_version("local", name, "cog", location, schema, cog_version, description))
    for version in versions:
        if version.model.owner == "local" and version.model.name in LOCAL_MODELS:
            # Several servers (LIGHTBOX_LOCAL_MODELS="tiny-sd*3"): a pool;
            # one: the version's own server, as before pools.
            urls = local_urls(version.model.name)
            pools.set_instances(version, urls if len(urls) > 1 else [])
            # Fine-tuning (trainapi): its trainer, when LIGHTBOX_LOCAL_TRAINERS names it.
            trainer = local_trainer_url(version.model.name) if version.model.name in settings.LOCAL_TRAINERS else ""
            if version.trainer_location != trainer:
                version.trainer_location = trainer
                version.save(update_fields=["trainer_location"])
    return versions


def refresh_availability(version, max_age=10):
    """Ask the backend whether `version` can run now, at most every `max_age`
    seconds, and read its schema if it has none yet (catalogued while its
    server was down). Pages and /healthz read the stored state; the
    beat calls this for every version (tasks.predictions.refresh_versions)."""
    if version.checked_at and (timezone.now() - version.checked_at).total_seconds() < max_age:
        return version.available
    backend = backends.for_version(version)
    reason = pools.check_all(version) if pools.is_pooled(version) else backend.check(version)
    if not reason and not version.openapi_schema:
        try:
            version.openapi_schema, version.cog_version = backend.fetch_schema(version.location)
            version.save(update_fields=["openapi_schema", "cog_version"])
        except BackendError as exc:
            reason = str(exc)
    version.set_availability(not reason, reason)
    return version.available


def ensure_schema(version):
    """Read the schema of a version catalogued before its server answered
    (right after `make run`), rather than refuse its first run."""
    if not version.openapi_schema:
        refresh_availability(version, max_age=0)


def refresh_all(max_age):
    """Refresh every version whose state is older than `max_age` seconds (the
    beat's job: pages and /healthz only read the stored state)."""
    for version in Version.objects.select_related("model"):
        refresh_availability(version, max_age=max_age)


def wait_for_local(names, timeout, interval=0.5):
    """Wait until the local servers `names` answer their health check (or
    `timeout` seconds pass); returns the names that still do not answer."""
    waiting = {url: name for name in names for url in local_urls(name)}
    deadline = time.monotonic() + timeout
    while waiting:
        waiting = {url: name for url, name in waiting.items() if backends.cog.check_url(url)}
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return sorted(set(waiting.values()))
