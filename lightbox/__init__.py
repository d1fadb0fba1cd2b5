"""The Lightbox project: settings, URLs, the WSGI and ASGI entry points and the
Celery app. The domain lives in the `app` package (docs/architecture.md)."""

# Load the Celery app with Django so that tasks queued from views use it.
from lightbox.celery import app as celery_app

__all__ = ["celery_app"]
