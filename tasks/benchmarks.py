"""Benchmark run tasks: thin, ids in, idempotent (app.services.benchmarks)."""

from celery import shared_task
from django.db.models import Count, F

from app.models import BenchmarkRun
from app.services import benchmarks


@shared_task(bind=True, max_retries=None)
def materialise(self, run_id, retry=False):
    """Start the run's missing comparisons; run again, it starts each once.
    A limit that frees up soon (the owner's predictions at once, per minute)
    is waited for here, without a worker's thread held."""
    wait = benchmarks.materialise(run_id, retry=retry)
    if wait is not None:
        self.apply_async((run_id, retry), countdown=wait)


@shared_task
def on_new_version(version_id):
    benchmarks.on_new_version(version_id)


@shared_task
def sweep():
    """Beat: queue again each running run that lacks comparisons, or was told
    to go on and has not yet (a worker killed while it started them, a broker
    that lost the message); running twice at once is harmless, the run's row
    lock takes them in turn."""
    running = BenchmarkRun.objects.filter(status=BenchmarkRun.Status.RUNNING)
    going_on = set(running.filter(note=benchmarks.GOING_ON).values_list("pk", flat=True))
    lacking = (
        running.annotate(started=Count("comparisons")).filter(started__lt=F("planned")).values_list("pk", flat=True)
    )
    for run_id in going_on:
        materialise.delay(run_id, True)
    for run_id in set(lacking) - going_on:
        materialise.delay(run_id)
