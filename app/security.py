"""Security headers Django 5.2 does not set by itself: a Content-Security-Policy
(Django 6 has its own; this goes when we move).

The policy allows no inline script or style and nothing from other origins:
pages load their JS and CSS from /static/ (htmx vendored) and images from this
site. htmx adds an inline <style> for its indicators unless
`htmx.config.includeIndicatorStyles` is false (a <meta name="htmx-config">),
so pages turn that off and style indicators in their own CSS.
"""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        return response


class HiddenItem(Exception):
    """Raised by a page's lookup for an item moderators hid: its share link answers 410."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def check_page_access(request, item, kind, owner_only=False):
    """`item` (a prediction or comparison) if `request.user` may open it, or act
    on it with `owner_only`; else Http404, or HiddenItem (410) for a shared
    item moderators hid. Owners and moderators see hidden items."""
    from django.http import Http404

    from app.moderation import is_moderator

    user = request.user
    if user.is_authenticated and item.owner_id == user.pk:
        return item
    moderator = not owner_only and is_moderator(user)
    if owner_only or (item.visibility == "private" and not moderator):
        raise Http404(f"No such {kind}")
    if item.is_hidden and not moderator:
        raise HiddenItem(kind)
    return item


class HiddenItemMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, HiddenItem):
            from django.template.response import TemplateResponse

            return TemplateResponse(request, "gone.html", {"kind": exception.kind}, status=410).render()
        return None
