"""Grids (X/Y/Z plots): plan, estimate, create, materialise, cancel, re-run.

A grid is one input with up to three axes (app.core.axes). Its cells across
the model axis are one Comparison each (grid, grid_x/y/z; the model axis's
coordinate is 0), so the comparison mapping (comparisons.map_input), the
comparison cards, moderation and sharing all work on grid cells as they are.
Without a model axis the grid has one version and each cell is a comparison
of one prediction.

Creating a grid checks everything that can be checked at once (the axes,
the cell cap, the base input against every version, the limits that would
refuse it outright) and saves one Grid row; the cells are started by the
Celery task tasks.grids.materialise_grid (ids in, idempotent), each through
predictions.start so every check a prediction gets applies. A limit that
only paces the grid (predictions at once, a minute) makes the task stop and
come back when the limit says it may go on.
"""

import itertools
import secrets
import statistics
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, FilteredRelation, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Left
from django.utils import timezone

from app.core import axes as axes_core
from app.core import jobs, schema
from app.core.errors import FieldErrors
from app.models import Access, Comparison, Grid, Output, Prediction, Version
from app.services import catalog, comparisons, limits, predictions, storage

NOT_APPLICABLE, ERROR = "n/a", "error"


class GridError(FieldErrors):
    """A grid that cannot start; its fields are axis_x, axis_y, axis_z,
    versions, input, cells..."""


@dataclass
class Cell:
    """One table cell: one version's prediction at `coords` (one index per axis)."""

    coords: tuple
    version: Version
    input: dict
    effective: dict = None
    changes: list = field(default_factory=list)
    reason: str = ""  # why it does not apply to this version, or ""


def cell_key(coords, version_id):
    return ".".join(str(c) for c in coords) + "." + version_id


def comparison_coords(coords, kinds):
    """(x, y, z) of the comparison holding a cell: the model axis's index is 0."""
    padded = list(coords) + [0] * (3 - len(coords))
    return tuple(0 if i < len(kinds) and kinds[i] == "version" else c for i, c in enumerate(padded))


def field_specs(versions):
    """{field: property schema} of every field a chosen version has (the
    first that has it), in schema order."""
    specs = {}
    for version in versions:
        for name, spec in schema.field_specs(version).items():
            specs.setdefault(name, spec)
    return specs


def version_label(version):
    return f"{version.model} {version.id[:8]}"


def build_axes(versions, given, raw_axes):
    """The axes as stored, from what the user typed: [{"kind", "field", "text"}].
    Raises GridError naming the axis (axis_x...)."""
    specs = field_specs(versions)
    max_seed = min(
        [schema.field_specs(v).get("seed", {}).get("maximum", axes_core.MAX_SEED) for v in versions]
        or [axes_core.MAX_SEED]
    )
    if len(raw_axes) > axes_core.MAX_AXES:
        raise GridError({"axes": [f"A grid has at most {axes_core.MAX_AXES} axes (X, Y and Z)."]})
    built, errors = [], {}
    for name, raw in zip(axes_core.AXIS_NAMES, raw_axes):
        key = f"axis_{name.lower()}"
        try:
            built.append(
                axes_core.parse(
                    raw.get("kind"),
                    raw.get("text", ""),
                    field=raw.get("field", ""),
                    specs=specs,
                    prompt=given.get("prompt", ""),
                    versions=[(v.id, version_label(v)) for v in versions],
                    max_seed=max_seed,
                )
            )
        except axes_core.AxisError as exc:
            errors[key] = [f"{name}: {exc}"]
    if errors:
        raise GridError(errors)
    if not built:
        raise GridError({"axes": ["Add at least one axis."]})
    try:
        axes_core.check(built)
    except axes_core.AxisError as exc:
        raise GridError({"axes": [str(exc)]}) from None
    if not any(axis["kind"] == "version" for axis in built) and len(versions) != 1:
        raise GridError({"versions": ["Pick one version, or add a model axis to compare several."]})
    return built


def plan(versions, given, axes, seed, extra_input=None):
    """Every cell of the grid with its mapped input, in X, Y, Z order. A cell
    whose axis value a version lacks (the mapping drops it) does not apply."""
    extra_input = extra_input or {}
    by_id = {version.id: version for version in versions}
    kinds = [axis["kind"] for axis in axes]
    fields = {axis["field"] for axis in axes if axis["kind"] in ("field", "seed")}
    cells = []
    for coords in itertools.product(*(range(len(axis["values"])) for axis in axes)):
        values, version_id = axes_core.apply({**given, "seed": seed}, axes, coords)
        version = by_id[version_id] if version_id else versions[0]
        effective, changes = comparisons.map_input(version, {**values, **extra_input.get(version.id, {})})
        cell = Cell(
            coords=comparison_coords(coords, kinds), version=version, input=values, effective=effective, changes=changes
        )
        dropped = [c for c in changes if c["kind"] == comparisons.DROPPED and c["field"] in fields]
        if dropped:
            cell.reason = (
                f"{version.model} has no input {dropped[0]['field']}"
                if dropped[0]["given"] is not None
                else dropped[0]["reason"]
            )
        cells.append(cell)
    return cells


def _usual_seconds(version):
    times = Prediction.objects.recent_predict_times(version.id)
    return statistics.median(times) if times else settings.COST_ESTIMATE_SECONDS


def estimate(owner, versions, cells):
    """What the grid would take: cells, predictions to run, cost, time, and
    the limits it would meet ({"title", "detail", "blocking"}: a blocking one
    refuses the grid; the others pace it)."""
    runs = [cell for cell in cells if not cell.reason]
    per_version = {version.id: 0 for version in versions}
    for cell in runs:
        per_version[cell.version.id] += 1
    cost, seconds = Decimal(0), 0.0
    for version in versions:
        count = per_version[version.id]
        if count:
            cost += limits.estimate_cost(version) * count
            # Each version runs on its own server(s), one at a time each.
            seconds = max(seconds, _usual_seconds(version) * count)
    meets = _limits_met(owner, versions, per_version, cost)
    cap = settings.GRID_MAX_CELLS
    return {
        "cells": len(cells),
        "runs": len(runs),
        "not_applicable": len(cells) - len(runs),
        "cost": cost,
        "seconds": seconds,
        "limits": meets,
        "cap": cap,
        "over_cap": len(cells) > cap,
        "blocked": len(cells) > cap or any(limit["blocking"] for limit in meets),
    }


def _limits_met(owner, versions, per_version, cost):
    met = []
    if owner is None:
        return [{"title": "Sign in", "detail": "Log in to run a grid.", "blocking": True}]
    mine = limits.limits_for(owner)
    count = sum(per_version.values())
    try:
        # The outright refusals (a ban, spend caps) as a run would get them.
        limits.admit(owner, [v for v in versions if per_version[v.id]][:1])
    except limits.RunRefused as exc:
        if exc.status != 429:
            met.append({"title": exc.title, "detail": exc.detail, "blocking": True})
    if mine.per_day is not None:
        today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        left = max(0, mine.per_day - Prediction.objects.filter(owner=owner, created_at__gte=today).count())
        if count > left:
            met.append(
                {
                    "title": "Daily quota",
                    "detail": f"The grid runs {count} predictions; you have {left} of your {mine.per_day} left today.",
                    "blocking": True,
                }
            )
    shared = sum(
        (limits.estimate_cost(v) * per_version[v.id] for v in versions if v.backend == "replicate"), Decimal(0)
    )
    if shared and mine.monthly_spend is not None:
        spent = limits._spent(Prediction.objects.filter(owner=owner), timezone.now())
        if spent + shared > mine.monthly_spend:
            met.append(
                {
                    "title": "Monthly spend cap",
                    "detail": f"About ${shared:.4f} on Replicate models would pass your cap of ${mine.monthly_spend:.2f}.",
                    "blocking": True,
                }
            )
    if mine.concurrent is not None and count > mine.concurrent:
        met.append(
            {
                "title": "Predictions at once",
                "detail": f"You can run {mine.concurrent} at once: the grid starts them as earlier ones finish.",
                "blocking": False,
            }
        )
    if mine.per_minute is not None and count > mine.per_minute:
        minutes = -(-count // mine.per_minute)
        met.append(
            {
                "title": "Predictions a minute",
                "detail": f"You can start {mine.per_minute} a minute: starting them all takes about {minutes} minutes.",
                "blocking": False,
            }
        )
    return met


@dataclass
class Preview:
    axes: list
    cells: list
    estimate: dict


def preview(owner, versions, given, raw_axes, *, seed=None, extra_input=None):
    """(axes, cells, estimate) of what `create` would start. Raises GridError."""
    versions = list(dict.fromkeys(versions))
    if not versions:
        raise GridError({"versions": ["Pick at least one model version."]})
    given = _clean_given(given)
    axes = build_axes(versions, given, raw_axes)
    ordered = _axis_versions(versions, axes)
    if seed is None:
        seed = comparisons.pick_seed(versions)
    count = axes_core.count(axes)
    if count > settings.GRID_MAX_CELLS:
        # Never plan a grid past the cap: "1-1000 [1000]" x 3 axes is a billion cells.
        return Preview(
            axes,
            [],
            {
                "cells": count,
                "cap": settings.GRID_MAX_CELLS,
                "over_cap": True,
                "blocked": True,
                "limits": [],
                "runs": 0,
                "not_applicable": 0,
                "cost": Decimal(0),
                "seconds": 0.0,
            },
        )
    cells = plan(ordered, given, axes, seed, extra_input)
    return Preview(axes, cells, estimate(owner, ordered, cells))


def _clean_given(given):
    return {k: v for k, v in given.items() if v not in (None, "") and k != "seed"}


def _axis_versions(versions, axes):
    version_axis = next((a for a in axes if a["kind"] == "version"), None)
    if version_axis is None:
        return versions
    by_id = {v.id: v for v in versions}
    return [by_id[i] for i in version_axis["values"]]


def _check_base(versions, given, seed, extra_input):
    """The input without axes must run on every version (a required field, a
    blocked word): refused now rather than in 1,000 failed cells."""
    errors = {}
    for version in versions:
        catalog.ensure_schema(version)
        effective, _ = comparisons.map_input(version, {**given, "seed": seed, **extra_input.get(version.id, {})})
        try:
            schema.validate_input(version, effective)
            if not catalog.refresh_availability(version):
                raise schema.InputError({"version": [f"unavailable: {version.unavailable_reason}"]})
        except schema.InputError as exc:
            errors[str(version.model)] = [
                message if name in ("version", "input") else f"{name}: {message}"
                for name, messages in exc.errors.items()
                for message in messages
            ]
    if errors:
        raise GridError({"input": [f"{model}: {' '.join(messages)}" for model, messages in errors.items()]})


def create(owner, versions, given, raw_axes, *, seed=None, visibility=None, extra_input=None, title=""):
    """Check and save a grid; its cells start in tasks.grids.materialise_grid.
    Raises GridError (nothing saved) past the cap, a blocking limit, or on
    bad axes or input."""
    if owner is None:
        raise GridError({"owner": ["Log in to run a grid."]})
    versions = list(dict.fromkeys(versions))
    extra_input = {
        version.id: {k: v for k, v in (extra_input or {}).get(version.id, {}).items() if v not in (None, "")}
        for version in versions
    }
    extra_input = {version_id: values for version_id, values in extra_input.items() if values}
    if seed is None and versions:
        seed = comparisons.pick_seed(versions)
    found = preview(owner, versions, given, raw_axes, seed=seed, extra_input=extra_input)
    est = found.estimate
    if est["over_cap"]:
        raise GridError(
            {"cells": [f"The grid has {est['cells']} cells; at most {est['cap']} may run at once. Use fewer values."]}
        )
    if est["runs"] == 0:
        raise GridError({"cells": ["No cell of this grid applies to the chosen versions."]})
    blocking = [limit for limit in est["limits"] if limit["blocking"]]
    if blocking:
        raise GridError({"limits": [limit["detail"] for limit in blocking]})
    given = _clean_given(given)
    ordered = _axis_versions(versions, found.axes)
    _check_base(ordered, given, seed, extra_input)
    kinds = [axis["kind"] for axis in found.axes]
    grid = Grid.objects.create(
        owner=owner,
        title=title[:200],
        input=given,
        extra_input=extra_input,
        seed=seed,
        axes=found.axes,
        version_ids=[v.id for v in ordered],
        visibility=visibility or settings.DEFAULT_WEB_VISIBILITY,
        planned=est["runs"],
        problems={
            cell_key(comparison_coords(cell.coords, kinds), cell.version.id): {
                "kind": NOT_APPLICABLE,
                "reason": cell.reason,
            }
            for cell in found.cells
            if cell.reason
        },
    )
    jobs.after_commit("tasks.grids.materialise_grid", grid.id, robust=True)
    return grid


def grid_versions(grid):
    by_id = {v.id: v for v in Version.objects.select_related("model").filter(pk__in=grid.version_ids)}
    return [by_id[i] for i in grid.version_ids if i in by_id]


class Paced(Exception):
    """A limit that paces the grid: the task comes back after `retry_after` s."""

    def __init__(self, retry_after):
        super().__init__(retry_after)
        self.retry_after = retry_after


def materialise(grid_id):
    """Start every cell of the grid not yet started, each in its own
    transaction (its comparison and predictions together), so a task killed
    midway and run again starts each cell once. Returns the number started;
    raises Paced when a pacing limit (at once, a minute) stops it for now."""
    grid = Grid.objects.filter(pk=grid_id).first()
    if grid is None or grid.canceled_at or grid.materialised_at:
        return 0
    versions = grid_versions(grid)
    cells = plan(versions, grid.input, grid.axes, grid.seed, grid.extra_input)
    kinds = [axis["kind"] for axis in grid.axes]
    groups = {}
    for cell in cells:
        groups.setdefault(comparison_coords(cell.coords, kinds), []).append(cell)
    done = {(x, y, z): set(ids) for x, y, z, ids in _started(grid)}
    started = 0
    for coords, group in groups.items():
        todo = [c for c in group if not c.reason and c.version.id not in done.get(coords, set())]
        todo = [c for c in todo if cell_key(coords, c.version.id) not in grid.problems]
        if not todo:
            continue
        started += _start_cell(grid, coords, group, todo)
    with transaction.atomic():
        row = Grid.objects.select_for_update().get(pk=grid.pk)
        if row.canceled_at is None and row.materialised_at is None:
            row.materialised_at = timezone.now()
            row.save(update_fields=["materialised_at"])
    return started


def _started(grid):
    """(x, y, z, [version ids]) of the predictions started so far, in one query."""
    rows = {}
    for x, y, z, version_id in Prediction.objects.filter(comparison__grid=grid).values_list(
        "comparison__grid_x", "comparison__grid_y", "comparison__grid_z", "version_id"
    ):
        rows.setdefault((x, y, z), []).append(version_id)
    return [(*coords, ids) for coords, ids in rows.items()]


def _start_cell(grid, coords, group, todo):
    started = 0
    with transaction.atomic():
        # One task at a time per grid: a second (a re-sent message) waits,
        # then finds the cell started.
        row = Grid.objects.select_for_update().get(pk=grid.pk)
        if row.canceled_at:
            return 0
        comparison = Comparison.objects.filter(grid=grid, grid_x=coords[0], grid_y=coords[1], grid_z=coords[2]).first()
        if comparison is None:
            comparison = Comparison.objects.create(
                owner=grid.owner,
                input=_clean_given(group[0].input),
                seed=group[0].input.get("seed"),
                extra_input=grid.extra_input,
                visibility=grid.visibility,
                changes={cell.version.id: cell.changes for cell in group},
                grid=grid,
                grid_x=coords[0],
                grid_y=coords[1],
                grid_z=coords[2],
            )
            have = set()
        else:
            have = set(comparison.predictions.values_list("version_id", flat=True))
        for cell in todo:
            if cell.version.id in have:
                continue
            try:
                # It checks before it saves, in a savepoint of its own: a refused one leaves the others.
                predictions.start(
                    cell.version,
                    cell.effective,
                    owner=grid.owner,
                    source=Prediction.Source.WEB,
                    visibility=grid.visibility,
                    comparison=comparison,
                )
                started += 1
            except limits.RunRefused as exc:
                if exc.status == 429:
                    raise Paced(exc.retry_after or 5) from None
                _record(row, coords, cell, exc.detail)
            except schema.InputError as exc:
                _record(row, coords, cell, str(exc))
    return started


def _record(row, coords, cell, reason):
    row.problems[cell_key(coords, cell.version.id)] = {"kind": ERROR, "reason": reason[:500]}
    row.save(update_fields=["problems"])


def cancel(grid):
    """Stop the grid: no more cells start, and what runs is canceled.
    Returns how many predictions were running."""
    Grid.objects.filter(pk=grid.pk, canceled_at__isnull=True).update(canceled_at=timezone.now())
    grid.refresh_from_db(fields=["canceled_at"])
    active = Prediction.objects.filter(comparison__grid=grid).active().select_related("version__model")
    return sum(1 for prediction in active if predictions.cancel(prediction))


def rerun(grid, owner, seed=None):
    """The same grid with a new seed (seed axes keep their values): a new grid."""
    versions = grid_versions(grid)
    raw = [{"kind": a["kind"], "field": a["field"], "text": a["text"]} for a in grid.axes]
    for raw_axis, axis in zip(raw, grid.axes):
        if axis["kind"] == "seed":
            raw_axis["text"] = ", ".join(str(v) for v in axis["values"])
    if seed is None:
        seed = comparisons.pick_seed(versions) if versions else secrets.randbelow(axes_core.MAX_SEED)
    return create(
        owner,
        versions,
        grid.input,
        raw,
        seed=seed,
        visibility=grid.visibility,
        extra_input=grid.extra_input,
        title=grid.title,
    )


def full_coords(grid, xyz, version_id):
    """A cell's index on every axis, from its comparison's (x, y, z) and its
    version (the model axis's index); None when the version is not on it."""
    coords = list(xyz[: len(grid.axes)])
    for i, axis in enumerate(grid.axes):
        if axis["kind"] == "version":
            if version_id not in axis["values"]:
                return None
            coords[i] = axis["values"].index(version_id)
    return tuple(coords)


def cell_predictions(grid):
    """The grid's predictions, each with its comparison's coordinates
    (cell_x, cell_y, cell_z), in one query."""
    return Prediction.objects.filter(comparison__grid=grid).annotate(
        cell_x=F("comparison__grid_x"), cell_y=F("comparison__grid_y"), cell_z=F("comparison__grid_z")
    )


@dataclass(slots=True)
class CellPrediction:
    """What the grid page shows of a cell's prediction and its first image."""

    id: str
    version_id: str
    status: str
    prompt: str  # its prompt's start (the image's alt text), not the input: a prompt can be 10,000 characters
    rating: str | None  # its first output's, None before it has one
    width: int | None
    height: int | None
    thumbnail: str  # the stored name of the thumbnail its viewer gets (blurred for nsfw), or ""
    thumbnail_url: str
    # Its first image may go to the compare viewer: finished, not removed, and
    # not one its viewer only gets blurred (cards.comparable's rule).
    comparable: bool = False

    @property
    def status_label(self):
        return Prediction.Status(self.status).label


# A page holds up to LIGHTBOX_GRID_MAX_CELLS cells: read as values in one
# query, since 1,000 predictions and outputs made into rows were half its time.
_PAGE_VALUES = (
    "id",
    "version_id",
    "status",
    "owner_id",
    "visibility",
    "hidden_at",
    "cell_x",
    "cell_y",
    "cell_z",
    "cell_prompt",
    "first__rating",
    "first__width",
    "first__height",
    "first__thumbnail",
    "first__blurred_thumbnail",
)


def page_cells(grid, predictions, user):
    """{full coords: (CellPrediction, Access)} of `predictions` (a filter of
    cell_predictions(grid)) as `user` may see them, in one query whatever
    their number. The access (Moderated.access_for) and the thumbnail
    (Output.thumbnail_field_for) are asked of a row made of the fields those
    rules read, once for each combination of them on the page (a grid's cells
    share their owner and visibility), not once per cell."""
    rows = (
        predictions.annotate(
            cell_prompt=Left(KeyTextTransform("prompt", "input"), 120),
            first=FilteredRelation("outputs", condition=Q(outputs__index=0)),
        )
        .order_by()
        .values_list(*_PAGE_VALUES)
    )
    accesses, thumbnail_fields, cells = {}, {}, {}
    for row in rows:
        pk, version_id, status, owner_id, visibility, hidden_at, x, y, z, prompt, rating, *image = row
        coords = full_coords(grid, (x, y, z), version_id)
        if coords is None:
            continue
        key = (owner_id, visibility, hidden_at is not None)
        if key not in accesses:
            accesses[key] = Prediction(owner_id=owner_id, visibility=visibility, hidden_at=hidden_at).access_for(user)
        if accesses[key] != Access.OPEN:
            cells[coords] = (None, accesses[key])
            continue
        width, height, thumbnail, blurred = image
        name = ""
        if rating is not None:
            if (rating, owner_id) not in thumbnail_fields:
                stand_in = Output(rating=rating, prediction=Prediction(owner_id=owner_id))
                thumbnail_fields[rating, owner_id] = stand_in.thumbnail_field_for(user)
            name = {"thumbnail": thumbnail, "blurred_thumbnail": blurred, None: ""}[thumbnail_fields[rating, owner_id]]
        cells[coords] = (
            CellPrediction(
                pk,
                version_id,
                status,
                prompt or "",
                rating,
                width,
                height,
                name or "",
                storage.file_url(name) if name else "",
                comparable=status == Prediction.Status.SUCCEEDED and bool(name) and name == thumbnail,
            ),
            Access.OPEN,
        )
    return cells


def problems_by_coords(grid):
    """{full coords: {"kind", "reason"}} of the cells that do not run."""
    found = {}
    for key, problem in grid.problems.items():
        *xyz, version_id = key.split(".", 3)
        coords = full_coords(grid, tuple(int(c) for c in xyz), version_id)
        if coords is not None:
            found[coords] = problem
    return found


def progress(grid):
    """{status: count} of the grid's predictions, in one query."""
    return dict(
        Prediction.objects.filter(comparison__grid=grid).values_list("status").annotate(n=Count("id")).order_by()
    )


def set_visibility(grid, visibility):
    """Share (or hide) the grid with its cells' comparisons and predictions."""
    with transaction.atomic():
        Grid.objects.filter(pk=grid.pk).update(visibility=visibility)
        Comparison.objects.filter(grid=grid).update(visibility=visibility)
        Prediction.objects.filter(comparison__grid=grid).update(visibility=visibility)
    grid.visibility = visibility


def progress_of(grid_list):
    """{grid id: {status: count}} of several grids, in one query."""
    found = {}
    rows = (
        Prediction.objects.filter(comparison__grid__in=grid_list)
        .values_list("comparison__grid_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for grid_id, status, n in rows:
        found.setdefault(grid_id, {})[status] = n
    return found
