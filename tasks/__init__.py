"""Celery tasks: an interface, like the views. The Celery app is lightbox.celery."""
