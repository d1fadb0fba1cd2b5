from django.conf import settings
from django.db.models import Count
from django.utils.functional import SimpleLazyObject

from app.core.roles import is_moderator
from app.models import Notice, Report


def accounts(request):
    """Whether pages offer sign-up (LIGHTBOX_SIGNUP)."""
    return {"signup_open": settings.SIGNUP != "closed"}


def moderation(request):
    """For the site header: the queue count (items with open reports) for
    staff who moderate, and a signed-in user's unread notices. Each is a query, made
    only when a page shows it (lazy) and only for whom it concerns."""
    user = getattr(request, "user", None)
    context = {}
    if user is None or not user.is_authenticated:
        return context
    context["notices"] = SimpleLazyObject(lambda: list(Notice.objects.filter(user=user).unread()[:5]))
    if user.is_staff and is_moderator(user):
        context["review_count"] = SimpleLazyObject(lambda: open_items_count())
    return context


def open_items_count():
    """Predictions and comparisons with at least one open report."""
    counts = Report.objects.filter(state=Report.State.OPEN).aggregate(
        predictions=Count("prediction", distinct=True), comparisons=Count("comparison", distinct=True)
    )
    return counts["predictions"] + counts["comparisons"]
