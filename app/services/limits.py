"""Abuse and spend limits, checked before a prediction is saved.

Per user: predictions a minute (a rate limit), predictions a day (a quota,
reset at 00:00 UTC), predictions running at once, and USD a month on versions
that run on the site's shared REPLICATE_API_TOKEN; and a site-wide monthly
spend cap on those versions. Limits come from the user's groups (GroupLimits,
edited in the admin; the most generous wins) or the LIGHTBOX_* defaults.
Superusers have none. A banned user may not run anything. Visitors without
an account (LIGHTBOX_ANONYMOUS_RUNS) may start so many predictions an hour from
one client address (admit_visitor; counted in the cache, app.core.throttle).

Costs: a version's price per second times the expected predict time (the
average of its last runs) is the estimate saved on a new prediction; when it
ends, the estimate is replaced by price x the predict time it reported. Spend
adds up both, so running predictions count too.

The counts are made inside the transaction that saves the prediction: on
SQLite that transaction holds the write lock; elsewhere the user's row is
locked, so two requests of one user cannot both pass a limit.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Avg, Sum
from django.utils import timezone

from app.core import throttle
from app.models import Ban, GroupLimits, Prediction, Training

CENT = Decimal("0.000001")


class RunRefused(Exception):
    """A run the user may not start now. `status` is the HTTP status the API
    answers with (429 limits, 402 spend caps, 403 a ban)."""

    def __init__(self, detail, *, status=429, title="Too many predictions", retry_after=None):
        super().__init__(detail)
        self.detail, self.status, self.title, self.retry_after = detail, status, title, retry_after


@dataclass
class Limits:
    per_minute: int | None
    per_day: int | None
    concurrent: int | None
    monthly_spend: Decimal | None


UNLIMITED = Limits(None, None, None, None)


def limits_for(user):
    if user.is_superuser:
        return UNLIMITED
    rows = list(GroupLimits.objects.filter(group__user=user))
    if not rows:
        return Limits(
            settings.RATE_LIMIT_PER_MINUTE,
            settings.DAILY_QUOTA,
            settings.MAX_CONCURRENT,
            settings.USER_MONTHLY_SPEND_CAP,
        )

    def most_generous(field):
        values = [getattr(row, field) for row in rows]
        return None if None in values else max(values)

    return Limits(
        most_generous("predictions_per_minute"),
        most_generous("predictions_per_day"),
        most_generous("concurrent_predictions"),
        most_generous("monthly_spend"),
    )


def estimate_cost(version):
    """USD: the version's price per second times its recent average predict time."""
    price = version.effective_price_per_second
    if not price:
        return Decimal(0)
    recent = version.predictions.filter(status="succeeded", predict_time__isnull=False).order_by("-created_at")
    average = recent[:20].aggregate(seconds=Avg("predict_time"))["seconds"]
    seconds = average if average is not None else settings.COST_ESTIMATE_SECONDS
    return (price * Decimal(str(seconds))).quantize(CENT)


def settle_cost(prediction):
    """Replace the estimate by what the run took (price x predict time)."""
    seconds = prediction.predict_time
    if seconds is None:
        seconds = (
            (prediction.completed_at - prediction.started_at).total_seconds()
            if prediction.started_at and prediction.completed_at
            else 0
        )
    cost = (prediction.version.effective_price_per_second * Decimal(str(seconds))).quantize(CENT)
    type(prediction).objects.filter(pk=prediction.pk).update(cost=cost)
    prediction.cost = cost


def admit(owner, versions, batch=False, costs=None):
    """Check that `owner` may start one prediction on each of `versions` now;
    return the estimated cost of each. Raises RunRefused. Call it inside the
    transaction that saves the predictions.

    `batch`: a grid's or a benchmark run's predictions, held for the fair
    scheduler (app.services.scheduling), which runs them a slot at a time: the
    rate a minute and the number running at once, limits on what a user
    starts by hand, neither count them nor refuse them; the daily quota and
    the spend caps do.

    A training is one run too: it passes its own estimate as `costs`
    (app.services.trainings.estimate), and trainings count in the same
    rates, quotas and caps."""

    if costs is None:
        estimates = {version.pk: estimate_cost(version) for version in versions}
        costs = [estimates[version.pk] for version in versions]
    shared = sum((cost for cost, v in zip(costs, versions) if v.backend == "replicate"), Decimal(0))
    now = timezone.now()
    if owner is not None:
        if connection.in_atomic_block:
            # Serialises one user's concurrent starts (SQLite's IMMEDIATE
            # transactions already do; PostgreSQL needs the row lock).
            get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        ban = Ban.objects.filter(user=owner).first()
        if ban is not None:
            raise RunRefused(
                f"Your account is suspended, so it cannot run predictions: {ban.reason}",
                status=403,
                title="Account suspended",
            )
        limits = limits_for(owner)
        mine = Prediction.objects.filter(owner=owner)
        trainings = Training.objects.filter(owner=owner)
        count = len(versions)
        if limits.per_minute is not None and not batch:
            window = mine.interactive().filter(created_at__gt=now - timedelta(minutes=1))
            trained = trainings.filter(created_at__gt=now - timedelta(minutes=1))
            if window.count() + trained.count() + count > limits.per_minute:
                oldest = window.order_by("created_at").values_list("created_at", flat=True).first() or now
                raise RunRefused(
                    f"You can start {limits.per_minute} predictions a minute. Try again in a minute.",
                    title="Rate limit reached",
                    retry_after=_seconds_until(oldest + timedelta(minutes=1), now),
                )
        if limits.per_day is not None:
            today = now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
            done_today = mine.filter(created_at__gte=today).count() + trainings.filter(created_at__gte=today).count()
            if done_today + count > limits.per_day:
                raise RunRefused(
                    f"You have used your {limits.per_day} predictions for today; the quota resets at 00:00 UTC.",
                    title="Daily quota reached",
                    retry_after=_seconds_until(today + timedelta(days=1), now),
                )
        if limits.concurrent is not None and not batch:
            running = mine.interactive().active().count() + trainings.active().count()
            if running + count > limits.concurrent:
                raise RunRefused(
                    f"You have {running} predictions running and can run {limits.concurrent} at once. "
                    "Wait for one to finish, or cancel one.",
                    title="Too many predictions running",
                    retry_after=5,
                )
        if shared and limits.monthly_spend is not None:
            spent = _spent(Prediction.objects.filter(owner=owner), now) + _spent(trainings, now)
            if spent + shared > limits.monthly_spend:
                raise RunRefused(
                    f"This run (about ${shared:.4f}) would take your spending on Replicate models this month "
                    f"past your cap of ${limits.monthly_spend:.2f} (spent so far: ${spent:.4f}). "
                    "Models served by this site's own servers still run.",
                    status=402,
                    title="Monthly spend cap reached",
                )
    if shared and settings.SITE_MONTHLY_SPEND_CAP is not None:
        spent = _spent(Prediction.objects.all(), now) + _spent(Training.objects.all(), now)
        if spent + shared > settings.SITE_MONTHLY_SPEND_CAP:
            raise RunRefused(
                "This site has reached its monthly spending cap on Replicate models. "
                "Models served by this site's own servers still run.",
                status=402,
                title="Site spend cap reached",
            )
    return costs


def admit_visitor(address, count):
    """Count `count` predictions a visitor without an account starts from
    `address` (throttle.client_ip); raises RunRefused past
    LIGHTBOX_ANONYMOUS_PREDICTIONS_PER_HOUR. Give them back with
    release_visitor if the run does not start after all."""
    allowed = settings.ANONYMOUS_PREDICTIONS_PER_HOUR
    if allowed is not None and count > allowed:
        raise RunRefused(
            f"Without an account you can start {allowed} predictions an hour. Pick fewer models, or log in.",
            title="Rate limit reached",
        )
    wait = throttle.visitor_runs().hit(address, count)
    if wait is not None:
        raise RunRefused(
            f"Without an account you can start {allowed} predictions an hour from one address. "
            f"Try again {throttle.wait_text(wait)}, or log in.",
            title="Rate limit reached",
            retry_after=wait,
        )


def release_visitor(address, count):
    throttle.visitor_runs().release(address, count)


def month_start(now=None):
    now = (now or timezone.now()).astimezone(dt_timezone.utc)
    return datetime(now.year, now.month, 1, tzinfo=dt_timezone.utc)


def _spent(predictions, now):
    total = predictions.filter(version__backend="replicate", created_at__gte=month_start(now)).aggregate(
        total=Sum("cost")
    )["total"]
    return Decimal(total or 0)


def _seconds_until(moment, now):
    return max(1, int((moment - now).total_seconds()) + 1)
