"""The rules predictions and trainings share: retries with backoff, and the
reconciler's rules for a run the broker or a backend lost (docs/protocols.md).

Plain functions, no tasks: tasks.predictions and tasks.trainings each pass
their rows, their lifecycle service (app.services.predictions or
app.services.trainings) and the task that hands a run over, so neither
imports the other.
"""

import json
import logging
import random
from datetime import timedelta

import httpx
from django.conf import settings
from django.db.models import F, Q

from app.core import netguard
from app.services import backends, pools
from app.services.api_json import webhook_headers
from app.services.backends import BackendError, Busy

log = logging.getLogger(__name__)

# A transient failure (server down, 5xx, garbage) is retried this many times,
# with backoff, before the run fails with the backend's error.
SUBMIT_RETRIES = 5
# How many times a run is handed to a backend again after the backend lost it
# (a restarted Cog server).
MAX_DISPATCHES = 3


def backoff(attempt, base=0.25, cap=10.0):
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)


def send_webhook(task, run, event, body_of):
    """POST `run` (a prediction, a training) as `body_of(run)` to its caller's
    webhook, signed as Replicate signs; `task` (a bound Celery task) retries
    only the terminal one, as Replicate does."""
    if run is None or not run.webhook:
        return
    if event != "completed" and run.is_terminal:
        # It ended while this waited in the queue: the body would be the
        # final state, which the completed webhook brings, once and last.
        return
    try:
        netguard.check_url(run.webhook)
    except netguard.UnsafeURL as exc:
        # Checked when the run was created; its host has moved inside since.
        log.warning("webhook of %s %s not sent: %s", type(run).__name__.lower(), run.pk, exc)
        return
    body = json.dumps(body_of(run))
    try:
        # The guarded client checks the address it connects to (DNS rebinding).
        response = netguard.client().post(
            run.webhook, content=body, headers={"Content-Type": "application/json", **webhook_headers(run, body)}
        )
        ok = response.status_code < 300
    except httpx.HTTPError:
        ok = False
    if not ok and event == "completed" and task.request.retries < settings.WEBHOOK_RETRIES:
        raise task.retry(countdown=backoff(task.request.retries, base=1.0, cap=60))


def _deadline(now):
    return now - timedelta(seconds=settings.DISPATCH_DEADLINE)


def record_heard(active, now):
    """Heard of from its Cog server after the last hand-over attempt, but not
    recorded as handed over: the worker died between the server's 202 and
    recording it. The server has it; sending it again would run it twice if it
    has finished and its webhooks are late. Recorded now, `recheck_quiet`
    takes it from here."""
    active.filter(
        version__backend="cog",
        dispatched_at__isnull=True,
        attempted_at__lt=_deadline(now),
        heard_at__gt=F("attempted_at"),
    ).update(dispatched_at=F("heard_at"), remote_id=F("id"), dispatch_attempts=F("dispatch_attempts") + 1)


def hand_over_again(active, runner, now, still_ours, batch):
    """Not (or no longer) handed over: the message was lost with a worker, or
    the worker died between the server's answer and recording it (the row may
    say "processing" by then, from the server's start webhook), or a busy
    server's re-queue was lost. Handing it over again (`runner`) is
    idempotent. False if the lease was lost."""
    deadline = _deadline(now)
    for run_id in (
        active.filter(dispatched_at__isnull=True)
        .filter(Q(attempted_at__lt=deadline) | Q(attempted_at__isnull=True, created_at__lt=deadline))
        .values_list("pk", flat=True)[:batch]
    ):
        if not still_ours():
            return False
        active.model.objects.filter(pk=run_id).update(attempted_at=now)
        runner.delay(run_id)
    return True


def recheck_quiet(active, now, still_ours, batch, lifecycle, runner, timeout=None):
    """Handed over but quiet: ask the backend again, or end it (`recheck`).
    False if the lease was lost."""
    deadline = _deadline(now)
    for run in active.filter(dispatched_at__isnull=False).filter(Q(heard_at__lt=deadline) | Q(heard_at__isnull=True))[
        :batch
    ]:
        if not still_ours():
            return False
        recheck(run, now, lifecycle, runner, timeout)
    return True


def recheck(run, now, lifecycle, runner, timeout=None):
    """The rules for a quiet run (docs/protocols.md): a prediction or a
    training, with its `lifecycle` service, its `runner` task and its
    `timeout` (the version's when None)."""
    version = run.version
    timeout = timeout or version.timeout
    timed_out = (run.heard_at or run.dispatched_at) < now - timedelta(seconds=timeout)
    if version.backend == "replicate":
        if timed_out:
            stop_quiet(run, lifecycle, timeout)
            return
        try:
            lifecycle.apply_update(run, backends.replicate.poll(run))
        except BackendError as exc:
            log.warning("reconcile: polling %s failed: %s", run.id, exc)
        return
    # Cog has no GET for a prediction, and forgets one the moment it ends: a
    # PUT with the same id answers the state of a prediction it is running,
    # but runs a finished one again. So quiet alone is no reason to PUT (its
    # webhooks may be late: docs/protocols.md); a server that restarted since
    # it accepted the prediction has lost it, and one quiet past the timeout
    # is asked (then a forgotten prediction's webhook was lost, not late).
    boot = backends.cog.server_boot(run)
    restarted = bool(boot and run.server_boot and boot != run.server_boot)
    if not (restarted or timed_out):
        return
    if timed_out and boot is None:
        stop_quiet(run, lifecycle, timeout)  # not even its health check answers
        return
    rows = type(run).objects.filter(pk=run.pk)
    if run.dispatch_attempts >= MAX_DISPATCHES:
        lifecycle.fail(run, f"The model server lost this {_kind(run)} several times; giving up.")
        return
    try:
        still_running = backends.cog.resubmit(run)
    except Busy:
        # Busy with another prediction: ours is lost there. Queue it again.
        rows.filter(status__in=type(run).ACTIVE).update(dispatched_at=None, attempted_at=now)
        runner.delay(run.id)
        return
    except BackendError as exc:
        if getattr(run, "instance_id", None) and not exc.permanent:
            # A pool's instance that is gone: another instance can run it.
            pools.requeue_lost(run, run.instance, str(exc))
        elif timed_out:
            stop_quiet(run, lifecycle, timeout)
        else:
            log.warning("reconcile: model server for %s: %s", run.id, exc)
        return
    if still_running and timed_out:
        stop_quiet(run, lifecycle, timeout)  # a hung model holds the server's only slot
    elif still_running:
        rows.update(server_boot=boot or "")
    else:
        rows.update(heard_at=now, dispatch_attempts=F("dispatch_attempts") + 1, server_boot=boot or "")


def stop_quiet(run, lifecycle, timeout):
    backends.for_version(run.version).cancel(run)  # frees the slot a hung model holds
    lifecycle.fail(
        run,
        f"The model server stopped answering: nothing heard for {timeout} seconds, so the {_kind(run)} was stopped.",
    )


def _kind(run):
    return type(run).__name__.lower()
