"""A grid of a few cells end to end: the real Celery worker starts its cells
(tasks.grids) and runs them on a real Cog server; the page fills in."""

import pytest

from app.models import Prediction
from app.services import grids
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_grid_runs_on_the_worker_and_the_cog_server(worker, cog_version, alice, client):
    grid = grids.create(
        alice,
        [cog_version],
        {"prompt": "a red fox", "width": 64, "height": 64},
        [{"kind": "field", "field": "num_inference_steps", "text": "1, 2"}, {"kind": "prompt", "text": "fox|owl"}],
        seed=11,
    )

    def all_ended():
        ended = Prediction.objects.filter(comparison__grid=grid, status__in=Prediction.TERMINAL)
        return ended.count() == 4 and list(ended)

    ended = wait_until(all_ended, timeout=90, message="the grid's 4 cells to end")
    assert {p.status for p in ended} == {"succeeded"}, [p.error for p in ended]
    assert sorted((p.input["num_inference_steps"], p.input["prompt"]) for p in ended) == [
        (1, "a red fox"),
        (1, "a red owl"),
        (2, "a red fox"),
        (2, "a red owl"),
    ]
    assert all(p.input["seed"] == 11 and p.outputs.count() == 1 for p in ended)
    grid.refresh_from_db()
    assert grid.materialised_at is not None
    client.force_login(alice)
    page = client.get(f"/g/{grid.pk}").content.decode()
    assert page.count("<img") >= 4 and "4 of 4 done" in page and 'id="grid-poll"' not in page
    assert client.get(f"/g/{grid.pk}/changes").status_code == 286
