"""The arena (/arena: blind votes between two versions' images of one
comparison) and the leaderboard (/leaderboard) fitted from the votes by
tasks.arena. Pages work without JavaScript; with htmx a vote swaps in the
reveal and the next pair without a page load."""

import hashlib

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from app.core import images, throttle
from app.models import ArenaVote
from app.services import arena as arena_service

CHOICE_LABELS = (
    ("left", "Left is better", "1"),
    ("right", "Right is better", "2"),
    ("tie", "Tie", "3"),
    ("bad", "Both bad", "4"),
)


def _voter_key(request, create=False):
    """ "u<id>" for a signed-in user; for a visitor, when anonymous voting is
    on, a hash of their session (made on their first vote); else None."""
    if request.user.is_authenticated:
        return arena_service.voter_key_of(request.user)
    if not settings.ARENA_ANONYMOUS:
        return None
    if not request.session.session_key:
        if not create:
            return None
        request.session["arena"] = True
        request.session.save()
    return "s" + hashlib.sha256(request.session.session_key.encode()).hexdigest()[:32]


def _arena_id(request, source):
    """The benchmark run the arena is restricted to ("" for all), if the user may open it."""
    run = arena_service.arena_run(source.get("run", ""), request.user)
    return run, (run.pk if run else "")


def _text(value, length):
    """A query value as text for a lookup: "" for what no row can match (NUL, which PostgreSQL refuses)."""
    return "" if "\x00" in value else value[:length]


def _arena_url(arena, **extra):
    params = {key: value for key, value in {"run": arena, **extra}.items() if value}
    return reverse("arena") + ("?" + urlencode(params) if params else "")


@require_GET
@vary_on_headers("HX-Request")
def arena(request):
    run, arena_id = _arena_id(request, request.GET)
    voter_key = _voter_key(request, create=settings.ARENA_ANONYMOUS)
    revealed = None
    voted = _text(request.GET.get("voted", ""), 32)
    if voter_key and voted:
        revealed = (
            ArenaVote.objects.by(voter_key)
            .select_related("version_a__model", "version_b__model", "comparison")
            .filter(pk=voted)
            .first()
        )
    matchup = None
    if voter_key and revealed is None:
        matchup = arena_service.next_matchup(arena_id, voter_key, request.user)
    context = {
        "run": run,
        "arena_id": arena_id,
        "can_vote": voter_key is not None,
        "matchup": matchup,
        "revealed": revealed,
        "choices": CHOICE_LABELS,
        "next_url": _arena_url(arena_id),
        "leaderboard_url": _leaderboard_url(arena_id),
    }
    if request.htmx and request.htmx.target == "arena-stage":
        return TemplateResponse(request, "arena.html#stage", context)
    return TemplateResponse(request, "arena.html", context)


@require_POST
def vote(request):
    run, arena_id = _arena_id(request, request.POST)
    voter_key = _voter_key(request, create=True)
    if voter_key is None:
        return redirect(f"{reverse('login')}?next={reverse('arena')}")
    anonymous = not request.user.is_authenticated
    address = throttle.client_ip(request)
    try:
        if anonymous and not arena_service.anonymous_vote_allowed(address):
            raise arena_service.VoteRefused(
                "Visitors from your network have voted as often as they may this hour; log in to vote more.", 429
            )
        try:
            cast = arena_service.record_vote(
                voter_key, request.user, request.POST.get("token", ""), request.POST.get("choice", "")
            )
        except arena_service.VoteRefused:
            if anonymous:
                throttle.arena_anonymous_votes().release(address)
            raise
    except arena_service.VoteRefused as refused:
        if request.htmx:
            context = {
                "refusal": refused.message,
                "next_url": _arena_url(arena_id),
                "leaderboard_url": _leaderboard_url(arena_id),
            }
            # 200: htmx swaps in only successful answers, and the voter must read why.
            response = TemplateResponse(request, "arena.html#refusal", context)
            response["X-Vote-Refused"] = str(refused.status)
            return response
        messages.error(request, refused.message)
        return redirect(_arena_url(arena_id))
    url = _arena_url(arena_id, voted=cast.pk)
    if request.htmx:
        cast = ArenaVote.objects.select_related("version_a__model", "version_b__model", "comparison").get(pk=cast.pk)
        context = {"revealed": cast, "next_url": _arena_url(arena_id), "leaderboard_url": _leaderboard_url(arena_id)}
        response = TemplateResponse(request, "arena.html#reveal", context)
        response["HX-Push-Url"] = url
        return response
    return redirect(url)


@require_GET
def image(request, token, side):
    """One image of a matchup, by the matchup's signed token, re-encoded with
    no metadata: its address and bytes say nothing of the version."""
    try:
        offered = signing.loads(token, salt=arena_service.MATCHUP_SALT, max_age=arena_service.MATCHUP_MAX_AGE)
    except signing.BadSignature:
        raise Http404("No such image") from None
    if side not in ("left", "right") or offered.get("v") != _voter_key(request):
        raise Http404("No such image")
    pk = offered["a"] if (side == "left") == (offered["l"] == "a") else offered["b"]
    output = arena_service.eligible_outputs(offered["r"], arena_service.shows_nsfw(request.user)).filter(pk=pk).first()
    if output is None:
        raise Http404("No such image")
    try:
        with default_storage.open(output.file.name, "rb") as handle:
            data = images.without_metadata(handle.read())
    except (FileNotFoundError, OSError, ValueError):
        raise Http404("No such image") from None
    response = HttpResponse(data, content_type="image/webp")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- The leaderboard -----------------------------------------------------------------


def _leaderboard_url(arena, **extra):
    params = {key: value for key, value in {"run": arena, **extra}.items() if value}
    return reverse("leaderboard") + ("?" + urlencode(params) if params else "")


@require_GET
@vary_on_headers("HX-Request")
def leaderboard(request):
    run, arena_id = _arena_id(request, request.GET)
    mine = request.GET.get("mine") == "1" and request.user.is_authenticated
    voter_key = arena_service.voter_key_of(request.user) if mine else ""
    category = "" if mine else _text(request.GET.get("category", ""), 100)
    board = arena_service.board("" if mine else arena_id, category, voter_key)
    if board is None or board.computed_at is None:
        arena_service.ensure_scheduled("" if mine else arena_id, voter_key)
    overall = board if not category else arena_service.board(arena_id, "", "")
    context = {
        "run": run,
        "arena_id": arena_id,
        "mine": mine,
        "category": category,
        "categories": (overall.data.get("categories", []) if overall else []),
        "board": board,
        "rows": _rows(board.data) if board else [],
        "heatmaps": _heatmaps(board.data) if board else [],
        "arena_url": _arena_url(arena_id),
        "self_url": _leaderboard_url(arena_id, category=category, mine="1" if mine else ""),
        "all_url": _leaderboard_url(arena_id),
        "mine_url": _leaderboard_url(arena_id, mine="1"),
        "csv_url": reverse("leaderboard-votes") + "?" + urlencode({"run": arena_id, "mine": "1" if mine else ""}),
        "category_urls": [],
    }
    context["category_urls"] = [(c, _leaderboard_url(arena_id, category=c)) for c in context["categories"]]
    if request.htmx and request.htmx.target == "board":
        response = TemplateResponse(request, "leaderboard.html#board", context)
        if board is not None and board.computed_at is not None:
            response.status_code = 286  # stop polling: it is there
        return response
    return TemplateResponse(request, "leaderboard.html", context)


def _rows(data):
    """The table's cells as text, formatted here: Django's floatformat on
    every cell of 50 rows is most of the page's time."""
    style = {row["id"]: row for row in (data.get("style") or {}).get("versions", [])}
    rows = []
    for row in data.get("versions", []):
        styled = style.get(row["id"])
        rows.append(
            {
                "rank": row["rank"],
                "model": row["model"],
                "short_id": row["id"][:8],
                "is_reference": row["id"] == data.get("reference"),
                "rating": f"{row['rating']:.0f}",
                "interval": f"{row['lower']:.0f} – {row['upper']:.0f}",
                "votes": row["votes"],
                "win_rate": _percent(row["win_rate"]),
                "both_bad_rate": _percent(row["both_bad_rate"]),
                "predict_time": "—" if row["median_predict_time"] is None else f"{row['median_predict_time']:.1f} s",
                "cost": "—" if row["cost_per_image"] is None else f"${row['cost_per_image']:.4f}",
                "style": f"{styled['rating']:.0f} ({styled['lower']:.0f}–{styled['upper']:.0f})" if styled else "—",
            }
        )
    return rows


def _percent(value):
    return "—" if value is None else f"{round(value * 100)}%"


def _heatmaps(data):
    """The heatmaps the fit drew (app.core.heatmap: escaped SVG text of our own)."""
    return [{**entry, "svg": mark_safe(entry["svg"])} for entry in data.get("heatmaps", [])]  # noqa: S308


@require_GET
def votes_csv(request):
    """The votes behind a leaderboard as CSV (voters as pseudonyms), or one's own."""
    run, arena_id = _arena_id(request, request.GET)
    mine = request.GET.get("mine") == "1" and request.user.is_authenticated
    votes = arena_service.exported_votes(arena_id, request.user, mine=mine)
    response = HttpResponse(arena_service.votes_csv(votes), content_type="text/csv; charset=utf-8")
    name = "my-arena-votes.csv" if mine else f"arena-votes{'-' + arena_id if arena_id else ''}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
