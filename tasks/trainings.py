"""Training tasks: thin, ids in, idempotent, as tasks.predictions' are, and
recovered by the same rules (tasks.rules: `reconcile_round`, which
tasks.reconciler runs after the predictions' round)."""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from app.models import Training
from app.services import backends, trainings
from app.services.api_json import training_json
from app.services.backends import BackendError, Busy
from tasks import rules

log = logging.getLogger(__name__)


def _load(training_id):
    training = Training.objects.select_related("version__model", "destination").filter(pk=training_id).first()
    if training is None or training.is_terminal:
        return None
    return training


@shared_task(bind=True, max_retries=None)
def run_training(self, training_id, failures=0):
    """Hand a training to its trainer; a busy trainer queues it, never fails it."""
    training = _load(training_id)
    if training is None or training.dispatched_at:
        return
    backend = backends.for_version(training.version)
    server_boot = backend.server_boot(training) or ""
    Training.objects.filter(pk=training.pk).update(attempted_at=timezone.now(), server_boot=server_boot)
    try:
        remote_id = backend.submit(training)
    except Busy as exc:
        raise self.retry(countdown=rules.backoff(min(self.request.retries, 6), base=0.2, cap=5.0)) from exc
    except BackendError as exc:
        if exc.permanent or failures >= rules.SUBMIT_RETRIES:
            trainings.fail(training, str(exc))
            return
        raise self.retry(args=[training_id, failures + 1], countdown=rules.backoff(failures)) from exc
    if not training.mark_dispatched(remote_id, server_boot):
        # Canceled while we were handing it over: stop it there too.
        training.remote_id, training.dispatched_at = remote_id, timezone.now()
        backend.cancel(training)
        return
    if training.version.backend == "replicate" and not backends.replicate.use_webhooks():
        poll_training.apply_async([training_id], countdown=settings.REPLICATE_POLL_INTERVAL)


@shared_task(bind=True, max_retries=None)
def poll_training(self, training_id, failures=0):
    """Follow a training at Replicate when its webhooks cannot reach us."""
    training = _load(training_id)
    if training is None:
        return
    try:
        trainings.apply_update(training, backends.replicate.poll(training))
    except BackendError as exc:
        if exc.permanent or failures >= rules.SUBMIT_RETRIES:
            trainings.fail(training, str(exc))
            return
        raise self.retry(args=[training_id, failures + 1], countdown=rules.backoff(failures)) from exc
    if not training.is_terminal:
        raise self.retry(countdown=settings.REPLICATE_POLL_INTERVAL)


@shared_task(bind=True, max_retries=rules.SUBMIT_RETRIES)
def finish_training(self, training_id, payload):
    """Apply a terminal webhook off the web thread: the weights are stored,
    maybe downloaded, and a version is made."""
    training = _load(training_id)
    if training is None:
        return
    backend = backends.for_version(training.version)
    try:
        trainings.apply_update(training, backend.parse_update(payload))
    except BackendError as exc:
        if exc.permanent or self.request.retries >= rules.SUBMIT_RETRIES:
            trainings.fail(training, str(exc))
            return
        raise self.retry(countdown=rules.backoff(self.request.retries)) from exc


@shared_task
def compare(training_id):
    """Base against fine-tune, once the training has succeeded."""
    training = Training.objects.select_related("version", "new_version", "owner").filter(pk=training_id).first()
    if training is not None:
        trainings.compare(training)


def reconcile_round(still_ours, now):
    """The reconciler's round for trainings (tasks.reconciler runs it after the
    predictions'), by the same rules; False if the lease was lost."""
    active = Training.objects.active()
    rules.record_heard(active, now)
    return rules.hand_over_again(active, run_training, now, still_ours, batch=100) and rules.recheck_quiet(
        active.select_related("version", "destination"),
        now,
        still_ours,
        batch=100,
        lifecycle=trainings,
        runner=run_training,
        timeout=settings.TRAINING_TIMEOUT,
    )


@shared_task(bind=True, max_retries=None)
def send_webhook(self, training_id, event):
    """POST the training to its caller's webhook, signed as Replicate signs."""
    training = Training.objects.select_related("version__model", "owner", "new_version").filter(pk=training_id).first()
    rules.send_webhook(self, training, event, training_json)
