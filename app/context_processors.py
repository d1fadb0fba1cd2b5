from django.conf import settings


def accounts(request):
    """Whether pages offer sign-up (LIGHTBOX_SIGNUP)."""
    return {"signup_open": settings.SIGNUP != "closed"}
