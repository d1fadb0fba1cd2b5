"""One input, several versions: the mapping of docs/architecture.md ("Comparisons").

A value the user gave that a version accepts is kept; a common field the user
left empty gets that version's own default (SDXL 1024², SD 1.5 512², Turbo's
few steps); a field a version lacks is left out for it; a number outside its
range is brought to the nearest bound, and a value not among its choices is
replaced by its default. (The playground refuses a value no chosen version
takes, so this only fits values some versions take to the others.) Every change is
recorded, so the comparison page can list it. One seed for all.
"""

import secrets

from django.conf import settings
from django.db import transaction

from app.core import schema
from app.models import Comparison, Prediction
from app.services import catalog, predictions

# Fields the playground shows once for all versions, in this order. A version
# that lacks one simply does not get it.
COMMON_FIELDS = (
    "prompt",
    "negative_prompt",
    "image",
    "mask",
    "prompt_strength",
    "width",
    "height",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "num_outputs",
    "seed",
)

KEPT, DEFAULTED, REPLACED, DROPPED = "kept", "default", "replaced", "dropped"


def change(field, given, used, kind, reason):
    return {"field": field, "given": given, "used": used, "kind": kind, "reason": reason}


def misfit(spec, value):
    """Why `value` does not fit a property schema, or "" when it does."""
    kind = spec.get("type")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return "not a whole number"
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "not a number"
    if kind == "string" and not isinstance(value, str):
        return "not text"
    if kind == "boolean" and not isinstance(value, bool):
        return "not true or false"
    if "enum" in spec and value not in spec["enum"]:
        return "not one of its choices"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            return f"below its minimum {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"above its maximum {spec['maximum']}"
        if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
            return f"not above {spec['exclusiveMinimum']}"
        if "exclusiveMaximum" in spec and value >= spec["exclusiveMaximum"]:
            return f"not below {spec['exclusiveMaximum']}"
    return ""


def _nearest_bound(spec, value):
    """The bound a number past a version's minimum or maximum is brought back
    to (a width of 2048 for a model that goes up to 1024 runs at 1024, not at
    its default); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or spec.get("type") not in ("integer", "number"):
        return None
    for key, past in (("minimum", value < spec.get("minimum", value)), ("maximum", value > spec.get("maximum", value))):
        if past and isinstance(spec[key], (int, float)):
            return spec[key]
    return None


def map_input(version, given):
    """(effective input, changes) of `given` for one version."""
    specs = schema.field_specs(version)
    effective, changes = {}, []
    for field, value in given.items():
        spec = specs.get(field)
        if spec is None:
            changes.append(change(field, value, None, DROPPED, "this version has no such input"))
            continue
        if spec.get("type") == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)
        problem = misfit(spec, value)
        nearest = _nearest_bound(spec, value) if problem else None
        if not problem:
            effective[field] = value
        elif nearest is not None:
            effective[field] = nearest
            changes.append(change(field, value, nearest, REPLACED, f"{problem}, the nearest it takes"))
        elif spec.get("default") is not None:
            effective[field] = spec["default"]
            changes.append(change(field, value, spec["default"], REPLACED, f"{problem}; its default is used"))
        else:
            changes.append(change(field, value, None, DROPPED, f"{problem}; left out"))
    for field in COMMON_FIELDS:
        spec = specs.get(field)
        if field not in given and spec and spec.get("default") is not None:
            effective[field] = spec["default"]
            changes.append(change(field, None, spec["default"], DEFAULTED, "left empty: this version's default"))
    return effective, changes


def pick_seed(versions):
    """A seed every version accepts."""
    top = schema.MAX_SEED
    for version in versions:
        spec = schema.field_specs(version).get("seed", {})
        top = min(top, spec.get("maximum", top))
    return secrets.randbelow(top + 1)


def _prepare(versions, given, seed, extra_input):
    """Map and validate for every version before anything is saved."""
    plans, errors = [], {}
    for version in versions:
        catalog.ensure_schema(version)
        effective, changes = map_input(version, {**given, "seed": seed, **extra_input.get(version.id, {})})
        try:
            effective = schema.validate_input(version, effective)
            if not catalog.refresh_availability(version):
                raise schema.InputError({"version": [f"unavailable: {version.unavailable_reason}"]})
        except schema.InputError as exc:
            errors[str(version.model)] = [
                message if field in ("version", "input") else f"{field}: {message}"
                for field, messages in exc.errors.items()
                for message in messages
            ]
            continue
        plans.append((version, effective, changes))
    if errors:
        raise schema.InputError(errors)
    return plans


def check(versions, given, seed):
    """Raise schema.InputError when `given` (with `seed`) cannot run on every
    one of `versions`; saves nothing (a benchmark run checks its input once)."""
    _prepare(versions, given, seed, {})


def start(
    versions, given, *, owner=None, visibility=None, seed=None, extra_input=None, benchmark=None, benchmark_prompt=None
):
    versions = list(dict.fromkeys(versions))
    if not versions:
        raise schema.InputError({"versions": ["Pick at least one model version."]})
    given = {field: value for field, value in given.items() if value not in (None, "") and field != "seed"}
    if seed is None:
        seed = pick_seed(versions)
    extra_input = {
        version.id: {k: v for k, v in (extra_input or {}).get(version.id, {}).items() if v not in (None, "")}
        for version in versions
    }
    extra_input = {version_id: values for version_id, values in extra_input.items() if values}
    plans = _prepare(versions, given, seed, extra_input)
    visibility = visibility or settings.DEFAULT_WEB_VISIBILITY
    with transaction.atomic():
        comparison = Comparison.objects.create(
            owner=owner,
            input=given,
            seed=seed,
            extra_input=extra_input,
            visibility=visibility,
            changes={version.id: changes for version, _, changes in plans},
            benchmark=benchmark,
            benchmark_prompt=benchmark_prompt,
        )
        for version, effective, _ in plans:
            predictions.start(
                version,
                effective,
                owner=owner,
                source=Prediction.Source.WEB,
                visibility=visibility,
                comparison=comparison,
            )
    return comparison


def add_version(comparison, version):
    [(version, effective, changes)] = _prepare([version], comparison.input, comparison.seed, {})
    with transaction.atomic():
        row = Comparison.objects.select_for_update().get(pk=comparison.pk)
        row.changes[version.id] = changes
        row.save(update_fields=["changes"])
        prediction = predictions.start(
            version,
            effective,
            owner=comparison.owner,
            source=Prediction.Source.WEB,
            visibility=comparison.visibility,
            comparison=comparison,
        )
    comparison.refresh_from_db()
    return prediction


def cancel(comparison):
    """Cancel every prediction still running; returns how many were."""
    return sum(1 for prediction in comparison.predictions.active() if predictions.cancel(prediction))
