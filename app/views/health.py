"""/healthz for operators: the database, the broker, and each backend."""

from celery import current_app as celery_app
from django.db import connection
from django.http import JsonResponse

from app.models import Version


def healthz(request):
    checks = {"database": _database(), "broker": _broker()}
    versions = {}
    for version in Version.objects.select_related("model"):
        # The stored state, as the beat last found it (tasks.predictions.refresh_versions).
        versions[str(version)] = (
            {"available": True} if version.available else {"available": False, "reason": version.unavailable_reason}
        )
    ok = all(check == "ok" for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "failing", **checks, "versions": versions}, status=200 if ok else 503)


def _database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any driver error means the database is unusable
        return f"error: {exc}"


def _broker():
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # kombu raises transport-specific errors
        return f"error: {exc}"
