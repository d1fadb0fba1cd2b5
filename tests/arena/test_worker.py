"""The leaderboard is fitted by the real Celery worker after votes, debounced."""

from app.models import Leaderboard
from tests.arena.conftest import cast
from tests.conftest import wait_until


def test_votes_refit_the_leaderboard_in_the_worker(worker, client, alice, versions, make_comparison, settings):
    settings.ARENA_RECOMPUTE_DELAY = 1
    for _ in range(3):
        make_comparison(versions)
    client.force_login(alice)
    for choice in ("left", "right", "tie"):
        assert cast(client, choice)[0].status_code == 302

    def fitted():
        board = Leaderboard.objects.filter(arena="", category="", voter_key="").first()
        return board if board and board.computed_at and board.data.get("votes") == 3 else None

    board = wait_until(fitted, timeout=60, message="the worker to fit the leaderboard")
    assert board.data["bootstrap_rounds"] >= 200
    personal = wait_until(
        lambda: Leaderboard.objects.filter(voter_key=f"u{alice.pk}", computed_at__isnull=False).first(),
        timeout=60,
        message="the personal leaderboard",
    )
    assert personal.data["votes"] == 3
    page = client.get("/leaderboard").content.decode()
    assert "Computed" in page and "from 3 votes" in page
