"""Fixtures for the grid tests: the page tests' versions (real Cog schemas,
no server needed) and a record of the grid tasks queued."""

import pytest

from tests.web.conftest import client_alice, make_prediction, make_version, sd_version, turbo_version  # noqa: F401


@pytest.fixture
def grid_tasks(monkeypatch):
    """The ids of the grids whose cells a test would start; the test starts
    them itself (grids.materialise) when it wants them."""
    from tasks.grids import materialise_grid

    ids = []
    monkeypatch.setattr(materialise_grid, "delay", ids.append)
    return ids
