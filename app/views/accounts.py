"""Sign up (open, by invite or closed: LIGHTBOX_SIGNUP), the profile (API
tokens, one's own predictions and comparisons), one's history (comparisons,
changed or deleted several at once), deleting one's account. Log
in/out and password reset are Django's own views, with throttled forms."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.core import pagination, throttle
from app.forms import (
    BulkForm,
    ChangePasswordForm,
    DeleteAccountForm,
    LoginForm,
    NewPasswordForm,
    PasswordResetRequestForm,
    SignupForm,
    TokenForm,
    VisibilityForm,
    invite_code,
)
from app.models import ApiToken, ContentPreference, Invite, Notice, Visibility
from app.services import comparisons, predictions
from app.views.access import next_url
from app.views.cards import TILE_FIELDS, with_tiles

PAGE_SIZE = 24


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("playground")
    if settings.SIGNUP == "closed":
        return TemplateResponse(request, "accounts/signup_closed.html", status=403)
    needs_invite = settings.SIGNUP == "invite"
    code = invite_code(request.GET.get("invite", ""))
    form = SignupForm(request.POST or None, needs_invite=needs_invite, initial={"invite": code})
    if request.method == "POST" and form.is_valid():
        user = _create_account(request, form)
        if user is not None:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome, {user.username}.")
            return redirect("playground")
    context = {"form": form, "needs_invite": needs_invite}
    if needs_invite and code and request.method == "GET":
        # Said before anyone types a password for a link that cannot work.
        context["invite_problem"] = Invite.problem_with(Invite.objects.filter(code=code).first())
    return _refused_if_throttled(TemplateResponse(request, "accounts/signup.html", context), form)


def _create_account(request, form):
    """Save the user and the use of their invite together, or neither: the
    user, or None with the reason added to the form. At most
    SIGNUPS_PER_IP_PER_HOUR accounts from one client address, so nobody mints
    accounts by the dozen (to sway reports, or to spread a quota)."""
    address, signups = throttle.client_ip(request), throttle.signups_by_ip()
    form.retry_after = signups.hit(address)
    if form.retry_after:
        form.add_error(
            None, f"Too many accounts were made from your network. Try again {throttle.wait_text(form.retry_after)}."
        )
        return None
    try:
        with transaction.atomic():
            invite = Invite.claim(form.cleaned_data["invite"]) if "invite" in form.cleaned_data else None
            user = form.save()
            if invite is not None:
                invite.use(user)
        return user
    except ValidationError as exc:
        form.add_error("invite", exc)
    except IntegrityError:
        # Someone took the username between the form's check and the save.
        form.add_error("username", "A user with that username already exists.")
    signups.release(address)  # no account made: not counted
    return None


def _refused_if_throttled(response, form):
    """A form its throttle refused answers 429 with Retry-After."""
    if form.retry_after:
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm

    def form_invalid(self, form):
        return _refused_if_throttled(super().form_invalid(form), form)


class PasswordResetView(auth_views.PasswordResetView):
    form_class = PasswordResetRequestForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_invalid(self, form):
        return _refused_if_throttled(super().form_invalid(form), form)


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ChangePasswordForm


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = NewPasswordForm


def _get_token_for_user(request, token_id):
    return get_object_or_404(ApiToken, pk=token_id, user=request.user, revoked_at__isnull=True)


@login_required
def profile(request):
    page = pagination.paginate(request.user.predictions.only(*TILE_FIELDS), request.GET.get("cursor"), PAGE_SIZE)
    with_tiles(page.items, request.user)
    context = {
        "tokens": request.user.api_tokens.filter(revoked_at__isnull=True).order_by("-created_at"),
        "token_form": TokenForm(),
        "new_token": request.session.pop("new_token", None),
        "page": page,
        "comparisons": request.user.comparisons.standalone()
        .annotate(model_count=Count("predictions"))
        .order_by("-created_at")[:50],
        "visibility_choices": VisibilityForm.base_fields["visibility"].choices,
        "shows_nsfw": ContentPreference.objects.shows_nsfw(request.user),
    }
    return TemplateResponse(request, "accounts/profile.html", context)


@login_required
@require_POST
def content_preference(request):
    """Opt in (or out) of seeing images rated NSFW unblurred."""
    show = request.POST.get("show_nsfw") == "on"
    ContentPreference.objects.update_or_create(user=request.user, defaults={"show_nsfw": show})
    request.user._lightbox_shows_nsfw = show
    messages.success(request, "NSFW images are shown." if show else "NSFW images are blurred.")
    return redirect("profile")


@login_required
@require_POST
def notices_dismiss(request):
    """Mark the user's notices (moderators' decisions) read: they leave the pages' top."""
    Notice.objects.filter(user=request.user).unread().update(read_at=timezone.now())
    return redirect(next_url(request, "profile"))


@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST)
    if form.is_valid():
        token, raw = ApiToken.issue(request.user, form.cleaned_data["name"])
        # Shown once, on the next page; only its hash is stored.
        request.session["new_token"] = {"name": token.name, "value": raw}
    return redirect("profile")


@login_required
@require_POST
def token_revoke(request, token_id):
    token = _get_token_for_user(request, token_id)
    token.revoke()
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("profile")


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request):
    form = DeleteAccountForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        for prediction in user.predictions.active():
            predictions.cancel(prediction)
        logout(request)
        user.delete()
        messages.success(request, "Your account, predictions and images are deleted.")
        return redirect("playground")
    return TemplateResponse(request, "accounts/delete.html", {"form": form})


HISTORY_PAGE_SIZE = 20


@login_required
@require_GET
def history(request):
    """One's comparisons, newest first, each with its images, to open, share,
    or change and delete several at once."""
    page = pagination.paginate(request.user.comparisons.standalone(), request.GET.get("cursor"), HISTORY_PAGE_SIZE)
    tiles = with_tiles(
        list(
            request.user.predictions.filter(comparison__in=page.items)
            .only(*TILE_FIELDS, "comparison_id")
            .order_by("created_at")
        ),
        request.user,
    )
    for comparison in page.items:
        comparison.tiles = [tile for tile in tiles if tile.comparison_id == comparison.pk]
    context = {"page": page, "bulk_form": BulkForm(), "visibility_choices": Visibility.choices}
    return TemplateResponse(request, "accounts/history.html", context)


@login_required
@require_POST
def history_bulk(request):
    """Visibility or deletion of the chosen comparisons, only ever one's own."""
    form = BulkForm(request.POST)
    back = next_url(request, reverse("history"))
    if not form.is_valid():
        messages.error(request, " ".join(message for errors in form.errors.values() for message in errors))
        return redirect(back)
    chosen = list(request.user.comparisons.filter(pk__in=form.cleaned_data["ids"]))
    action = form.cleaned_data["action"]
    for comparison in chosen:
        if action == BulkForm.DELETE:
            comparisons.cancel(comparison)
            comparison.delete()
        else:
            comparison.set_visibility(action)
    done = "deleted" if action == BulkForm.DELETE else f"now {Visibility(action).label.split(' (')[0].lower()}"
    messages.success(request, f"{len(chosen)} comparison{'s' if len(chosen) != 1 else ''} {done}.")
    return redirect(back)
