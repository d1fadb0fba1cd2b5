"""Who moderates: superusers, and active members of the moderators group
(staff among them also sign in to the admin)."""

MODERATORS_GROUP = "moderators"


def is_moderator(user):
    """Superusers, and active members of the moderators group."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_lightbox_is_moderator", None)
    if cached is None:
        cached = user.groups.filter(name=MODERATORS_GROUP).exists()
        user._lightbox_is_moderator = cached
    return cached
