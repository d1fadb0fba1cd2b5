"""Moderation: who moderates, reports and the threshold that hides an item,
the actions a moderator takes (each written to the audit trail), the prompt
blocklist, and the local safety checker's verdicts.

This module is imported by app.models, so it imports the models lazily.

The local checker's verdicts. A Cog prediction's output is a plain list of
URLs, with no room for flags, so a predictor reports what its safety checker
found in its logs, with one line, after the images are made:

    nsfw_content_detected: [false, true]

a JSON list of booleans, one per output in order (diffusers' own name for the
checker's result). The last such line counts. Outputs flagged true are stored
rated nsfw, with a blurred thumbnail.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from app import payloads

MODERATORS_GROUP = "moderators"
BAN_HIDE_REASON = "The owner's account is suspended."
NSFW_LINE_RE = re.compile(r"^nsfw_content_detected:\s*(\[.*\])\s*$", re.M)


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


def shows_nsfw(user):
    """Did `user` opt in to see NSFW images unblurred?"""
    if not user.is_authenticated:
        return False
    from app.models import ContentPreference

    return ContentPreference.objects.filter(user=user, show_nsfw=True).exists()


# --- Checks before a run -----------------------------------------------------------


def check_input(version, cleaned, owner):
    """Refuse, field by field (schema.InputError), a prompt with a blocked term,
    or a safety checker turned off by someone without the permission."""
    from app.models import BlockedTerm
    from app.schema import InputError

    errors = {}
    if cleaned.get("disable_safety_checker") and not (
        owner is not None and owner.is_active and owner.has_perm("app.disable_safety_checker")
    ):
        errors["disable_safety_checker"] = [
            "Only users allowed by the site's staff may turn off the safety checker."
        ]
    terms = list(BlockedTerm.objects.values_list("term", flat=True))
    if terms:
        for field, value in cleaned.items():
            if "prompt" not in field or not isinstance(value, str):
                continue
            found = blocked_terms_in(value, terms)
            if found:
                errors.setdefault(field, []).append(
                    f"This prompt contains a blocked term ({', '.join(found)}); change it to run."
                )
    if errors:
        raise InputError(errors)


def blocked_terms_in(text, terms):
    """The terms of `terms` that `text` contains as whole words, whatever the
    case, spacing or punctuation between them ("Bad-Word" matches "bad word")."""
    words = f" {_words(text)} "
    return [term for term in terms if _words(term) and f" {_words(term)} " in words]


def _words(text):
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def nsfw_flags(logs):
    """The last safety checker verdict in a prediction's logs: a list of bools
    (one per output), or [] when the predictor reported none."""
    matches = NSFW_LINE_RE.findall(logs or "")
    if not matches:
        return []
    try:
        flags = payloads.loads(matches[-1])
    except ValueError:
        return []
    return [bool(flag) for flag in flags] if isinstance(flags, list) else []


# --- Reports -----------------------------------------------------------------------


def file_report(target, reason, text="", reporter=None):
    from app.models import Report

    if reporter is not None and not reporter.is_authenticated:
        reporter = None
    field = _target_field(target)
    with transaction.atomic():
        existing = None
        if reporter is not None:
            existing = Report.objects.filter(
                **{field: target}, reporter=reporter, state=Report.State.OPEN
            ).first()
        if existing:
            # One open report per person and item: a second one updates it.
            existing.reason, existing.text = reason, text
            existing.save(update_fields=["reason", "text"])
            report = existing
        else:
            report = Report.objects.create(**{field: target}, reporter=reporter, reason=reason, text=text)
        _apply_threshold(target)
    return report


def anonymous_report_allowed(address):
    """Count one report without an account from `address` (throttle.client_ip):
    False once it has sent ANONYMOUS_REPORTS_PER_HOUR in the hour since its
    first. Anonymous reports never hide anything, but each one lands in the
    moderators' queue, so one machine must not be able to flood it."""
    from app import throttle

    return throttle.anonymous_reports().hit(address) is None


def trusted_reporters():
    """The users whose reports count toward hiding an item: staff, and active,
    unbanned accounts at least REPORTER_MIN_AGE_DAYS old with at least
    REPORTER_MIN_PREDICTIONS succeeded predictions of their own. Accounts cost
    seconds to make; age and runs cost days and quota, so a handful of fresh
    accounts cannot hide someone's work. Everyone's reports still reach the
    queue."""
    from app.models import Prediction

    established = Q(date_joined__lte=timezone.now() - timedelta(days=settings.REPORTER_MIN_AGE_DAYS))
    if settings.REPORTER_MIN_PREDICTIONS > 0:
        # "Has an Nth": stops at N rows of the user's, never counts them all.
        nth_run = Prediction.objects.filter(owner=OuterRef("pk"), status=Prediction.Status.SUCCEEDED)
        established &= Exists(nth_run[settings.REPORTER_MIN_PREDICTIONS - 1:settings.REPORTER_MIN_PREDICTIONS])
    return get_user_model().objects.filter(
        Q(is_staff=True) | Q(is_superuser=True) | established, is_active=True, ban__isnull=True
    )


def open_reporters(target):
    """Distinct trusted users (trusted_reporters), other than the owner, with
    an open report on it."""
    from app.models import Report

    return (
        Report.objects.filter(**{_target_field(target): target}, state=Report.State.OPEN,
                              reporter__in=trusted_reporters())
        .exclude(reporter_id=target.owner_id)
        .values("reporter")
        .distinct()
        .count()
    )


def _apply_threshold(target):
    from app.models import ModerationAction, Report

    target.refresh_from_db(fields=["hidden_at", "hidden_reason", "visibility"])
    if target.is_hidden or target.visibility == "private":
        return
    if open_reporters(target) < settings.REPORT_THRESHOLD:
        return
    reasons = (
        Report.objects.filter(**{_target_field(target): target}, state=Report.State.OPEN)
        .values_list("reason", flat=True)
        .distinct()
    )
    labels = ", ".join(sorted(str(Report.Reason(r).label).lower() for r in reasons))
    reason = f"Hidden while moderators review reports ({labels})."
    target.hide(reason)
    record(ModerationAction.Kind.AUTO_HIDE, target, None, reason)


def _target_field(target):
    from app.models import Comparison, Prediction

    if isinstance(target, Prediction):
        return "prediction"
    if isinstance(target, Comparison):
        return "comparison"
    raise TypeError(f"Cannot report a {type(target).__name__}")


# --- Moderators' actions, each written to the audit trail ----------------------------


def record(kind, target, moderator, reason=""):
    """Write one audit entry. `target` is a Prediction, a Comparison or a user."""
    from app.models import Comparison, ModerationAction, Prediction

    entry = ModerationAction(kind=kind, moderator=moderator, reason=reason)
    if isinstance(target, Prediction):
        entry.prediction, entry.user_id = target, target.owner_id
        entry.target = f"prediction {target.pk}"
    elif isinstance(target, Comparison):
        entry.comparison, entry.user_id = target, target.owner_id
        entry.target = f"comparison {target.pk}"
    elif isinstance(target, get_user_model()):
        entry.user = target
        entry.target = f"user {target.get_username()}"
    else:
        raise TypeError(f"Cannot moderate a {type(target).__name__}")
    entry.save()
    return entry


def _resolve_reports(target, state, moderator):
    from django.utils import timezone

    from app.models import Report

    return Report.objects.filter(**{_target_field(target): target}, state=Report.State.OPEN).update(
        state=state, resolved_at=timezone.now(), resolved_by=moderator
    )


def _require_moderator(moderator):
    from django.core.exceptions import PermissionDenied

    if not is_moderator(moderator):
        raise PermissionDenied("Only moderators can moderate.")


@transaction.atomic
def approve(target, moderator, reason=""):
    """The item is fine: dismiss its open reports and show it again."""
    from app.models import ModerationAction, Report

    _require_moderator(moderator)
    _resolve_reports(target, Report.State.DISMISSED, moderator)
    if target.is_hidden and target.hidden_reason != BAN_HIDE_REASON:
        target.unhide()
    record(ModerationAction.Kind.APPROVE, target, moderator, reason)


@transaction.atomic
def hide(target, moderator, reason):
    """Gone from the gallery; its share links answer 410; its owner sees why."""
    from app.models import ModerationAction, Report

    _require_moderator(moderator)
    target.hide(f"Hidden by a moderator: {reason}" if reason else "Hidden by a moderator.")
    _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.HIDE, target, moderator, reason)


@transaction.atomic
def mark_nsfw(target, moderator, reason=""):
    """Rate every output nsfw: listings show blurred thumbnails from now on."""
    from app.models import ModerationAction, Report

    _require_moderator(moderator)
    for output in _outputs(target):
        output.mark_nsfw()
    _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.MARK_NSFW, target, moderator, reason)


@transaction.atomic
def delete_outputs(target, moderator, reason):
    """Delete the image files for good (rated blocked) and hide the item."""
    from app.models import ModerationAction, Report

    _require_moderator(moderator)
    for output in _outputs(target):
        output.block()
    target.hide(f"Its images were removed by a moderator: {reason}" if reason else "Its images were removed.")
    _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.DELETE_OUTPUTS, target, moderator, reason)


@transaction.atomic
def ban(user, moderator, reason):
    """Refuse the user's runs and hide everything they share."""
    from app.models import Ban, Comparison, ModerationAction, Prediction, Report

    _require_moderator(moderator)
    Ban.objects.update_or_create(user=user, defaults={"reason": reason, "created_by": moderator})
    for model in (Comparison, Prediction):
        for item in model.objects.filter(owner=user).not_hidden().exclude(visibility="private"):
            item.hide(BAN_HIDE_REASON)
    Report.objects.filter(prediction__owner=user, state=Report.State.OPEN).update(state=Report.State.ACTIONED)
    Report.objects.filter(comparison__owner=user, state=Report.State.OPEN).update(state=Report.State.ACTIONED)
    record(ModerationAction.Kind.BAN, user, moderator, reason)


@transaction.atomic
def unban(user, moderator, reason=""):
    """Lift a ban: runs allowed again, items hidden by the ban shown again."""
    from app.models import Ban, Comparison, ModerationAction, Prediction

    _require_moderator(moderator)
    Ban.objects.filter(user=user).delete()
    for model in (Comparison, Prediction):
        for item in model.objects.filter(owner=user, hidden_reason=BAN_HIDE_REASON):
            item.unhide()
    record(ModerationAction.Kind.UNBAN, user, moderator, reason)


def _outputs(target):
    from app.models import Output, Prediction

    if isinstance(target, Prediction):
        return list(target.outputs.all())
    return list(Output.objects.filter(prediction__comparison=target))
