"""Who may open an item by its link, for every page, partial and /v1 lookup:
the item, or 404, or 410 when moderators hid it (Moderated.access_for decides;
an action is its owner's alone); and where an action may send the browser next."""

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from app.models import Access
from app.services import moderation


class Gone(Exception):
    """Moderators hid it: its share link answers 410 (app.services.moderation;
    app.middleware.GoneMiddleware answers the page)."""

    def __init__(self, item):
        super().__init__(item)
        self.item = item


def gone_response(request, gone):
    """The 410 page: whether moderators are still reviewing the item or decided."""
    context = {"under_review": moderation.under_review(gone.item), "kind": gone.item._meta.verbose_name}
    return TemplateResponse(request, "410.html", context, status=410)


def owns(user, item):
    return user.is_authenticated and item.owner_id == user.pk


def access_of(item, user, owner_only=False):
    """The one rule for looking an item up, on pages and /v1 alike: what
    `user` gets of `item` (None: there is none). Moderated.access_for, and
    with `owner_only` (acting on it is its owner's) nothing for anyone else;
    an owner-only item need not be Moderated (a training, a bundle import)."""
    if item is None or (owner_only and not owns(user, item)):
        return Access.PRIVATE
    return Access.OPEN if owns(user, item) else item.access_for(user)


def get_for_user(queryset, pk, user, owner_only=False):
    """Item `pk` of `queryset` (or of a model) if `user` may open it (or act
    on it: `owner_only`); else 404, or Gone when moderators hid it (access_of)."""
    item = get_object_or_404(queryset, pk=pk)
    access = access_of(item, user, owner_only)
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
