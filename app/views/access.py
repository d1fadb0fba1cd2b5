"""Who may open an item by its link, for every page and partial: the item, or
404, or 410 when moderators hid it (Moderated.access_for decides); and where
an action may send the browser next."""

from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from app.models import Access
from app.services import moderation


class Gone(Exception):
    """Moderators hid it: its share link answers 410 (app.services.moderation)."""

    def __init__(self, item):
        super().__init__(item)
        self.item = item


def gone_response(request, gone):
    """The 410 page: whether moderators are still reviewing the item or decided."""
    context = {"under_review": moderation.under_review(gone.item), "kind": gone.item._meta.verbose_name}
    return TemplateResponse(request, "410.html", context, status=410)


def allowed_or_raise(item, user):
    """`item` (a prediction or comparison) if `user` may open it; else 404,
    or Gone when moderators hid it (Moderated.access_for)."""
    access = item.access_for(user)
    if access == Access.HIDDEN:
        raise Gone(item)
    if access == Access.PRIVATE:
        raise Http404(f"No such {item._meta.verbose_name}")
    return item


def next_url(request, default):
    """Where to go after an action: the form's own page when it says so (a
    path on this site; anything else, e.g. "0", which redirect() would take for
    a view name, gets `default`)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default
