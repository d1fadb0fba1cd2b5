"""The web process's application (Procfile `web:`): Django on a fixed pool of
threads behind an ASGI server, where a waiting /v1 request holds no thread
(lightbox.webserver says how)."""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from lightbox.webserver import ThreadedWSGI, largest_body

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lightbox.settings")
application = ThreadedWSGI(
    get_wsgi_application(),
    threads=settings.WEB_THREADS,
    max_body=largest_body(),
    results_threads=settings.RESULTS_THREADS,
)
