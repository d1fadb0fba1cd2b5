"""Abuse and spend limits: rate, daily quota, concurrency (per group), price
per second and estimated cost, monthly spend caps; each refusal clear, and an
RFC 7807 problem with the fitting status in the API."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from django.utils import timezone

from app.models import GroupLimits, Prediction
from app.services import limits, predictions
from app.services.limits import RunRefused

# What a limit admits or refuses is decided before a prediction runs: none is
# sent, so the session's worker cannot fail one and settle its cost (to zero,
# a run that never started) under a spend cap these tests check.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("queued")]
INPUT = {"prompt": "a lighthouse"}


def _refusal(version, owner):
    with pytest.raises(RunRefused) as refused:
        predictions.start(version, INPUT, owner=owner)
    return refused.value


@override_settings(RATE_LIMIT_PER_MINUTE=2)
def test_the_rate_limit_refuses_a_burst_and_says_when_to_retry(version, alice, bob):
    predictions.start(version, INPUT, owner=alice)
    predictions.start(version, INPUT, owner=alice)

    refused = _refusal(version, alice)

    assert refused.status == 429 and "2 predictions a minute" in refused.detail
    assert 1 <= refused.retry_after <= 61
    predictions.start(version, INPUT, owner=bob)  # per user
    Prediction.objects.filter(owner=alice).update(created_at=timezone.now() - timedelta(seconds=61))
    predictions.start(version, INPUT, owner=alice)


@override_settings(DAILY_QUOTA=1, RATE_LIMIT_PER_MINUTE=None)
def test_the_daily_quota(version, alice):
    predictions.start(version, INPUT, owner=alice)

    refused = _refusal(version, alice)

    assert refused.status == 429 and "00:00 UTC" in refused.detail


@override_settings(MAX_CONCURRENT=1)
def test_concurrent_predictions_are_capped(version, alice):
    first = predictions.start(version, INPUT, owner=alice)

    assert "1 predictions running" in _refusal(version, alice).detail

    predictions.fail(first, "done")
    predictions.start(version, INPUT, owner=alice)


@override_settings(RATE_LIMIT_PER_MINUTE=1, MAX_CONCURRENT=1)
def test_group_limits_override_the_defaults_and_the_most_generous_wins(version, alice):
    trusted, unlimited = Group.objects.create(name="trusted"), Group.objects.create(name="unlimited")
    GroupLimits.objects.create(group=trusted, predictions_per_minute=3, concurrent_predictions=3)
    alice.groups.add(trusted)
    for _ in range(3):
        predictions.start(version, INPUT, owner=alice)
    assert _refusal(version, alice).status == 429

    GroupLimits.objects.create(group=unlimited)  # every field empty: no limits
    alice.groups.add(unlimited)
    predictions.start(version, INPUT, owner=alice)


def test_each_prediction_carries_an_estimated_then_a_settled_cost(replicate_version, alice):
    prediction = predictions.start(replicate_version, INPUT, owner=alice)
    # No history yet: price x LIGHTBOX_COST_ESTIMATE_SECONDS (10 s).
    assert prediction.cost == Decimal("0.010000")

    Prediction.objects.filter(pk=prediction.pk).update(status="processing", started_at=timezone.now())
    prediction.refresh_from_db()
    from app.services.backends import Update

    Prediction.objects.filter(pk=prediction.pk).update(output=None)
    predictions.apply_update(prediction, Update(status="failed", error="boom", predict_time=2.5))
    prediction.refresh_from_db()
    assert prediction.cost == Decimal("0.002500")
    # The next estimate learns from what ran (only succeeded runs count).
    Prediction.objects.filter(pk=prediction.pk).update(status="succeeded")
    assert limits.estimate_cost(replicate_version) == Decimal("0.002500")


def test_our_own_servers_are_free_unless_priced(version, alice):
    assert predictions.start(version, INPUT, owner=alice).cost == Decimal(0)


@override_settings(USER_MONTHLY_SPEND_CAP=Decimal("0.01"))
def test_the_users_monthly_spend_cap(replicate_version, version, alice, bob):
    predictions.start(replicate_version, INPUT, owner=alice)  # about $0.01

    refused = _refusal(replicate_version, alice)

    assert refused.status == 402 and "cap of $0.01" in refused.detail
    predictions.start(version, INPUT, owner=alice)  # our own servers still run
    predictions.start(replicate_version, INPUT, owner=bob)
    # Last month's spending does not count.
    Prediction.objects.filter(owner=alice).update(created_at=limits.month_start() - timedelta(days=1))
    predictions.start(replicate_version, INPUT, owner=alice)


@override_settings(SITE_MONTHLY_SPEND_CAP=Decimal("0.015"))
def test_the_site_wide_monthly_spend_cap(replicate_version, alice, bob):
    predictions.start(replicate_version, INPUT, owner=alice)

    refused = _refusal(replicate_version, bob)

    assert refused.status == 402 and refused.title == "Site spend cap reached"


@override_settings(RATE_LIMIT_PER_MINUTE=0)
def test_superusers_have_no_limits(version, alice):
    alice.is_superuser = True
    alice.save()
    predictions.start(version, INPUT, owner=alice)


@override_settings(RATE_LIMIT_PER_MINUTE=1, USER_MONTHLY_SPEND_CAP=Decimal("0.001"))
def test_the_api_answers_refusals_as_problems_with_the_fitting_status(site, version, replicate_version, api):
    assert api.post("/v1/predictions", json={"version": version.id, "input": INPUT}).status_code == 201

    limited = api.post("/v1/predictions", json={"version": version.id, "input": INPUT})
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["title"] == "Rate limit reached" and int(limited.headers["Retry-After"]) >= 1

    Prediction.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    capped = api.post("/v1/predictions", json={"version": replicate_version.id, "input": INPUT})
    assert capped.status_code == 402 and "spend" in capped.json()["title"].lower()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_limit_answers_413(version, alice):
    from django.test import Client

    from app.models import ApiToken

    token = ApiToken.issue(alice)[1]
    body = '{"version": "%s", "input": {"prompt": "%s"}}' % (version.id, "x" * 2000)
    response = Client().post(
        "/v1/predictions", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 413 and "LIGHTBOX_MAX_REQUEST_BYTES" in response.json()["detail"]


@override_settings(MAX_CONCURRENT=1)
def test_simultaneous_requests_cannot_both_pass_a_limit(version, alice):
    import threading

    from django.db import connection

    barrier, results = threading.Barrier(4), []

    def start():
        try:
            barrier.wait()
            predictions.start(version, INPUT, owner=alice)
            results.append("started")
        except RunRefused:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == ["refused", "refused", "refused", "started"]
    assert Prediction.objects.count() == 1
