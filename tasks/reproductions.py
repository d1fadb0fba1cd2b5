"""The reproducibility check's beat task: thin, as every task here."""

from celery import shared_task
from django.conf import settings

from app.services import reproductions


@shared_task
def check_sample():
    """Settle pending checks, and run LIGHTBOX_REPRO_CHECK_SAMPLE published
    predictions again (none by default)."""
    return reproductions.check_sample(settings.REPRO_CHECK_SAMPLE)
