"""/healthz for operators: the database, the broker, beat, and each backend.

Anyone gets the status (load balancers need no credentials); the details name
internal addresses and error texts, so only staff (signed in) and monitors that
send LIGHTBOX_HEALTH_TOKEN as a bearer token get them."""

from celery import current_app as celery_app
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache

from app.models import ReconcilerState, Version
from app.services import pools, storage


@never_cache
def healthz(request):
    checks = {
        "database": _database(),
        "broker": _broker(),
        "beat": _beat(),
        "storage": storage.disk_problem() or "ok",
    }
    versions = {}
    for version in Version.objects.select_related("model").prefetch_related("instances"):
        # The stored state, as the beat last found it (tasks.predictions.refresh_versions).
        versions[str(version)] = (
            {"available": True} if version.available else {"available": False, "reason": version.unavailable_reason}
        )
        if version.instances.all():
            # A pool: each instance, up (and busy) or down with the reason.
            versions[str(version)]["instances"] = pools.status(version)
    ok = all(check == "ok" for check in checks.values())
    body = {"status": "ok" if ok else "failing"}
    if _may_see_details(request):
        body.update(checks, versions=versions)
    return JsonResponse(body, status=200 if ok else 503)


def _may_see_details(request):
    """Staff signed in, or a monitor with the health token (no /v1 token: a
    monitor's credential should open nothing else)."""
    if request.user.is_staff:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.HEALTH_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and constant_time_compare(token.strip(), expected)


def _database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any driver error means the database is unusable
        return f"error: {exc}"


def _beat():
    """Beat schedules the reconciler, which ends what a broker or a backend
    lost; the workers stand in when it is late, but it must be restarted."""
    try:
        problem = ReconcilerState.current().beat_problem()
    except Exception as exc:  # the database is down: its own check says so
        return f"error: {exc}"
    return f"error: {problem}" if problem else "ok"


def _broker():
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # kombu raises transport-specific errors
        return f"error: {exc}"
