"""/leaderboard, /v1/leaderboard and /v1/arena/votes: what the fit stored,
per arena, per prompt category and per voter; moderation's filters."""

import csv
import io

import pytest

from app.models import ArenaVote, BenchmarkRun, Leaderboard, ModerationAction, Prompt, PromptSet
from app.services import arena
from tests.arena.conftest import add_votes, cast, first_output


@pytest.fixture
def voted(versions, make_comparison):
    """alpha beats beta 8 to 2, beta beats gamma 7 to 3, two ties and one both-bad."""
    alpha, beta, gamma = versions
    comparisons = [make_comparison(versions) for _ in range(10)]
    pairs = []
    for n, c in enumerate(comparisons):
        pairs.append((first_output(c, alpha), first_output(c, beta), "a" if n < 8 else "b"))
        pairs.append((first_output(c, beta), first_output(c, gamma), "a" if n < 7 else "b"))
    add_votes("u1001", pairs[:10])
    add_votes("u1002", pairs[10:])
    c = make_comparison(versions)
    add_votes(
        "u1003",
        [
            (first_output(c, alpha), first_output(c, gamma), "tie"),
            (first_output(c, beta), first_output(c, gamma), "bad"),
        ],
    )
    c = make_comparison(versions)
    add_votes("u1003", [(first_output(c, alpha), first_output(c, gamma), "tie")])
    return versions


def _rows(data):
    return {row["id"]: row for row in data["versions"]}


def test_the_leaderboard_page_never_fits_in_the_request(client, voted, refits_recorded):
    page = client.get("/leaderboard")
    assert "being computed" in page.content.decode()
    assert ("tasks.arena.recompute", ("",)) in refits_recorded
    assert not Leaderboard.objects.filter(computed_at__isnull=False).exists()


def test_the_leaderboard_after_its_fit(client, voted):
    alpha, beta, gamma = voted
    arena.recompute("")
    board = Leaderboard.objects.get(arena="", category="", voter_key="")
    rows = _rows(board.data)
    assert [row["id"] for row in board.data["versions"]] == [alpha.pk, beta.pk, gamma.pk]
    assert board.data["reference"] == beta.pk and rows[beta.pk]["rating"] == 1000
    assert board.data["bootstrap_rounds"] >= 200
    # Ties: half a win each way; both-bad: counted as a vote and a rate, not in the fit.
    assert rows[gamma.pk]["ties"] == 2 and rows[gamma.pk]["both_bad"] == 1
    assert rows[gamma.pk]["votes"] == 13
    assert rows[gamma.pk]["win_rate"] == round((3 + 1) / 12, 4)
    assert rows[gamma.pk]["both_bad_rate"] == round(1 / 13, 4)
    assert board.data["both_bad"] == 1 and board.data["votes"] == 23
    assert rows[alpha.pk]["median_predict_time"] == 1.0
    for row in rows.values():
        assert row["lower"] <= row["rating"] <= row["upper"]
    body = client.get("/leaderboard").content.decode()
    assert "Computed" in body and str(alpha.model) in body and "95% interval" in body
    assert "<svg" in body and "Win rate of the row" in body and "Votes between each pair" in body
    assert "Style control" in body


def test_the_rank_rule_on_the_page(client, voted):
    arena.recompute("")
    data = Leaderboard.objects.get(arena="", category="", voter_key="").data
    for row in data["versions"]:
        above = sum(1 for other in data["versions"] if other["lower"] > row["upper"])
        assert row["rank"] == 1 + above


def test_excluded_votes_and_hidden_comparisons_leave_the_leaderboard(voted, moderator, client):
    alpha, beta, gamma = voted
    arena.recompute("")
    before = Leaderboard.objects.get(arena="", category="", voter_key="").data["votes"]
    arena.set_excluded("u1001", True, moderator, "looks random")
    arena.recompute("")
    after = Leaderboard.objects.get(arena="", category="", voter_key="").data
    assert after["votes"] == before - 10
    assert ModerationAction.objects.filter(kind="arena_exclude", moderator=moderator).exists()
    hidden = ArenaVote.objects.filter(voter_key="u1002").first().comparison
    hidden.hide("spam")
    arena.recompute("")
    assert Leaderboard.objects.get(arena="", category="", voter_key="").data["votes"] < after["votes"]


def test_per_run_and_per_category_leaderboards(alice, versions, make_comparison, client):
    alpha, beta, _ = versions
    prompt_set = PromptSet.objects.create(slug="set", name="Set")
    animals = Prompt.objects.create(prompt_set=prompt_set, position=0, text="a cat", category="animals")
    places = Prompt.objects.create(prompt_set=prompt_set, position=1, text="a city", category="places")
    run = BenchmarkRun.objects.create(owner=alice, prompt_set=prompt_set, visibility="public", title="Run one")
    cat = make_comparison(versions[:2], benchmark=run, prompt_row=animals)
    city = make_comparison(versions[:2], benchmark=run, prompt_row=places)
    outside = make_comparison(versions[:2])
    add_votes("u5", [(first_output(cat, alpha), first_output(cat, beta), "a")])
    add_votes("u6", [(first_output(city, alpha), first_output(city, beta), "b")])
    add_votes("u7", [(first_output(outside, alpha), first_output(outside, beta), "b")])
    arena.recompute(run.pk)
    arena.recompute("")
    assert Leaderboard.objects.get(arena=run.pk, category="").data["votes"] == 2
    assert Leaderboard.objects.get(arena=run.pk, category="animals").data["votes"] == 1
    assert Leaderboard.objects.get(arena="", category="").data["votes"] == 3
    page = client.get(f"/leaderboard?run={run.pk}&category=animals").content.decode()
    assert "Run one" in page and "animals" in page and "places" in page


def test_a_personal_leaderboard_from_ones_own_votes(client, alice, versions, make_comparison):
    make_comparison(versions[:2])
    client.force_login(alice)
    cast(client, "right")
    arena.recompute_personal(f"u{alice.pk}")
    add_votes("u42", [])
    page = client.get("/leaderboard?mine=1").content.decode()
    assert "Your leaderboard" in page and "from 1 vote" in page


def test_v1_leaderboard_and_votes_export(api, voted, alice):
    arena.recompute("")
    data = api.get("/v1/leaderboard").json()
    assert data["computed_at"] and data["scale"] == 400 and data["anchor"] == 1000
    assert len(data["versions"]) == 3 and "all_battles" not in data["pairs"]
    assert api.get("/v1/leaderboard?run=nope").status_code == 404
    assert api.get("/v1/leaderboard?category=nope").status_code == 404
    assert api.get("/v1/leaderboard?run=%00").status_code == 400
    response = api.get("/v1/arena/votes")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 23
    assert {row["outcome"] for row in rows} == {"a", "b", "tie", "bad"}
    assert all(not row["voter"].startswith("u") or len(row["voter"]) == 12 for row in rows)
    assert "u1001" not in response.text
    mine = api.get("/v1/arena/votes?mine=1")
    assert len(list(csv.DictReader(io.StringIO(mine.text)))) == 0
    assert api.get("/v1/leaderboard", headers={"Authorization": ""}).status_code == 401


def test_the_openapi_document_marks_the_extension(api):
    paths = api.get("/v1/openapi.json").json()["paths"]
    for path in ("/v1/leaderboard", "/v1/arena/votes"):
        operation = paths[path]["get"]
        assert operation["tags"] == ["lightbox"] and operation["x-lightbox"] is True


def test_the_csv_download_from_the_page_defuses_formulas(client, alice, versions, make_comparison):
    prompt_set = PromptSet.objects.create(slug="set", name="Set")
    hostile = Prompt.objects.create(prompt_set=prompt_set, position=0, text="x", category="=HYPERLINK(1)")
    run = BenchmarkRun.objects.create(owner=alice, prompt_set=prompt_set, visibility="public")
    c = make_comparison(versions[:2], benchmark=run, prompt_row=hostile)
    add_votes("u9", [(first_output(c, versions[0]), first_output(c, versions[1]), "a")])
    text = client.get("/leaderboard/votes.csv").content.decode()
    assert "'=HYPERLINK(1)" in text


def test_flagged_voters_on_the_moderation_page_and_one_action_excludes(
    client, moderator, versions, make_comparison, settings, refits_recorded
):
    settings.ARENA_FLAG_MIN_VOTES = 5
    comparisons = [make_comparison(versions) for _ in range(6)]
    # Someone who always presses "left".
    add_votes("u77", [(first_output(c, versions[0]), first_output(c, versions[1]), "a") for c in comparisons])
    # Someone who varies.
    add_votes(
        "u78", [(first_output(c, versions[1]), first_output(c, versions[2]), o) for c, o in zip(comparisons, "abab")]
    )
    client.force_login(moderator)
    page = client.get("/moderation").content.decode()
    assert "Arena voters to review" in page and "Constant: “left” in 6 of 6 votes" in page
    assert "visitor" in page or "u77" not in page
    refused = client.post("/moderation/arena-voters", {"voter": "u77", "action": "exclude", "reason": ""}, follow=True)
    assert "Give a reason" in refused.content.decode()
    assert not ArenaVote.objects.filter(excluded=True).exists()
    done = client.post(
        "/moderation/arena-voters", {"voter": "u77", "action": "exclude", "reason": "constant"}, follow=True
    )
    assert "6 arena votes of" in done.content.decode()
    assert ArenaVote.objects.filter(voter_key="u77", excluded=True).count() == 6
    assert ("tasks.arena.recompute", ("",)) in refits_recorded
    entry = ModerationAction.objects.get(kind="arena_exclude")
    assert entry.moderator == moderator and "constant" in entry.reason
    assert "Constant" not in client.get("/moderation").content.decode()
    removed = client.post(
        "/moderation/arena-voters", {"voter": "u78", "action": "remove", "reason": "spam"}, follow=True
    )
    assert removed.status_code == 200
    assert not ArenaVote.objects.filter(voter_key="u78").exists()
    assert ModerationAction.objects.filter(kind="arena_remove", reason__startswith="spam").exists()


def test_only_moderators_act_on_voters(client, alice, versions):
    client.force_login(alice)
    assert (
        client.post("/moderation/arena-voters", {"voter": "u1", "action": "exclude", "reason": "x"}).status_code == 404
    )


def test_random_voters_are_flagged_against_the_leaderboard(versions, make_comparison, settings):
    settings.ARENA_FLAG_MIN_VOTES = 6
    alpha, beta, _ = versions
    comparisons = [make_comparison(versions) for _ in range(30)]
    # The crowd: alpha clearly better.
    add_votes(
        "u1",
        [(first_output(c, alpha), first_output(c, beta), "a") for c in comparisons[:25]]
        + [(first_output(c, alpha), first_output(c, beta), "b") for c in comparisons[25:]],
    )
    arena.recompute("")
    # A contrarian: half left, half right, always against the crowd.
    add_votes("u2", [(first_output(c, alpha), first_output(c, beta), "b") for c in comparisons[:8]])
    flagged = {voter["voter_key"]: voter["reason"] for voter in arena.flagged_voters()}
    assert "u1" not in flagged
    assert flagged["u2"].startswith("Random") or flagged["u2"].startswith("Constant")


def test_moderators_remove_single_votes_in_the_admin_with_an_audit_entry(client, moderator, versions, make_comparison):
    c = make_comparison(versions)
    first, second = add_votes(
        "u55",
        [
            (first_output(c, versions[0]), first_output(c, versions[1]), "a"),
            (first_output(c, versions[1]), first_output(c, versions[2]), "b"),
        ],
    )
    client.force_login(moderator)
    url = "/admin/app/arenavote/"
    assert client.get(url).status_code == 200
    refused = client.post(url, {"action": "remove_votes", "_selected_action": [first.pk], "reason": ""}, follow=True)
    assert "Give a reason" in refused.content.decode() and ArenaVote.objects.count() == 2
    client.post(url, {"action": "remove_votes", "_selected_action": [first.pk], "reason": "a bot"}, follow=True)
    assert list(ArenaVote.objects.values_list("pk", flat=True)) == [second.pk]
    entry = ModerationAction.objects.get(kind="arena_remove")
    assert entry.moderator == moderator and entry.reason.startswith("a bot")
