"""The grid page (/g/<id>): a table of cells with sticky axis labels, filled
in live by ONE poll for the whole grid (the cells changed since a cursor, as
htmx out-of-band swaps), and the grid's actions and exports. Every control
is a link or a form, so the page works without JavaScript (a page you
reload); its query count does not grow with its cells."""

import io
import json
import zipfile
from datetime import timedelta
from html import escape

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from app.core import images
from app.forms import VisibilityForm
from app.models import Access, Grid, Output, Prediction, Visibility
from app.services import grids
from app.views.access import get_for_user, next_url, owns

SIZES = {"s": 96, "m": 160, "l": 256}
POLL_SECONDS = 2
# A cursor is moved back this much, so a change committed while a poll ran
# is sent again rather than missed (sending a cell twice is harmless).
OVERLAP = timedelta(seconds=2)


def _get_grid_for_user(request, grid_id, owner_only=False):
    """The grid if `request.user` may see it (or act on it: `owner_only`);
    else 404, or Gone when moderators hid it."""
    return get_for_user(Grid.objects.select_related("owner"), grid_id, request.user, owner_only)


def _ints(text, limit):
    found = set()
    for part in str(text or "").split(",")[:1000]:
        if part.strip().isdigit() and int(part) < limit:
            found.add(int(part))
    return found


class View:
    """What the request asks to see: which stored axis runs across (columns)
    and down (rows), the page of Z, the hidden rows and columns, the size."""

    def __init__(self, request, grid):
        axes, get = grid.axes, request.GET
        self.swap = get.get("swap") == "1" and len(axes) >= 2
        self.col, self.row = (1, 0) if self.swap else (0, 1 if len(axes) >= 2 else None)
        self.z_axis = 2 if len(axes) == 3 else None
        pages = len(axes[2]["values"]) if self.z_axis is not None else 1
        z = get.get("z", "0")
        self.z = min(int(z), pages - 1) if z.isdigit() and len(z) < 6 else 0
        self.hide_c = _ints(get.get("hide_c"), len(axes[self.col]["values"]))
        self.hide_r = _ints(get.get("hide_r"), len(axes[self.row]["values"])) if self.row is not None else set()
        self.size = get.get("size") if get.get("size") in SIZES else "m"
        self.axes = axes

    def query(self, **changes):
        params = {
            "swap": "1" if self.swap else "",
            "z": str(self.z) if self.z else "",
            "hide_c": ",".join(map(str, sorted(self.hide_c))),
            "hide_r": ",".join(map(str, sorted(self.hide_r))),
            "size": "" if self.size == "m" else self.size,
        }
        params.update(changes)
        return "?" + urlencode({k: v for k, v in params.items() if v})

    def links(self, grid, cursor):
        """The page's links: swap, each page of Z, the poll."""
        base = reverse("grid", args=[grid.pk])
        pages = []
        if self.z_axis is not None:
            pages = [
                (i, label, base + self.query(z=str(i) if i else ""))
                for i, label in enumerate(self.axes[self.z_axis]["labels"])
            ]
        poll = reverse("grid-changes", args=[grid.pk]) + self.query(since=cursor)
        return {"swap_url": base + self.query(swap="" if self.swap else "1"), "pages": pages, "poll_url": poll}

    def coords(self, c, r):
        coords = [0] * len(self.axes)
        coords[self.col] = c
        if self.row is not None:
            coords[self.row] = r
        if self.z_axis is not None:
            coords[self.z_axis] = self.z
        return tuple(coords)

    def on_page(self, queryset):
        """Only the predictions of this page of Z (one filter, no extra query)."""
        if self.z_axis is None:
            return queryset
        axis = self.axes[self.z_axis]
        if axis["kind"] == "version":
            return queryset.filter(version_id=axis["values"][self.z])
        return queryset.filter(comparison__grid_z=self.z)


def cell_id(coords):
    return "cell-" + "-".join(map(str, coords))


# A grid page holds up to LIGHTBOX_GRID_MAX_CELLS cells: through the template
# engine 1,000 of them took ~0.8 s, built here ~10 ms (the standard library's
# escape: Django's is the same plus a lazy-string check per call). The same
# function serves the page and the poll's out-of-band swaps.
# `cell["prediction"]`: a grids.CellPrediction.
def cell_html(cell, prediction_url, canceled=False, oob=False):
    swap = ' hx-swap-oob="true"' if oob else ""
    prediction, problem = cell.get("prediction"), cell.get("problem")
    if cell.get("withheld"):
        inner = f'<span class="grid-cell-note">{escape(cell["withheld"])}</span>'
    elif prediction is not None:
        if prediction.rating == Output.Rating.BLOCKED:
            body = '<span class="grid-cell-note">Removed by moderators</span>'
        elif prediction.thumbnail:
            alt = ("Rated NSFW. " if prediction.rating == Output.Rating.NSFW else "") + (
                prediction.prompt or "Generated image"
            )[:120]
            body = (
                f'<img src="{escape(prediction.thumbnail_url)}" width="{prediction.width}" '
                f'height="{prediction.height}" loading="lazy" decoding="async" alt="{escape(alt)}">'
            )
        else:
            body = f'<span class="grid-cell-note">{escape(str(prediction.status_label))}</span>'
        inner = (
            f'<a href="{prediction_url}{prediction.id}" class="grid-cell-link grid-cell-{prediction.status}">{body}</a>'
        )
    elif problem:
        prefix = "n/a: " if problem["kind"] == grids.NOT_APPLICABLE else "Not started: "
        reason = problem["reason"]
        inner = (
            f'<span class="grid-cell-note grid-cell-na" title="{escape(reason)}">'
            f"{prefix}{escape(Truncator(reason).chars(80))}</span>"
        )
    else:
        inner = f'<span class="grid-cell-note">{"Not run" if canceled else "Waiting"}</span>'
    return mark_safe(f'<div class="grid-cell" id="{cell["id"]}"{swap}>{inner}</div>')  # noqa: S308 (escaped above)


def _cells(request, grid, view, since=None):
    """{full coords: cell dict} of this page of Z's predictions (changed
    since `since`), with what the viewer may see of each."""
    queryset = view.on_page(grids.cell_predictions(grid))
    if since is not None:
        queryset = queryset.filter(
            Q(created_at__gte=since) | Q(started_at__gte=since) | Q(completed_at__gte=since) | Q(hidden_at__gte=since)
        )
    return {
        coords: {
            "id": cell_id(coords),
            "prediction": prediction,
            "withheld": access.label if access != Access.OPEN else "",
        }
        for coords, (prediction, access) in grids.page_cells(grid, queryset, request.user).items()
    }


def _table(request, grid, view):
    cells = _cells(request, grid, view)
    problems = grids.problems_by_coords(grid)
    col_axis = grid.axes[view.col]
    row_axis = grid.axes[view.row] if view.row is not None else None
    base = reverse("grid", args=[grid.pk])
    prediction_url = reverse("prediction", args=["0"])[:-1]
    columns = [
        (i, label, base + view.query(hide_c=",".join(map(str, sorted(view.hide_c | {i})))))
        for i, label in enumerate(col_axis["labels"])
        if i not in view.hide_c
    ]
    row_labels = list(enumerate(row_axis["labels"])) if row_axis else [(0, "")]
    rows, cell_rows = [], []
    for r, label in row_labels:
        if r in view.hide_r:
            continue
        line, cell_line = [], []
        for c, _, _ in columns:
            coords = view.coords(c, r)
            cell = cells.get(coords) or {"id": cell_id(coords), "prediction": None, "withheld": ""}
            cell["problem"] = problems.get(coords)
            line.append(f"<td>{cell_html(cell, prediction_url, canceled=bool(grid.canceled_at))}</td>")
            cell_line.append(cell)
        cell_rows.append(cell_line)
        # The row's cells as one string: 1,000 {{ cell }} in the template were a sixth of the page.
        cells_html = mark_safe("".join(line))  # noqa: S308 (cell_html escapes)
        rows.append((r, label, cells_html, base + view.query(hide_r=",".join(map(str, sorted(view.hide_r | {r}))))))
    return {
        "col_axis": col_axis,
        "row_axis": row_axis,
        "columns": columns,
        "rows": rows,
        "cell_rows": cell_rows,
    }


def _compare_choices(table):
    """The compare picker's (value, label) of each shown cell's image (the
    first, the one the cell shows), labelled by the cell's axis values, e.g.
    "guidance scale = 7.5, Model = stability-ai/sdxl"; from the cells already
    read, so no query per cell."""
    x_title, y_title = _axis_title(table["col_axis"]), _axis_title(table["row_axis"])
    choices = []
    for (_, row_label, _, _), line in zip(table["rows"], table["cell_rows"]):
        for (_, col_label, _), cell in zip(table["columns"], line):
            prediction = cell["prediction"]
            if prediction is None or not prediction.comparable:
                continue
            label = f"{x_title} = {Truncator(col_label).chars(40)}"
            if table["row_axis"]:
                label += f", {y_title} = {Truncator(row_label).chars(40)}"
            choices.append((f"{prediction.id}:0", label))
    return choices


def _axis_title(axis):
    if axis is None:
        return ""
    return {"version": "Model", "prompt": "Prompt", "seed": "Seed"}.get(axis["kind"], axis["field"].replace("_", " "))


def _cursor():
    return (timezone.now() - OVERLAP).isoformat()


@require_GET
@vary_on_headers("HX-Request")
def grid(request, grid_id):
    grid = _get_grid_for_user(request, grid_id)
    view = View(request, grid)
    counts = grids.progress(grid)
    table = _table(request, grid, view)
    is_owner = owns(request.user, grid)
    cursor = _cursor()
    context = {
        "grid": grid,
        "view": view,
        "is_owner": is_owner,
        "active": _active(grid, counts),
        "counts": _counts(grid, counts),
        "x_title": _axis_title(table["col_axis"]),
        "y_title": _axis_title(table["row_axis"]),
        "z_axis": grid.axes[view.z_axis] if view.z_axis is not None else None,
        "z_title": _axis_title(grid.axes[view.z_axis]) if view.z_axis is not None else "",
        "sizes": SIZES,
        "cell_px": SIZES[view.size],
        "og_image": request.build_absolute_uri(reverse("grid-preview-image", args=[grid.pk]))
        if grid.is_open_to_everyone and counts.get("succeeded")
        else "",
        "share_description": " · ".join(
            [f"{grid.planned} cells"] + [f"{len(axis['labels'])} {_axis_title(axis)}" for axis in grid.axes]
        )
        + " · on Lightbox",
        "visibility_form": VisibilityForm(initial={"visibility": grid.visibility}),
        "compare_choices": _compare_choices(table),
        **view.links(grid, cursor),
        **table,
    }
    return TemplateResponse(request, "grid.html", context)


def _active(grid, counts):
    if grid.canceled_at:
        return any(status in Prediction.ACTIVE for status in counts)
    return grid.materialised_at is None or any(status in Prediction.ACTIVE for status in counts)


def _counts(grid, counts):
    done = sum(n for status, n in counts.items() if status in Prediction.TERMINAL)
    return {
        "planned": grid.planned,
        "started": sum(counts.values()),
        "done": done,
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "canceled": counts.get("canceled", 0),
        "problems": len(grid.problems),
    }


@require_GET
def grid_changes(request, grid_id):
    """The one update stream of the grid page: the cells of this page that
    changed since `since` (out-of-band swaps), the progress line, and the
    poll itself with a new cursor; 286 stops it once nothing runs."""
    grid = _get_grid_for_user(request, grid_id)
    view = View(request, grid)
    since = parse_datetime(request.GET.get("since", "") or "") or timezone.now() - timedelta(minutes=5)
    cursor = _cursor()
    counts = grids.progress(grid)
    cells = _cells(request, grid, view, since)
    hidden_c, hidden_r = view.hide_c, view.hide_r
    problems = grids.problems_by_coords(grid)
    prediction_url = reverse("prediction", args=["0"])[:-1]
    changed = [
        cell_html({**cell, "problem": problems.get(coords)}, prediction_url, oob=True)
        for coords, cell in cells.items()
        if coords[view.col] not in hidden_c and (view.row is None or coords[view.row] not in hidden_r)
    ]
    active = _active(grid, counts)
    context = {
        # The poll's last answer brings the picker every cell done since the page was loaded.
        "compare_choices": [] if active else _compare_choices(_table(request, grid, view)),
        "grid": grid,
        "view": view,
        "changed": changed,
        "counts": _counts(grid, counts),
        "active": active,
        "is_changes": True,
        "cell_px": SIZES[view.size],
        **view.links(grid, cursor),
    }
    response = TemplateResponse(request, "grid.html#changes", context)
    if not active:
        response.render()
        return HttpResponseStopPolling(response.content)
    return response


@login_required
@require_POST
def grid_cancel(request, grid_id):
    grid = _get_grid_for_user(request, grid_id, owner_only=True)
    canceled = grids.cancel(grid)
    messages.info(request, f"Grid stopped; {canceled} running prediction{'s' if canceled != 1 else ''} canceled.")
    return redirect(grid)


@login_required
@require_POST
def grid_rerun(request, grid_id):
    """The same grid with a new seed: a new grid of the user's own."""
    grid = _get_grid_for_user(request, grid_id)
    try:
        new = grids.rerun(grid, request.user)
    except grids.GridError as exc:
        messages.error(request, "Could not re-run: " + " ".join(m for ms in exc.errors.values() for m in ms))
        return redirect(grid)
    return redirect(new)


@login_required
@require_POST
def grid_visibility(request, grid_id):
    grid = _get_grid_for_user(request, grid_id, owner_only=True)
    form = VisibilityForm(request.POST)
    if form.is_valid():
        grids.set_visibility(grid, form.cleaned_data["visibility"])
        messages.success(request, f"Now {Visibility(grid.visibility).label.lower()}.")
    return redirect(next_url(request, grid.get_absolute_url()))


def _picture_rows(table):
    """Image bytes of each shown cell (the thumbnail its viewer gets, or None), row by row."""
    rows = []
    for line in table["cell_rows"]:
        pictures = []
        for cell in line:
            thumbnail = cell["prediction"].thumbnail if cell["prediction"] is not None else ""
            data = None
            if thumbnail:
                with default_storage.open(thumbnail, "rb") as handle:
                    data = handle.read()
            pictures.append(data)
        rows.append(pictures)
    return rows


def _grid_picture(request, grid, view):
    table = _table(request, grid, view)
    count = len(table["columns"]) * max(1, len(table["rows"]))
    cell = 256 if count <= 36 else 160 if count <= 200 else 96
    title = grid.prompt[:120]
    if view.z_axis is not None:
        z_axis = grid.axes[view.z_axis]
        title = f"{_axis_title(z_axis)} = {z_axis['labels'][view.z]} · {title}"
    return images.labelled_grid(
        _picture_rows(table),
        [label for _, label, _ in table["columns"]],
        [label for _, label, _, _ in table["rows"]] if table["row_axis"] else [],
        x_name=_axis_title(table["col_axis"]),
        y_name=_axis_title(table["row_axis"]),
        title=title,
        cell=cell,
    )


@require_GET
def grid_image(request, grid_id):
    """One labelled PNG of the page of the grid as shown (swap, hidden rows
    and columns and the page of Z as in the page's query)."""
    grid = _get_grid_for_user(request, grid_id)
    response = HttpResponse(images.png_of(_grid_picture(request, grid, View(request, grid))), content_type="image/png")
    response["Content-Disposition"] = f'attachment; filename="grid-{grid.pk}.png"'
    return response


@require_GET
def grid_preview_image(request, grid_id):
    """The link preview (og:image): the first page of the grid, labelled;
    only for a grid open to everyone (chat apps fetch it without a session)."""
    grid = get_object_or_404(Grid, pk=grid_id)
    if not grid.is_open_to_everyone:
        raise Http404("No preview")
    request.user = AnonymousUser()
    response = HttpResponse(
        images.jpeg_fitted(_grid_picture(request, grid, View(request, grid))), content_type="image/jpeg"
    )
    response["Cache-Control"] = "public, max-age=300"
    return response


@require_GET
def grid_zip(request, grid_id):
    """Every image the viewer may see, named by its cell, and manifest.json
    (axes, cells, versions, inputs, seeds, file names)."""
    grid = _get_grid_for_user(request, grid_id)
    predictions = list(
        grids.cell_predictions(grid).select_related("version__model").defer("version__openapi_schema", "logs")
    )
    outputs = {}
    for output in Output.objects.filter(prediction__in=[p.pk for p in predictions]).order_by("index"):
        outputs.setdefault(output.prediction_id, []).append(output)
    buffer = io.BytesIO()
    manifest_cells = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for prediction in predictions:
            coords = grids.full_coords(
                grid, (prediction.cell_x, prediction.cell_y, prediction.cell_z), prediction.version_id
            )
            if coords is None or prediction.access_for(request.user) != Access.OPEN:
                continue
            names = []
            for output in outputs.get(prediction.pk, []):
                if (
                    output.rating == Output.Rating.BLOCKED
                    or not output.shows_explicit_to(request.user)
                    or not output.file
                ):
                    continue
                name = (
                    "images/"
                    + "-".join(f"{a}{c}" for a, c in zip("xyz", coords))
                    + f"-{prediction.version.model.name}-{output.index}.png"
                )
                with output.file.open("rb") as handle:
                    archive.writestr(name, handle.read())
                names.append(name)
            manifest_cells.append(
                {
                    "coords": list(coords),
                    "values": [axis["values"][c] for axis, c in zip(grid.axes, coords)],
                    "prediction": prediction.pk,
                    "version": prediction.version_id,
                    "model": str(prediction.version.model),
                    "status": prediction.status,
                    "input": prediction.input,
                    "seed": prediction.input.get("seed"),
                    "predict_time": prediction.predict_time,
                    "files": names,
                }
            )
        manifest = {
            "grid": grid.pk,
            "url": request.build_absolute_uri(grid.get_absolute_url()),
            "input": grid.input,
            "seed": grid.seed,
            "axes": [{**axis, "name": name} for name, axis in zip("XYZ", grid.axes)],
            "versions": grid.version_ids,
            "not_run": grid.problems,
            "cells": sorted(manifest_cells, key=lambda cell: cell["coords"][::-1]),
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
    response = HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="grid-{grid.pk}.zip"'
    return response
