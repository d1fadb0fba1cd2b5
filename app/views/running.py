"""Starting runs from the pages: who may, visitors' per-address limits, and
the page a refused run gets."""

from django.conf import settings

from app.core import throttle
from app.services import comparisons, limits


def can_run(user):
    return user.is_authenticated or settings.ANONYMOUS_RUNS


def start_comparison(request, versions, input, **options):
    """Comparison.start for whoever asks. Visitors without an account are also
    limited per client address (limits.admit_visitor). Raises
    schema.InputError or limits.RunRefused, starting nothing."""
    if request.user.is_authenticated:
        return comparisons.start(versions, input, owner=request.user, **options)
    address, count = throttle.client_ip(request), len({version.pk for version in versions})
    limits.admit_visitor(address, count)
    try:
        return comparisons.start(versions, input, owner=None, **options)
    except Exception:
        limits.release_visitor(address, count)
        raise


def refused(response, exc):
    """The page of a refused run: the refusal's status, and when to retry."""
    response.status_code = exc.status
    if exc.retry_after:
        response["Retry-After"] = str(exc.retry_after)
    return response
