"""Reporting a prediction or a comparison (/p/<id>/report, /c/<id>/report).

The form sits in a disclosure on the item's page (templates/_report.html) and
HTMX swaps it for the answer; without JavaScript the form posts, and the page
comes back with a message (or, for bad input, a plain page with the form).
The views in predictions.py and comparisons.py look the item up the way its
page does, so reporting what you cannot see answers 404 or 410 as viewing it.
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from app.core import throttle
from app.forms import ReportForm
from app.models import Report
from app.services import moderation
from app.views.access import owns

THANKS = "Thanks, moderators will review it."
THROTTLED = "Too many reports from your network in the last hour. Try again later, or log in to report."


def report_context(user, target):
    """What templates/_report.html needs on `target`'s page: the form, filled
    in with `user`'s open report if there is one. Nothing for the owner."""
    if owns(user, target):
        return {}
    kind = target._meta.model_name  # "prediction" or "comparison", as the page's URL name
    mine = target.reports.filter(reporter=user, state=Report.State.OPEN).first() if user.is_authenticated else None
    form = ReportForm(initial={"reason": mine.reason, "text": mine.text} if mine else None, auto_id="report-%s")
    return {
        "target": target,
        "kind": kind,
        "my_report": mine,
        "report_form": form,
        "report_url": reverse(f"{kind}-report", args=[target.pk]),
        "page_url": reverse(kind, args=[target.pk]),
    }


def report(request, target):
    """GET: the form on a page of its own; POST: file the report."""
    context = report_context(request.user, target)
    if not context:
        messages.info(request, f"This {target._meta.model_name} is yours: make it private or delete it instead.")
        return redirect(reverse(target._meta.model_name, args=[target.pk]))
    if request.method != "POST":
        return _form_response(request, context)
    form = context["report_form"] = ReportForm(request.POST, auto_id="report-%s")
    status = 400
    if form.is_valid() and not request.user.is_authenticated:
        if not moderation.anonymous_report_allowed(throttle.client_ip(request)):
            form.add_error(None, THROTTLED)
            status = 429
    if not form.is_valid():
        return _form_response(request, context, status)
    moderation.file_report(target, form.cleaned_data["reason"], form.cleaned_data["text"], request.user)
    still_shown = target.can_be_seen_by(request.user)
    thanks = THANKS
    if context["my_report"]:
        thanks += " You had reported it already: your report now says this instead."
    if not still_shown:
        thanks += " Enough people reported it that it is hidden until they do."
    if request.htmx:
        return TemplateResponse(request, "_report.html", {**context, "thanks": thanks})
    messages.success(request, thanks)
    return redirect(context["page_url"] if still_shown else "gallery")


def _form_response(request, context, status=200):
    # htmx swaps only 2xx answers: the form with its errors goes back as 200
    # to htmx, and with its real status to a browser without JavaScript.
    if request.htmx:
        return TemplateResponse(request, "_report.html", context)
    return TemplateResponse(request, "report.html", context, status=status)
