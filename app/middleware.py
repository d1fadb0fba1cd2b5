"""Request timing for benchmarks (the CSP lives in app.security)."""

from django.conf import settings


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
