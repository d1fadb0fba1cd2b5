"""Deployments: a version pinned under a name, run on its version's pool of
instances (app.services.pools). Create, change (each change is a release) and
delete, with every field checked before anything is saved."""

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from app.core import hardware
from app.core.errors import FieldErrors
from app.models import Deployment, Model, Prediction, Version

FIELDS = ("name", "model", "version", "hardware", "min_instances", "max_instances")
UPDATABLE = ("version", "hardware", "min_instances", "max_instances")


class Invalid(FieldErrors):
    """Fields that cannot be used."""


class Conflict(Exception):
    """The change cannot be made in the deployment's present state."""


def _instances(body, errors, current=None):
    """min_instances and max_instances as Replicate bounds them, min <= max."""
    values = {}
    for field, upper in (
        ("min_instances", Deployment.MAX_MIN_INSTANCES),
        ("max_instances", Deployment.MAX_MAX_INSTANCES),
    ):
        if field not in body and current is None:
            continue  # required: said once, by create
        value = body.get(field, getattr(current, field, None))
        lower = 1 if field == "max_instances" else 0
        if isinstance(value, bool) or not isinstance(value, int) or not lower <= value <= upper:
            errors[field] = [f"An integer from {lower} to {upper}."]
        else:
            values[field] = value
    if len(values) == 2 and values["min_instances"] > values["max_instances"]:
        errors["min_instances"] = ["At most max_instances."]
    return values


def _hardware(body, errors, current=None):
    value = body.get("hardware", getattr(current, "hardware", None))
    if not (isinstance(value, str) and value in hardware.SKUS):
        errors["hardware"] = [f"One of: {', '.join(sku for sku, _ in hardware.HARDWARE)} (GET /v1/hardware)."]
    return value


def _version(model, version_id, errors):
    if not isinstance(version_id, str) or not version_id or "\x00" in version_id:
        errors["version"] = ["The id of a version of the model."]
        return None
    version = Version.objects.filter(model=model, pk=version_id).first()
    if version is None:
        errors["version"] = [f"{model} has no version {version_id!r}."]
    return version


def _unknown(body, allowed, errors):
    for field in body:
        if field not in allowed:
            errors[field] = [f"Unknown field; the fields are {', '.join(allowed)}."]


def create(owner, body):
    """A new deployment of `owner`'s from the API's create body."""
    errors = {}
    _unknown(body, FIELDS, errors)
    for field in FIELDS:
        if field not in body:
            errors[field] = ["This field is required."]
    name = body.get("name")
    if "name" in body and not (isinstance(name, str) and name and slugify(name) == name and len(name) <= 100):
        errors["name"] = ["Lowercase letters, digits, - and _ (at most 100)."]
    model_ref = body.get("model")
    model = None
    if "model" in body:
        plain = isinstance(model_ref, str) and "\x00" not in model_ref  # PostgreSQL refuses a NUL
        owner_name, _, model_name = model_ref.partition("/") if plain else ("", "", "")
        model = Model.objects.filter(owner=owner_name, name=model_name).first() if model_name else None
        if model is None:
            errors["model"] = [f"No model {model_ref!r} (give owner/name)."]
    version = _version(model, body.get("version"), errors) if model is not None and "version" in body else None
    hardware = _hardware(body, errors) if "hardware" in body else None
    instances = _instances(body, errors)
    if errors:
        raise Invalid(errors)
    try:
        with transaction.atomic():
            return Deployment.objects.create(
                owner=owner, name=name, version=version, hardware=hardware, released_by=owner, **instances
            )
    except IntegrityError:
        raise Invalid({"name": [f"You already have a deployment named {name!r}."]}) from None


def update(deployment, body, user):
    """Change the version or the configuration: a new release. Predictions
    made before keep their version, so those waiting in the queue still run
    (on the old version's pool); new ones run the new version."""
    errors = {}
    _unknown(body, UPDATABLE, errors)
    changes = {}
    if "version" in body:
        version = _version(deployment.version.model, body["version"], errors)
        if version is not None:
            changes["version"] = version
    if "hardware" in body:
        changes["hardware"] = _hardware(body, errors, deployment)
    changes.update(_instances(body, errors, deployment))
    if not body:
        errors["body"] = [f"Give at least one of: {', '.join(UPDATABLE)}."]
    if errors:
        raise Invalid(errors)
    for field, value in changes.items():
        setattr(deployment, field, value)
    deployment.release += 1
    deployment.released_at, deployment.released_by = timezone.now(), user
    deployment.save()
    return deployment


def delete(deployment):
    """Delete a deployment with nothing running or waiting (Replicate, too,
    deletes only idle deployments); its past predictions stay."""
    with transaction.atomic():
        if Prediction.objects.active().filter(deployment=deployment).exists():
            raise Conflict("The deployment has predictions running or waiting; cancel them or wait for them to end.")
        deployment.delete()
