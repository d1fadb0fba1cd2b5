"""Request timing for benchmarks, refusing what no request of this site
contains, and a 503 when the database is away (the CSP lives in app.security)."""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.shortcuts import render

from app.views import access, problems

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseNulMiddleware:
    """A NUL character in the path, the query string or a submitted form
    answers 400. None of this site's URLs or forms has one, and PostgreSQL
    refuses text with NUL in any query (it raised in views that look up an id
    or a filter from the request: 500s). Django's form fields already refuse
    NUL; this covers what views read directly. The API (/v1) and the backends'
    hooks (/hooks) check their own paths and bodies, and answer as APIs do."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(("/v1/", "/hooks/")) and self._has_nul(request):
            reason = "The request contains a NUL character, which no address or form of this site has."
            return render(request, "400.html", {"reason": reason}, status=400)
        return self.get_response(request)

    @staticmethod
    def _has_nul(request):
        if "\x00" in request.path or _nul_in(request.GET):
            return True
        return request.method == "POST" and request.content_type in FORM_TYPES and _nul_in(request.POST)


def _nul_in(query):
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in query.lists())


class ServerTimingMiddleware:
    """With LIGHTBOX_SERVER_TIMING on, say in a Server-Timing header how long
    the view took and how many SQL queries it ran (bench/web_pages.py reads it;
    browsers show it in their network panel). Off by default: it tells how the
    site works inside."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not settings.SERVER_TIMING:
            return self.get_response(request)
        import time

        from django.db import connection

        queries = []

        def count(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                queries.append(time.perf_counter() - started)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
        total = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = (
            f'app;dur={total:.2f}, db;desc="{len(queries)} queries";dur={sum(queries) * 1000:.2f}'
        )
        return response


class DatabaseUnavailableMiddleware:
    """A view that lost the database (PostgreSQL restarting, a dropped
    connection) answers 503 with Retry-After, as RFC 7807 JSON under /v1 and a
    short page elsewhere, instead of a 500: the client can tell "try again"
    from a bug, and official clients retry a 503. The page touches no row (the
    base template would read the session and user)."""

    RETRY_AFTER = 5

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        log.warning("The database did not answer %s %s", request.method, request.path, exc_info=exception)
        if request.path == "/v1" or request.path.startswith("/v1/"):
            response = problems.problem(
                503,
                "Service unavailable",
                "The database is not answering; nothing was changed. Try again in a few seconds.",
            )
        else:
            response = render(request, "503.html", status=503)
        response["Retry-After"] = str(self.RETRY_AFTER)
        return response


class GoneMiddleware:
    """A page whose item moderators hid answers the 410 page: a view looks
    the item up (access.get_for_user raises Gone) and need not catch it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, access.Gone):
            return access.gone_response(request, exception)
        return None
