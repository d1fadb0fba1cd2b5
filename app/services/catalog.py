"""The default catalog: the five Stable Diffusion models of the guide, on
Replicate and on Lightbox's own Cog servers, plus the tiny smoke-test models."""

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from app.services import backends
from app.services.backends import BackendError
from app.models import Model, Version

REPLICATE_CATALOG = Path(__file__).parent / "catalog_data" / "replicate.json"

# name -> (port, description, what the server loads[, family]). Ports from 5100
# up (DESIGN.md); tiny models are written to var/models by `python -m
# inference.tiny` and take Turbo defaults (1-4 steps), so a CPU answers in
# about a second.
LOCAL_MODELS = {
    "tiny-sd": (5101, "Tiny random-weight SD-shaped pipeline: a smoke test that always runs, no download.",
                "var/models/tiny-sd", "sd-turbo"),
    "tiny-sdxl": (5102, "Tiny random-weight SDXL-shaped pipeline: a smoke test that always runs, no download.",
                  "var/models/tiny-sdxl", "sdxl-turbo"),
    "sd-turbo": (5103, "SD Turbo, served by Lightbox's own Cog server.", "stabilityai/sd-turbo"),
    "sdxl-turbo": (5104, "SDXL Turbo, served by Lightbox's own Cog server.", "stabilityai/sdxl-turbo"),
    "sd-1.5": (5105, "Stable Diffusion 1.5, served by Lightbox's own Cog server.",
               "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "sd-2.1": (5106, "Stable Diffusion 2.1, served by Lightbox's own Cog server.", "stabilityai/stable-diffusion-2-1"),
    "sdxl": (5107, "SDXL 1.0, served by Lightbox's own Cog server.", "stabilityai/stable-diffusion-xl-base-1.0"),
}


def local_url(name):
    return f"http://{settings.COG_HOST}:{LOCAL_MODELS[name][0]}"


def cog_version_id(location, openapi_schema=None):
    """A version is one build: the same server with another schema is another version."""
    material = location + (json.dumps(openapi_schema, sort_keys=True) if openapi_schema else "")
    return hashlib.sha256(material.encode()).hexdigest()


@transaction.atomic
def add_version(owner, name, backend, location, openapi_schema=None, cog_version="", description="",
                version_id=None, created_at=None):
    model, _ = Model.objects.get_or_create(owner=owner, name=name, defaults={"description": description})
    if description and model.description != description:
        model.description = description
        model.save(update_fields=["description"])
    version_id = version_id or cog_version_id(location, openapi_schema)
    defaults = {"model": model, "backend": backend, "location": location, "cog_version": cog_version,
                "timeout": settings.PREDICTION_TIMEOUT}
    if openapi_schema:
        defaults["openapi_schema"] = openapi_schema
    if created_at:
        defaults["created_at"] = created_at
    version, _ = Version.objects.update_or_create(pk=version_id, defaults=defaults)
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
    return versions
