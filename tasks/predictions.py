"""Prediction tasks: thin, ids in, idempotent.

A worker hands a prediction to its backend and returns; progress and the result
come back as webhooks to the web process (or by polling, for Replicate without
a public SITE_URL). So a worker is never tied up while a model runs, and a
worker that dies after the hand-off loses nothing. The database is the source
of truth: `reconcile_round` (run by tasks.reconciler) re-sends what the broker
lost and ends what a backend forgot, by the rules trainings share (tasks.rules).
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from app.models import IdempotencyKey, Prediction, Upload
from app.services import backends, catalog, files, pools, predictions, scheduling, storage
from app.services.api_json import prediction_json
from app.services.backends import BackendError, Busy
from tasks import rules

log = logging.getLogger(__name__)

# A run again for a lost output waits this long, this many times, for a full disk.
RERUN_ROOM_WAIT = 5
RERUN_ROOM_TRIES = 36
UPLOAD_TTL = timedelta(days=1)
# Seconds a pool's instance may say nothing of the prediction it runs before
# the reconciler checks that it is still there (diffusers log every step).
INSTANCE_QUIET = 3


def _load(prediction_id):
    prediction = Prediction.objects.select_related("version__model").filter(pk=prediction_id).first()
    if prediction is None or prediction.is_terminal:
        return None
    return prediction


@shared_task(bind=True, max_retries=None)
def run_prediction(self, prediction_id, failures=0, rerun=False):
    """Hand a prediction to its backend. A busy backend queues it; it never fails it.
    `rerun`: its output was lost (predictions.rerun_lost_output); hand it over
    even if the first run's hand-off was recorded after that run had ended."""
    prediction = _load(prediction_id)
    if prediction is None or (prediction.dispatched_at and not rerun):
        return
    if rerun and self.request.retries < RERUN_ROOM_TRIES and storage.disk_problem():
        # Its output was lost to a full disk: run again now and it is lost
        # again; wait (a few minutes at most) for the disk to have room.
        raise self.retry(args=[prediction_id, failures, rerun], countdown=RERUN_ROOM_WAIT)
    backend = backends.for_version(prediction.version)
    instance = None
    if pools.is_pooled(prediction.version):
        try:
            instance = pools.claim(prediction, lease=settings.DISPATCH_DEADLINE)
        except pools.NoInstance as exc:
            if not exc.any_up and failures >= rules.SUBMIT_RETRIES:
                predictions.fail(prediction, f"{prediction.version.model} cannot run: {exc}")
                return
            # All busy: wait our turn, as long as it takes (a freed slot
            # also wakes the longest waiting prediction: pools.wake_next).
            failures = failures if exc.any_up else failures + 1
            raise self.retry(
                args=[prediction_id, failures], countdown=rules.backoff(min(self.request.retries, 6), 0.1, 5)
            )
        if instance is None:
            return  # another worker is handing it over, or has
    # Asked before the hand-over: a restart between the two then reads as one.
    server_boot = backend.server_boot(prediction) or ""
    Prediction.objects.filter(pk=prediction.pk).update(attempted_at=timezone.now(), server_boot=server_boot)
    try:
        remote_id = backend.submit(prediction)
    except Busy as exc:
        if instance is not None:
            # Busy with something we do not know of: try another instance.
            pools.release(prediction, instance)
            raise self.retry(countdown=rules.backoff(0, base=0.05)) from exc
        # Another prediction holds the slot: wait our turn, as long as it takes.
        raise self.retry(countdown=rules.backoff(min(self.request.retries, 4), base=0.05, cap=1.0))
    except BackendError as exc:
        if instance is not None and not exc.permanent:
            # That instance is down: skip it until a health check finds it up.
            pools.release(prediction, instance, down_reason=str(exc))
            raise self.retry(args=[prediction_id, failures], countdown=rules.backoff(0, base=0.05)) from exc
        if exc.permanent or failures >= rules.SUBMIT_RETRIES:
            predictions.fail(prediction, str(exc))
            return
        raise self.retry(args=[prediction_id, failures + 1], countdown=rules.backoff(failures))
    if not prediction.mark_dispatched(remote_id, server_boot):
        # Canceled while we were handing it over: stop it there too.
        prediction.remote_id = remote_id
        prediction.dispatched_at = timezone.now()
        backend.cancel(prediction)
        return
    if prediction.version.backend == "replicate" and not backends.replicate.use_webhooks():
        poll_prediction.apply_async([prediction_id], countdown=settings.REPLICATE_POLL_INTERVAL)


@shared_task(bind=True, max_retries=None)
def poll_prediction(self, prediction_id, failures=0):
    """Follow a Replicate prediction when its webhooks cannot reach us."""
    prediction = _load(prediction_id)
    if prediction is None:
        return
    try:
        update = backends.replicate.poll(prediction)
        predictions.apply_update(prediction, update)
    except BackendError as exc:
        if exc.permanent or failures >= rules.SUBMIT_RETRIES:
            predictions.fail(prediction, str(exc))
            return
        raise self.retry(args=[prediction_id, failures + 1], countdown=rules.backoff(failures))
    if not prediction.is_terminal:
        raise self.retry(countdown=settings.REPLICATE_POLL_INTERVAL)


@shared_task(bind=True, max_retries=rules.SUBMIT_RETRIES)
def finish_prediction(self, prediction_id, payload):
    """Apply a terminal webhook whose outputs must be downloaded (off the web thread)."""
    prediction = _load(prediction_id)
    if prediction is None:
        return
    backend = backends.for_version(prediction.version)
    try:
        predictions.apply_update(prediction, backend.parse_update(payload))
    except BackendError as exc:
        if exc.permanent or self.request.retries >= rules.SUBMIT_RETRIES:
            predictions.fail_storing(prediction, exc)
            return
        raise self.retry(countdown=rules.backoff(self.request.retries))


@shared_task
def refresh_versions():
    """Ask every backend whether its versions can run, and read the schema of
    a version whose server answers for the first time."""
    catalog.refresh_all(max_age=settings.AVAILABILITY_INTERVAL / 2)


def reconcile_round(still_ours, now):
    """The reconciler's round for predictions (tasks.reconciler runs it, then
    the trainings'); `still_ours()` renews the lease before each step (an HTTP
    call may take LIGHTBOX_HTTP_TIMEOUT) and says whether to go on. False if
    the lease was lost."""
    active = Prediction.objects.active()
    rules.record_heard(active, now)
    # Held batch predictions are no lost messages: they wait for the fair
    # scheduler. Wake every target that has some, so that a lost wake-up (a
    # worker killed between a prediction's end and its wake) leaves none stuck.
    if not rules.hand_over_again(active.not_held(), run_prediction, now, still_ours, batch=500):
        return False
    if not still_ours():
        return False
    scheduling.wake_all()
    # A pool's instance that went quiet while running a prediction: if it is
    # gone, the prediction goes back to the queue for another instance.
    for instance in pools.lost_instances(now - timedelta(seconds=INSTANCE_QUIET)):
        if not still_ours():
            return False
        reason = pools.check(instance)
        if reason:
            pools.requeue_lost(instance.prediction, instance, reason)
    if not rules.recheck_quiet(
        active.select_related("version"), now, still_ours, batch=500, lifecycle=predictions, runner=run_prediction
    ):
        return False
    # Files a Cog server uploaded for a prediction that never completed.
    for upload in Upload.objects.filter(created_at__lt=now - UPLOAD_TTL)[:500]:
        upload.file.delete(save=False)
        upload.delete()
    # Uploads kept in this machine's spool while the database or storage was down.
    storage.drain_spool()
    # Idempotency-Keys past their day: the same key may start a new prediction.
    IdempotencyKey.objects.filter(
        pk__in=list(IdempotencyKey.objects.expired().values_list("pk", flat=True)[:5000])
    ).delete()
    if not still_ours():
        return False
    # Files of /v1/files past their expires_at.
    files.sweep()
    return True


@shared_task
def sweep_storage():
    """Delete the files in storage and the spool that no row names, a day old."""
    return len(storage.sweep_orphans())


@shared_task(bind=True, max_retries=None)
def send_webhook(self, prediction_id, event):
    """POST the prediction to its caller's webhook, signed as Replicate signs."""
    prediction = Prediction.objects.select_related("version__model", "owner").filter(pk=prediction_id).first()
    rules.send_webhook(self, prediction, event, prediction_json)
