"""A Content-Security-Policy without 'unsafe-inline': the pages have no inline
scripts or style attributes, htmx comes from our static files, and htmx's
indicator styles are in the stylesheet (see the htmx-config meta tag)."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
