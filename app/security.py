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
