"""Fixtures for the benchmark tests that need no worker: versions marked
available (tests/web's), and the tasks a run queues recorded, not sent."""

import copy

import pytest

from tests.web.conftest import SCHEMA, make_prediction, make_version, turbo_schema  # noqa: F401


@pytest.fixture
def queued_tasks(queued, monkeypatch):
    """{"materialise": [args...], "on_new_version": [...]}: what the run queued."""
    from tasks import benchmarks

    calls = {"materialise": [], "on_new_version": []}
    monkeypatch.setattr(benchmarks.materialise, "delay", lambda *args: calls["materialise"].append(args))
    monkeypatch.setattr(benchmarks.on_new_version, "delay", lambda *args: calls["on_new_version"].append(args))
    return calls


@pytest.fixture
def versions(transactional_db):
    return [
        make_version("local", "tiny-sd", copy.deepcopy(SCHEMA)),
        make_version("local", "sd-turbo", turbo_schema()),
    ]


@pytest.fixture
def shipped(transactional_db):
    from app.services import prompt_sets

    prompt_sets.ensure_shipped()


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture(autouse=True)
def _no_limits(settings):
    """A run of dozens of predictions, without a worker to end them, is past
    the default limits at once; the tests of limits set their own."""
    settings.MAX_CONCURRENT = settings.RATE_LIMIT_PER_MINUTE = settings.DAILY_QUOTA = None
