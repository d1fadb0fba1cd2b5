"""One input, several versions: the mapping of docs/architecture.md ("Comparisons").

A value the user gave that a version accepts is kept; a common field the user
left empty gets that version's own default (SDXL 1024², SD 1.5 512², Turbo's
few steps); a field a version lacks is left out for it; a number outside its
range is brought to the nearest bound, and a value not among its choices is
replaced by its default. (The playground refuses a value no chosen version
takes, so this only fits values some versions take to the others.) Every change is
recorded, so the comparison page can list it. One seed for all.
"""

import dataclasses
import secrets

from django.conf import settings
from django.db import transaction

from app.core import schema
from app.models import Comparison, Prediction
from app.services import catalog, predictions, scheduling

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


@dataclasses.dataclass
class Cell:
    """One comparison of a batch (`start_many`): `input` as the user gave it
    (mapped to each version as `start` maps it), on `versions`, with `seed`
    (None: one is picked), `extra_input` ({version id: {field: value}}), and
    the comparison's place in its grid or benchmark run (`place`: grid_x,
    grid_y, grid_z, benchmark_prompt)."""

    versions: list
    input: dict
    seed: int | None = None
    extra_input: dict = dataclasses.field(default_factory=dict)
    place: dict = dataclasses.field(default_factory=dict)


def start_many(cells, *, owner=None, visibility=None, grid=None, benchmark=None):
    """Save the comparisons of a grid or a benchmark run (`grid` or
    `benchmark`, saved already) and their predictions, all or nothing, fast:
    each cell is mapped and checked as `start` checks one, then one
    transaction admits the whole batch and bulk-creates the comparisons and
    the predictions, held for the fair scheduler (predictions.start_many):
    no broker message per prediction, and another user's prediction does not
    wait behind them. Raises schema.InputError (keys "<cell index>.<model>",
    the first errors only) or limits.RunRefused, saving nothing. Returns the
    comparisons in the order of `cells`.

    For the materialisation task of a grid or a benchmark run: 10,000
    predictions are saved in seconds (bench/fairness.py)."""
    if (grid is None) == (benchmark is None):
        raise ValueError("start_many saves the comparisons of one grid or one benchmark run")
    visibility = visibility or settings.DEFAULT_WEB_VISIBILITY
    comparisons, items, errors = [], [], {}
    plans_of = {}
    for index, cell in enumerate(cells):
        versions = list(dict.fromkeys(cell.versions))
        if not versions:
            errors[f"{index}.versions"] = ["Pick at least one model version."]
            continue
        given = {k: v for k, v in cell.input.items() if v not in (None, "") and k != "seed"}
        seed = cell.seed if cell.seed is not None else pick_seed(versions)
        extra = {
            version_id: {k: v for k, v in values.items() if v not in (None, "")}
            for version_id, values in (cell.extra_input or {}).items()
        }
        extra = {version_id: values for version_id, values in extra.items() if values}
        plans = []
        for version in versions:
            if version.pk not in plans_of:
                catalog.ensure_schema(version)
                plans_of[version.pk] = True
            effective, changes = map_input(version, {**given, "seed": seed, **extra.get(version.id, {})})
            plans.append((version, effective, changes))
        comparison = Comparison(
            owner=owner,
            input=given,
            seed=seed,
            extra_input=extra,
            visibility=visibility,
            changes={version.id: changes for version, _, changes in plans},
            grid=grid,
            benchmark=benchmark,
            **cell.place,
        )
        comparisons.append(comparison)
        items += [(version, effective, comparison) for version, effective, _ in plans]
    if errors:
        raise schema.InputError(errors)
    try:
        with transaction.atomic():
            Comparison.objects.bulk_create(comparisons, batch_size=1000)
            predictions.start_many(items, owner=owner, source=Prediction.Source.WEB, visibility=visibility)
    except schema.InputError as exc:
        # Name the cell and the model, as comparisons name the model.
        raise schema.InputError(_per_cell(exc.errors, items, comparisons)) from None
    return comparisons


def _per_cell(errors, items, comparisons):
    """predictions.start_many's "<item index>.<field>" keys as "<cell index>.<model>"."""
    cell_of = {comparison.pk: index for index, comparison in enumerate(comparisons)}
    named = {}
    for key, messages in errors.items():
        head, _, field_name = key.partition(".")
        if head.isdigit() and int(head) < len(items):
            version, _, comparison = items[int(head)]
            head = f"{cell_of[comparison.pk]}.{version.model}"
        named.setdefault(head, []).extend(
            message if field_name in ("version", "input") else f"{field_name}: {message}" for message in messages
        )
    return named


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
    # Those still held by the scheduler at once, in one statement (a grid's thousands).
    held = scheduling.cancel_held(comparison.predictions.all())
    return held + sum(1 for prediction in comparison.predictions.active() if predictions.cancel(prediction))
