"""Workers stand in for a late beat.

Beat schedules the reconciler, and without it a lost message or a lost
webhook waits until beat is back. So each worker keeps a thread that looks,
about once a reconcile interval, at when a run last ended; after two
intervals without one (and nobody holding the lease) it runs the reconciler
itself, in this thread. The lease (app.models.ReconcilerState) lets one run
act at a time, whoever starts it; beat's own runs are recorded apart, so
/healthz still says beat is down.
"""

import logging
import random
import threading

from django.conf import settings
from django.db import connection

from app.models import ReconcilerState
from tasks.reconciler import reconcile

log = logging.getLogger(__name__)

_stop = threading.Event()


def start(hostname):
    """Called when the worker is ready (lightbox.celery)."""
    if not settings.RECONCILER_STANDBY:
        return
    _stop.clear()
    threading.Thread(target=_watch, args=(f"worker {hostname}",), name="reconciler-standby", daemon=True).start()


def stop():
    _stop.set()


def _watch(name):
    interval = settings.RECONCILE_INTERVAL
    # Jittered, so that a fleet of workers does not look all at once.
    while not _stop.wait(interval * (0.75 + random.random() / 2)):
        try:
            if ReconcilerState.current().overdue():
                log.warning("reconciler: no run has ended for %g s (beat is late); %s runs it", 2 * interval, name)
                reconcile(by=name)
        except Exception:
            # The database may be down for a while: look again next time.
            log.exception("reconciler standby: this round failed")
        finally:
            # This thread's own connection: a fresh one each round survives a database restart.
            connection.close()
