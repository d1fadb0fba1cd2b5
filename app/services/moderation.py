"""Moderation: reports and the threshold that hides an item, the actions a
moderator takes (each written to the audit trail), and the prompt blocklist.
Who moderates is app.core.roles; the safety checker's verdicts, app.core.logs."""

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from app.core import throttle
from app.core.roles import is_moderator
from app.core.schema import InputError
from app.models import Ban, BlockedTerm, Comparison, ModerationAction, Notice, Output, Prediction, Report
from app.services import storage

BAN_HIDE_REASON = "The owner's account is suspended."


# --- Checks before a run -----------------------------------------------------------


def blocked_terms():
    return list(BlockedTerm.objects.values_list("term", flat=True))


def check_input(version, cleaned, owner, terms=None):
    """Refuse, field by field (schema.InputError), a prompt with a blocked term,
    or a safety checker turned off by someone without the permission.
    `terms`: the blocklist (`blocked_terms()`), when the caller checks many inputs."""
    errors = {}
    if cleaned.get("disable_safety_checker") and not (
        owner is not None and owner.is_active and owner.has_perm("app.disable_safety_checker")
    ):
        errors["disable_safety_checker"] = ["Only users allowed by the site's staff may turn off the safety checker."]
    terms = blocked_terms() if terms is None else terms
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


# --- Reports -----------------------------------------------------------------------


def file_report(target, reason, text="", reporter=None):
    if reporter is not None and not reporter.is_authenticated:
        reporter = None
    field = _target_field(target)
    with transaction.atomic():
        existing = None
        if reporter is not None:
            existing = Report.objects.filter(**{field: target}, reporter=reporter, state=Report.State.OPEN).first()
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
    return throttle.anonymous_reports().hit(address) is None


def trusted_reporters():
    """The users whose reports count toward hiding an item: staff, and active,
    unbanned accounts at least REPORTER_MIN_AGE_DAYS old with at least
    REPORTER_MIN_PREDICTIONS succeeded predictions of their own. Accounts cost
    seconds to make; age and runs cost days and quota, so a handful of fresh
    accounts cannot hide someone's work. Everyone's reports still reach the
    queue."""
    established = Q(date_joined__lte=timezone.now() - timedelta(days=settings.REPORTER_MIN_AGE_DAYS))
    if settings.REPORTER_MIN_PREDICTIONS > 0:
        # "Has an Nth": stops at N rows of the user's, never counts them all.
        nth_run = Prediction.objects.filter(owner=OuterRef("pk"), status=Prediction.Status.SUCCEEDED)
        established &= Exists(nth_run[settings.REPORTER_MIN_PREDICTIONS - 1 : settings.REPORTER_MIN_PREDICTIONS])
    return get_user_model().objects.filter(
        Q(is_staff=True) | Q(is_superuser=True) | established, is_active=True, ban__isnull=True
    )


def open_reporters(target):
    """Distinct trusted users (trusted_reporters), other than the owner, with
    an open report on it."""
    return (
        Report.objects.filter(
            **{_target_field(target): target}, state=Report.State.OPEN, reporter__in=trusted_reporters()
        )
        .exclude(reporter_id=target.owner_id)
        .values("reporter")
        .distinct()
        .count()
    )


def _apply_threshold(target):
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
    if isinstance(target, Prediction):
        return "prediction"
    if isinstance(target, Comparison):
        return "comparison"
    raise TypeError(f"Cannot report a {type(target).__name__}")


# --- Moderators' actions, each written to the audit trail ----------------------------


def record(kind, target, moderator, reason=""):
    """Write one audit entry. `target` is a Prediction, a Comparison or a user."""

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
    """Close the item's open reports; the accounts that filed them."""
    reports = Report.objects.filter(**{_target_field(target): target}, state=Report.State.OPEN)
    reporters = set(reports.exclude(reporter=None).values_list("reporter", flat=True))
    reports.update(state=state, resolved_at=timezone.now(), resolved_by=moderator)
    return reporters


def _require_moderator(moderator):
    if not is_moderator(moderator):
        raise PermissionDenied("Only moderators can moderate.")


def under_review(target):
    """Is `target` waiting for a moderator (open reports), rather than decided?
    The threshold hides an item with its reports still open; every decision
    closes them."""
    return Report.objects.filter(**{_target_field(target): target}, state=Report.State.OPEN).exists()


def _sentence(prefix, reason):
    """'Hidden by a moderator: spam.' from the prefix and a moderator's reason,
    written once: the pages and notices show it as it is."""
    reason = reason.strip().rstrip(".")
    return f"{prefix}: {reason}." if reason else f"{prefix}."


def _because(reason):
    reason = reason.strip().rstrip(".")
    return f" Their reason: {reason}." if reason else ""


def described(target):
    kind = _target_field(target)
    prompt = str(target.input.get("prompt") or "").strip()
    if len(prompt) > 60:
        prompt = prompt[:59] + "…"
    return f"{kind} “{prompt}”" if prompt else kind


def _tell(target, owner_text, reporters, reporter_text):
    """Notices of a decision: to the owner (unless they took it themselves)
    and to `reporters`, the accounts whose reports it closed (may be empty)."""
    url = target.get_absolute_url()
    notices = [Notice(user_id=target.owner_id, text=owner_text, url=url)] if owner_text and target.owner_id else []
    notices += [Notice(user_id=pk, text=reporter_text, url="") for pk in reporters if pk != target.owner_id]
    Notice.objects.bulk_create(notices)


@transaction.atomic
def approve(target, moderator, reason="", tell_reporters=False):
    """The item is fine: dismiss its open reports and show it again."""
    _require_moderator(moderator)
    reporters = _resolve_reports(target, Report.State.DISMISSED, moderator)
    shown_again = target.is_hidden and target.hidden_reason != BAN_HIDE_REASON
    if shown_again:
        target.unhide()
    record(ModerationAction.Kind.APPROVE, target, moderator, reason)
    what = described(target)
    _tell(
        target,
        f"Moderators reviewed your {what} and show it again.{_because(reason)}" if shown_again else "",
        reporters if tell_reporters else (),
        f"Moderators reviewed the {what} you reported and found it within the rules.",
    )


@transaction.atomic
def hide(target, moderator, reason, tell_reporters=False):
    """Gone from the gallery; its share links answer 410; its owner sees why."""
    _require_moderator(moderator)
    target.hide(_sentence("Hidden by a moderator", reason))
    reporters = _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.HIDE, target, moderator, reason)
    what = described(target)
    _tell(
        target,
        f"Moderators hid your {what}; only you still see it.{_because(reason)}",
        reporters if tell_reporters else (),
        f"Moderators reviewed the {what} you reported and hid it. Thank you.",
    )


@transaction.atomic
def mark_nsfw(target, moderator, reason="", tell_reporters=False):
    """Rate every output nsfw: listings show blurred thumbnails from now on."""
    _require_moderator(moderator)
    for output in _outputs(target):
        storage.mark_nsfw(output)
    reporters = _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.MARK_NSFW, target, moderator, reason)
    what = described(target)
    _tell(
        target,
        f"Moderators marked the images of your {what} NSFW: others see them blurred.{_because(reason)}",
        reporters if tell_reporters else (),
        f"Moderators reviewed the {what} you reported and marked its images NSFW. Thank you.",
    )


@transaction.atomic
def delete_outputs(target, moderator, reason, tell_reporters=False):
    """Delete the image files for good (rated blocked) and hide the item."""
    _require_moderator(moderator)
    for output in _outputs(target):
        output.block()
    target.hide(_sentence("Its images were removed by a moderator", reason))
    reporters = _resolve_reports(target, Report.State.ACTIONED, moderator)
    record(ModerationAction.Kind.DELETE_OUTPUTS, target, moderator, reason)
    what = described(target)
    _tell(
        target,
        f"Moderators removed the images of your {what} for good.{_because(reason)}",
        reporters if tell_reporters else (),
        f"Moderators reviewed the {what} you reported and removed its images. Thank you.",
    )


@transaction.atomic
def ban(user, moderator, reason):
    """Refuse the user's runs and hide everything they share."""
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
    _require_moderator(moderator)
    Ban.objects.filter(user=user).delete()
    for model in (Comparison, Prediction):
        for item in model.objects.filter(owner=user, hidden_reason=BAN_HIDE_REASON):
            item.unhide()
    record(ModerationAction.Kind.UNBAN, user, moderator, reason)


def _outputs(target):
    if isinstance(target, Prediction):
        return list(target.outputs.all())
    return list(Output.objects.filter(prediction__comparison=target))
