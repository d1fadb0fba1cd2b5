"""The reconciler: makes sure every prediction and training ends, whatever the
broker or a backend lost. The database is the source of truth; each round
runs the predictions' rules (tasks.predictions.reconcile_round), then the
trainings' (tasks.trainings.reconcile_round).
"""

import logging
import os
import socket
import uuid
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from app.models import ReconcilerState
from tasks import predictions, trainings

log = logging.getLogger(__name__)


# Named as it was when it lived in tasks.predictions: beat's schedule and the
# messages already queued carry that name.
@shared_task(name="tasks.predictions.reconcile")
def reconcile(by="beat"):
    """Make sure every prediction and training ends, whatever the broker or a backend lost.

    Beat schedules it; a worker runs it itself when beat is late
    (tasks.standby). One run at a time, whoever starts it: a run that finds
    the lease held returns False at once."""
    if by == "beat":
        ReconcilerState.beat_ran()
    holder = f"{by} ({socket.gethostname()} pid {os.getpid()}, run {uuid.uuid4().hex[:8]})"
    lease = timedelta(seconds=max(30, 3 * settings.HTTP_TIMEOUT))
    if not ReconcilerState.acquire(holder, lease):
        log.info("reconcile: another run holds the lease; %s skips this round", by)
        return False
    finished = False
    try:
        finished = _round(lambda: ReconcilerState.renew(holder, lease))
    finally:
        ReconcilerState.release(holder, finished)
    return finished


def _round(still_ours):
    """One round; `still_ours()` renews the lease before each step (an HTTP
    call may take LIGHTBOX_HTTP_TIMEOUT) and says whether to go on."""
    now = timezone.now()
    return predictions.reconcile_round(still_ours, now) and trainings.reconcile_round(still_ours, now)
