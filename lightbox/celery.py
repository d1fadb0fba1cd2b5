"""The Celery app. Settings come from Django's (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lightbox.settings")

app = Celery("lightbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"], related_name="predictions")
app.autodiscover_tasks(["tasks"], related_name="benchmarks")
# grids (issue 14): the task that starts a grid's cells.
app.autodiscover_tasks(["tasks"], related_name="grids")
# The arena's leaderboard fits (tasks/arena.py).
app.autodiscover_tasks(["tasks"], related_name="arena")
app.autodiscover_tasks(["tasks"], related_name="trainings")  # fine-tuning (trainapi)
# The reconciler's round, over predictions and trainings (tasks/reconciler.py).
app.autodiscover_tasks(["tasks"], related_name="reconciler")

# The filesystem transport keeps its messages under var/; the folders must exist
# before the first producer or worker touches them.
for key in ("data_folder_in", "processed_folder", "control_folder"):
    if key in settings.CELERY_BROKER_TRANSPORT_OPTIONS:
        os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)


@app.on_after_finalize.connect
def _schedule(sender, **kwargs):
    from tasks.predictions import refresh_versions, sweep_storage
    from tasks.reconciler import reconcile

    sender.add_periodic_task(settings.RECONCILE_INTERVAL, reconcile.s(), name="reconcile predictions")
    sender.add_periodic_task(settings.AVAILABILITY_INTERVAL, refresh_versions.s(), name="refresh versions")
    sender.add_periodic_task(settings.SWEEP_INTERVAL, sweep_storage.s(), name="sweep storage")
    # Reproducibility checks of a sample of published predictions (off: LIGHTBOX_REPRO_CHECK_SAMPLE=0).
    from tasks.reproductions import check_sample

    if settings.REPRO_CHECK_SAMPLE > 0:
        sender.add_periodic_task(settings.REPRO_CHECK_INTERVAL, check_sample.s(), name="reproducibility checks")
    # bench: benchmark runs a lost worker left with comparisons to start.
    from tasks.benchmarks import sweep as sweep_benchmarks

    sender.add_periodic_task(settings.RECONCILE_INTERVAL * 6, sweep_benchmarks.s(), name="sweep benchmark runs")


@worker_ready.connect
def _stand_in_for_beat(sender, **kwargs):
    """Each worker runs the reconciler itself when beat is late (tasks.standby)."""
    from tasks import standby

    standby.start(sender.hostname)


@worker_shutdown.connect
def _stop_standing_in(**kwargs):
    from tasks import standby

    standby.stop()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs):
    """Drop connections past CONN_MAX_AGE or broken, as Django does around each
    request; the others are reused (CELERY_DB_REUSE_MAX)."""
    close_old_connections()
