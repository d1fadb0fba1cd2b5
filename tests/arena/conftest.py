"""Fixtures for the arena: versions that need no server, comparisons with
one succeeded prediction per version (real stored PNGs), and votes."""

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image

SCHEMA = json.loads((Path(__file__).parent.parent / "cog_predictor" / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture(autouse=True)
def refits_recorded(request, monkeypatch):
    """The refits votes queue (tasks.arena), recorded instead of sent, so
    that no worker fits a leaderboard behind a test's back; tests fit with
    arena.recompute when they mean to. A test that asks for the real
    `worker` gets them sent."""
    from tasks import arena as arena_tasks

    calls = []
    if "worker" in request.fixturenames:
        return calls
    for task in (arena_tasks.recompute, arena_tasks.recompute_personal):
        monkeypatch.setattr(
            task, "apply_async", lambda args, countdown=None, name=task.name: calls.append((name, args))
        )
    return calls


def png(color, size=(96, 64)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def make_version(name):
    from app.services import catalog

    version = catalog.add_version("local", name, "cog", f"http://127.0.0.1:9/{name}", SCHEMA)
    version.available, version.checked_at = True, timezone.now() + timedelta(days=1)
    version.save()
    return version


@pytest.fixture
def versions(transactional_db):
    return [make_version(name) for name in ("alpha", "beta", "gamma")]


_seeds = iter(range(1, 1_000_000))


def new_comparison(
    on,
    prompt="a lighthouse at dusk",
    visibility="public",
    ratings=None,
    benchmark=None,
    prompt_row=None,
    changes=None,
    sizes=None,
    times=None,
):
    """A comparison with one succeeded prediction per version of `on`, each
    with a stored PNG (ratings: {version id: "nsfw"}; sizes: {version id: (w, h)})."""
    from app.models import Comparison, Prediction
    from app.services import storage

    seed = next(_seeds)
    comparison = Comparison.objects.create(
        input={"prompt": prompt},
        seed=seed,
        visibility=visibility,
        benchmark=benchmark,
        benchmark_prompt=prompt_row,
        changes=changes or {},
    )
    for position, version in enumerate(on):
        prediction = Prediction.objects.create(
            version=version,
            comparison=comparison,
            input={"prompt": prompt, "seed": seed},
            status="succeeded",
            visibility=visibility,
            completed_at=timezone.now(),
            predict_time=(times or {}).get(version.pk, 1.0 + position),
        )
        size = (sizes or {}).get(version.pk, (96, 64))
        storage._save_output(
            prediction, 0, png((40 * position, 90, 160), size), "image/png", (ratings or {}).get(version.pk, "safe")
        )
    return comparison


@pytest.fixture
def make_comparison(transactional_db):
    return new_comparison


@pytest.fixture
def moderator(transactional_db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from app.core.roles import MODERATORS_GROUP

    user = get_user_model().objects.create_user("mod", "mod@example.com", "correct horse battery", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=MODERATORS_GROUP)[0])
    return user


def cast(client, choice="left", run=""):
    """Open /arena, then vote on the pair it shows; the response of the vote."""
    page = client.get("/arena" + (f"?run={run}" if run else ""))
    matchup = page.context["matchup"]
    assert matchup is not None, "no pair offered"
    return client.post("/arena/vote", {"token": matchup.token, "choice": choice, "run": run}), matchup


def add_votes(voter_key, pairs, user=None, excluded=False):
    """ArenaVote rows straight in the database: pairs of (output a, output b, outcome)."""
    from app.models import ArenaVote

    rows = []
    for output_a, output_b, outcome in pairs:
        if output_a.pk > output_b.pk:
            output_a, output_b = output_b, output_a
            outcome = {"a": "b", "b": "a"}.get(outcome, outcome)
        rows.append(
            ArenaVote(
                voter_key=voter_key,
                user=user,
                comparison_id=output_a.prediction.comparison_id,
                output_a=output_a,
                output_b=output_b,
                version_a_id=output_a.prediction.version_id,
                version_b_id=output_b.prediction.version_id,
                left="a",
                outcome=outcome,
                excluded=excluded,
            )
        )
    return ArenaVote.objects.bulk_create(rows)


def first_output(comparison, version):
    return comparison.predictions.get(version=version).outputs.get(index=0)
