"""Pools of Cog servers: a version served by several instances, one slot each.

The database keeps the slots. A worker claims a free instance for a
prediction atomically (a row lock that other claimers skip, so two workers
never take one slot), hands the prediction to it, and the slot is freed in
the same commit that makes the prediction terminal (`Prediction._transition`).
When every instance is busy the prediction waits in the queue (never fails
for it); an instance that does not answer is marked down and skipped until a
health check finds it up again; a prediction whose instance was lost while
it ran goes back to the queue, unless its result arrived meanwhile.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from app.core import jobs
from app.models import Deployment, Instance, Prediction
from app.services import backends


class NoInstance(Exception):
    """No instance of the pool can take the prediction now."""

    def __init__(self, message, any_up):
        super().__init__(message)
        # False when the whole pool is down (not merely busy).
        self.any_up = any_up


def is_pooled(version):
    return version.backend == version.Backend.COG and version.instances.exists()


def claim(prediction, lease):
    """The instance that takes `prediction`: the one it already holds, if the
    worker that claimed it has had `lease` seconds to hand it over (it died,
    the prediction was sent again), or a free one, claimed for it.

    Returns None when another worker is handing it over right now or it was
    handed over already. Raises NoInstance when none is free."""
    now = timezone.now()
    if not Instance.objects.holding(prediction).exists():
        # Most claims of a busy pool end here: say so without taking a lock.
        _raise_unless_free(prediction.version_id)
    with transaction.atomic():
        # One claimer per prediction at a time (the same lock _transition takes).
        row = Prediction.objects.select_for_update().filter(pk=prediction.pk).first()
        if row is None or row.is_terminal or row.dispatched_at:
            return None
        held = Instance.objects.holding(prediction).first()
        if held is not None:
            if held.claimed_at and held.claimed_at > now - timedelta(seconds=lease):
                return None
            return held
        if row.deployment_id and not _deployment_has_room(row.deployment_id):
            raise NoInstance("The deployment runs as many predictions as its max_instances.", any_up=True)
        # The instance that waited longest first, so the load spreads evenly;
        # skip_locked: another claimer is taking that one, look at the next.
        instance = (
            Instance.objects.select_for_update(skip_locked=True)
            .free()
            .filter(version_id=row.version_id)
            .order_by(F("claimed_at").asc(nulls_first=True), "pk")
            .first()
        )
        if instance is None:
            _raise_unless_free(row.version_id)
            raise NoInstance("Every instance is busy.", any_up=True)  # the free one was just taken
        Instance.objects.filter(pk=instance.pk).update(prediction=row, claimed_at=now)
        Prediction.objects.filter(pk=row.pk).update(instance=instance)
    prediction.instance = instance
    prediction.instance_id = instance.pk
    return instance


def _raise_unless_free(version_id):
    if not Instance.objects.free().filter(version_id=version_id).exists():
        any_up = Instance.objects.up().filter(version_id=version_id).exists()
        raise NoInstance("Every instance is busy." if any_up else "No instance of the pool is up.", any_up=any_up)


def _deployment_has_room(deployment_id):
    deployment = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
    if deployment is None:
        return True
    busy = Instance.objects.filter(prediction__deployment_id=deployment_id).count()
    return busy < deployment.max_instances


def release(prediction, instance, down_reason=None):
    """Give back the slot `prediction` holds on `instance` without running it
    there (the server refused or could not be reached); `down_reason` marks
    the instance down as well."""
    Instance.objects.filter(pk=instance.pk, prediction_id=prediction.pk).update(prediction=None)
    if down_reason is not None:
        instance.set_health(down_reason)


def release_finished(prediction):
    """The instance running `prediction` reported its end, so it is free now:
    give back the slot before the outputs are stored, and let the next
    prediction start meanwhile."""
    if Instance.objects.holding(prediction).update(prediction=None):
        wake_next(prediction.version)


def wake_next(version):
    """A slot of `version`'s pool was freed: hand the prediction that waited
    longest to a worker now, rather than when its retry comes round."""
    if not Instance.objects.free().filter(version=version).exists():
        return
    waiting = (
        Prediction.objects.active()
        .not_held()
        .filter(version=version, dispatched_at__isnull=True)
        .exclude(pk__in=Instance.objects.filter(prediction__isnull=False).values("prediction_id"))
        .order_by("created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting:
        jobs.after_commit("tasks.predictions.run_prediction", waiting)


def requeue_lost(prediction, instance, reason):
    """`instance` was lost while it ran `prediction`: mark it down and put the
    prediction back in the queue, unless it has ended meanwhile (its result
    arrived: it is not run twice). Returns whether it was re-queued."""
    instance.set_health(reason)
    with transaction.atomic():
        requeued = Prediction.objects.filter(pk=prediction.pk, status__in=Prediction.ACTIVE, instance=instance).update(
            dispatched_at=None, instance=None, attempted_at=timezone.now(), heard_at=None
        )
        Instance.objects.filter(pk=instance.pk, prediction_id=prediction.pk).update(prediction=None)
    if requeued:
        jobs.after_commit("tasks.predictions.run_prediction", prediction.pk)
    return bool(requeued)


def check(instance):
    """Ask one instance whether it answers; record it. "" when it is up."""
    reason = backends.cog.check_url(instance.url)
    instance.set_health(reason)
    return reason


def check_all(version):
    """Health-check every instance of `version`'s pool; the reason the pool
    cannot run, or "" when at least one instance is up."""
    reasons = [check(instance) for instance in version.instances.all()]
    if any(reason == "" for reason in reasons):
        return ""
    return "No instance of the pool is up: " + "; ".join(reasons)


def lost_instances(quiet_since):
    """Instances that hold a prediction they were given, but have told us
    nothing about it since `quiet_since`: candidates for a health check."""
    return (
        Instance.objects.filter(prediction__isnull=False, prediction__dispatched_at__isnull=False)
        .filter(Q(prediction__heard_at__lt=quiet_since) | Q(prediction__heard_at__isnull=True))
        .select_related("prediction", "version")
    )


def status(version):
    """{url: {"up", "busy", "reason"}} for /healthz and the admin."""
    return {
        instance.url: {
            "up": instance.up,
            "busy": instance.prediction_id is not None,
            **({"reason": instance.down_reason} if not instance.up else {}),
        }
        for instance in version.instances.all()
    }


def set_instances(version, urls):
    """Make `urls` the pool of `version` (the catalog's local pools): add the
    missing ones, drop the others unless they hold a prediction."""
    for url in urls:
        Instance.objects.get_or_create(version=version, url=url.rstrip("/"))
    version.instances.exclude(url__in=[url.rstrip("/") for url in urls]).filter(prediction__isnull=True).delete()
