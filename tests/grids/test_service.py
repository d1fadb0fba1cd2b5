"""app.services.grids: plan, estimate, create, materialise (idempotent), cancel, re-run."""

import pytest
from django.test import override_settings

from app.models import Comparison, Grid, Prediction
from app.services import grids

STEPS = {"kind": "field", "field": "num_inference_steps", "text": "1-4 [4]"}
SCHEDULER = {"kind": "field", "field": "scheduler", "text": "DDIM, PNDM"}
MODELS = {"kind": "version"}


@pytest.fixture(autouse=True)
def _recorded(queued, grid_tasks):
    return queued


def test_a_grid_over_models_and_a_field_plans_each_cell_and_marks_what_does_not_apply(alice, sd_version, turbo_version):
    found = grids.preview(alice, [sd_version, turbo_version], {"prompt": "a red fox"}, [MODELS, SCHEDULER])
    assert found.estimate["cells"] == 4
    # sd-turbo has no scheduler: its two cells are marked, not run.
    assert found.estimate["not_applicable"] == 2 and found.estimate["runs"] == 2
    turbo_cells = [cell for cell in found.cells if cell.version == turbo_version]
    assert all("has no input scheduler" in cell.reason for cell in turbo_cells)
    # A value past a version's range is brought to its nearest bound, as comparisons show.
    steps = grids.preview(alice, [sd_version, turbo_version], {"prompt": "a fox"}, [MODELS, STEPS])
    turbo_8 = next(c for c in steps.cells if c.version == turbo_version and c.input["num_inference_steps"] == 4)
    assert turbo_8.effective["num_inference_steps"] == 4
    over = grids.preview(alice, [sd_version, turbo_version], {"prompt": "a fox"}, [MODELS, {**STEPS, "text": "10, 20"}])
    turbo = next(c for c in over.cells if c.version == turbo_version)
    assert turbo.effective["num_inference_steps"] == 4
    assert any(change["kind"] == "replaced" for change in turbo.changes)


def test_create_returns_at_once_and_the_task_starts_each_cell_once(alice, sd_version, grid_tasks, queued):
    grid = grids.create(alice, [sd_version], {"prompt": "a red fox"}, [STEPS, SCHEDULER], seed=7)
    assert grid_tasks == [grid.pk] and not queued
    assert grid.planned == 8 and Comparison.objects.filter(grid=grid).count() == 0
    assert grids.materialise(grid.pk) == 8
    # Held for the fair scheduler: only what the one server's slot takes is sent.
    assert Prediction.objects.filter(comparison__grid=grid, queued_at__isnull=False).count() == 8
    assert len(queued) == 1
    cells = Comparison.objects.filter(grid=grid)
    assert cells.count() == 8 and not Comparison.objects.standalone().filter(pk__in=cells).exists()
    inputs = sorted(
        (p.input["num_inference_steps"], p.input["scheduler"], p.input["seed"])
        for p in Prediction.objects.filter(comparison__grid=grid)
    )
    assert inputs[0] == (1, "DDIM", 7) and inputs[-1] == (4, "PNDM", 7)
    # A second run (a re-sent message, a worker killed midway) starts nothing twice.
    Grid.objects.filter(pk=grid.pk).update(materialised_at=None)
    assert grids.materialise(grid.pk) == 0
    assert Prediction.objects.filter(comparison__grid=grid).count() == 8


def test_a_task_killed_midway_goes_on_where_it_stopped(alice, sd_version, monkeypatch):
    grid = grids.create(alice, [sd_version], {"prompt": "a red fox"}, [STEPS])
    real, calls = grids.predictions.start, []

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(grids.predictions, "start", dies_on_the_third)
    with pytest.raises(SystemExit):
        grids.materialise(grid.pk)
    assert Prediction.objects.filter(comparison__grid=grid).count() == 2
    monkeypatch.setattr(grids.predictions, "start", real)
    assert grids.materialise(grid.pk) == 2
    assert Comparison.objects.filter(grid=grid).count() == 4


def test_seeds_and_prompt_axes(alice, sd_version):
    grid = grids.create(
        alice,
        [sd_version],
        {"prompt": "a red fox"},
        [{"kind": "prompt", "text": "fox|owl"}, {"kind": "seed", "text": "1, 2, 3"}],
    )
    grids.materialise(grid.pk)
    got = sorted((p.input["prompt"], p.input["seed"]) for p in Prediction.objects.filter(comparison__grid=grid))
    assert got[0] == ("a red fox", 1) and got[-1] == ("a red owl", 3) and len(got) == 6


@pytest.mark.parametrize(
    "axes, key, message",
    [
        ([{"kind": "field", "field": "width", "text": "64, 4096"}], "axis_x", "above its maximum 1024"),
        ([{"kind": "field", "field": "lora", "text": "x"}], "axis_x", "Unknown field"),
        ([{"kind": "prompt", "text": "dog|cat"}], "axis_x", "not in the prompt"),
        ([STEPS, STEPS], "axes", "both change"),
        ([], "axes", "at least one axis"),
        ([STEPS, STEPS, STEPS, STEPS], "axes", "at most 3"),
        ([STEPS, {"kind": "seed", "text": "10-20 (-1)"}], "axis_y", "never goes"),
    ],
)
def test_bad_axes_are_refused_with_the_axis_named_and_nothing_saved(alice, sd_version, axes, key, message):
    with pytest.raises(grids.GridError) as refused:
        grids.create(alice, [sd_version], {"prompt": "a red fox"}, axes)
    assert message in " ".join(refused.value.errors[key])
    assert not Grid.objects.exists()


def test_past_the_cap_is_refused(alice, sd_version):
    with override_settings(GRID_MAX_CELLS=10):
        found = grids.preview(alice, [sd_version], {"prompt": "p"}, [{**STEPS, "text": "1-12"}])
        assert found.estimate["over_cap"] and found.estimate["blocked"]
        with pytest.raises(grids.GridError, match="12 cells; at most 10"):
            grids.create(alice, [sd_version], {"prompt": "p"}, [{**STEPS, "text": "1-12"}])
    # Never planned: a billion cells is refused as fast as eleven.
    huge = [{**STEPS, "text": "1-100"}, {"kind": "seed", "text": "1-1000"}, {"kind": "prompt", "text": "p|q"}]
    assert grids.preview(alice, [sd_version], {"prompt": "p"}, huge).estimate["over_cap"]


def test_limits_a_grid_would_meet(alice, sd_version, settings):
    settings.DAILY_QUOTA = 5
    settings.MAX_CONCURRENT = 2
    found = grids.preview(alice, [sd_version], {"prompt": "p"}, [STEPS])
    by_title = {limit["title"]: limit for limit in found.estimate["limits"]}
    assert by_title["Predictions at once"]["blocking"] is False
    assert found.estimate["blocked"] is False
    too_many = grids.preview(alice, [sd_version], {"prompt": "p"}, [{**STEPS, "text": "1-6"}])
    assert "you have 5 of your 5 left today" in " ".join(limit["detail"] for limit in too_many.estimate["limits"])
    with pytest.raises(grids.GridError, match="5 of your 5 left"):
        grids.create(alice, [sd_version], {"prompt": "p"}, [{**STEPS, "text": "1-6"}])


def test_a_pacing_limit_does_not_hold_a_grid_back(alice, sd_version, settings):
    # "At once" and "a minute" limit what a user starts by hand; a grid's
    # predictions are held and let go a free slot at a time (app.services.scheduling).
    settings.MAX_CONCURRENT = 2
    settings.RATE_LIMIT_PER_MINUTE = 2
    grid = grids.create(alice, [sd_version], {"prompt": "p"}, [STEPS])
    assert grids.materialise(grid.pk) == 4
    assert Prediction.objects.filter(comparison__grid=grid).count() == 4


def test_cancel_and_rerun_with_a_new_seed(alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "p"}, [STEPS], seed=1)
    grids.materialise(grid.pk)
    assert grids.cancel(grid) == 4
    assert set(Prediction.objects.filter(comparison__grid=grid).values_list("status", flat=True)) == {"canceled"}
    # A canceled grid's task starts nothing more.
    Grid.objects.filter(pk=grid.pk).update(materialised_at=None)
    assert grids.materialise(grid.pk) == 0
    again = grids.rerun(grid, alice)
    assert again.pk != grid.pk and again.seed != 1 and again.axes == grid.axes
