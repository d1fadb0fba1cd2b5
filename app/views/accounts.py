"""Sign up, the profile (API tokens, one's own predictions and comparisons),
deleting one's account. Log in/out and password reset are Django's own views."""

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_POST

from app import pagination
from app.forms import DeleteAccountForm, SignupForm, TokenForm, VisibilityForm
from app.models import ApiToken
from app.views.gallery import TILE_FIELDS, with_tiles

PAGE_SIZE = 24


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("playground")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}.")
        return redirect("playground")
    return TemplateResponse(request, "accounts/signup.html", {"form": form})


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
        "comparisons": request.user.comparisons.annotate(model_count=Count("predictions")).order_by("-created_at")[:50],
        "visibility_choices": VisibilityForm.base_fields["visibility"].choices,
    }
    return TemplateResponse(request, "accounts/profile.html", context)


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
            prediction.cancel()
        logout(request)
        user.delete()
        messages.success(request, "Your account, predictions and images are deleted.")
        return redirect("playground")
    return TemplateResponse(request, "accounts/delete.html", {"form": form})
