"""/arena: blind pairs from published comparisons, one vote per person and
pair, caps, anonymous voting, and the reveal."""

import pytest
from django.test import override_settings

from app.models import ArenaVote, BenchmarkRun, ContentPreference, Prompt, PromptSet
from tests.arena.conftest import add_votes, cast, first_output


@pytest.fixture
def voter(client, alice):
    client.force_login(alice)
    return client


def test_a_vote_reveals_the_versions_only_after_it_is_cast(voter, versions, make_comparison):
    make_comparison(versions[:2], prompt="a lighthouse at dusk")
    page = voter.get("/arena")
    body = page.content.decode()
    assert "a lighthouse at dusk" in body
    # Blind: no model name, no prediction id, no output path in the page.
    for version in versions[:2]:
        assert str(version.model) not in body
        assert version.predictions.get().pk not in body
    assert "/media/" not in body
    response, matchup = cast(voter, "left")
    assert response.status_code == 302
    reveal = voter.get(response["Location"])
    text = reveal.content.decode()
    assert "You voted: left is better" in text
    assert str(matchup.left.prediction.version.model) in text and str(matchup.right.prediction.version.model) in text
    vote = ArenaVote.objects.get()
    winner = vote.version_a if vote.outcome == "a" else vote.version_b
    assert winner == matchup.left.prediction.version
    assert vote.choice == "left"


def test_the_images_come_blind_without_metadata(voter, versions, make_comparison):
    make_comparison(versions[:2])
    matchup = voter.get("/arena").context["matchup"]
    for side in ("left", "right"):
        response = voter.get(f"/arena/image/{matchup.token}/{side}")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/webp"
        assert b"local/" not in response.content  # no PNG text chunk naming the model
    assert voter.get(f"/arena/image/{matchup.token}/top").status_code == 404
    assert voter.get("/arena/image/forged/left").status_code == 404


def test_keys_and_buttons_offer_the_four_choices(voter, versions, make_comparison):
    make_comparison(versions[:2])
    body = voter.get("/arena").content.decode()
    for value, key in (("left", "1"), ("right", "2"), ("tie", "3"), ("bad", "4")):
        assert f'value="{value}"' in body and f'aria-keyshortcuts="{key}"' in body


def test_the_same_person_never_gets_the_same_pair_twice(voter, versions, make_comparison):
    make_comparison(versions[:2])
    make_comparison(versions[:2], prompt="a second prompt")
    seen = set()
    for _ in range(2):
        response, matchup = cast(voter, "tie")
        assert response.status_code == 302
        pair = frozenset((matchup.left.pk, matchup.right.pk))
        assert pair not in seen
        seen.add(pair)
    assert voter.get("/arena").context["matchup"] is None
    assert "No pair of images is left" in voter.get("/arena").content.decode()


def test_a_second_vote_on_the_same_pair_is_refused(voter, versions, make_comparison):
    make_comparison(versions[:2])
    matchup = voter.get("/arena").context["matchup"]
    assert voter.post("/arena/vote", {"token": matchup.token, "choice": "left"}).status_code == 302
    again = voter.post("/arena/vote", {"token": matchup.token, "choice": "right"}, follow=True)
    assert "already voted on this pair" in again.content.decode()
    assert ArenaVote.objects.count() == 1
    htmx = voter.post("/arena/vote", {"token": matchup.token, "choice": "right"}, HTTP_HX_REQUEST="true")
    assert htmx["X-Vote-Refused"] == "409" and "already voted" in htmx.content.decode()


@pytest.mark.parametrize(
    "token, choice, message",
    [
        ("forged", "left", "out of date"),
        ("", "left", "out of date"),
        ("x" * 5000, "left", "out of date"),
        (None, "sideways", "Choose left, right, tie or both bad"),
        (None, "", "Choose left, right, tie or both bad"),
    ],
)
def test_hostile_votes_are_refused_with_a_message(voter, versions, make_comparison, token, choice, message):
    make_comparison(versions[:2])
    matchup = voter.get("/arena").context["matchup"]
    response = voter.post(
        "/arena/vote", {"token": matchup.token if token is None else token, "choice": choice}, follow=True
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ArenaVote.objects.exists()


def test_a_token_shown_to_someone_else_does_not_count(client, alice, bob, versions, make_comparison):
    make_comparison(versions[:2])
    client.force_login(alice)
    token = client.get("/arena").context["matchup"].token
    client.force_login(bob)
    response = client.post("/arena/vote", {"token": token, "choice": "left"}, follow=True)
    assert "shown to someone else" in response.content.decode()
    assert not ArenaVote.objects.exists()


def test_hidden_private_and_nsfw_images_never_appear(voter, alice, versions, make_comparison):
    hidden = make_comparison(versions[:2], prompt="hidden one")
    hidden.hide("spam")
    make_comparison(versions[:2], prompt="private one", visibility="private")
    make_comparison(versions[:2], prompt="unlisted one", visibility="unlisted")
    nsfw = make_comparison(versions[:2], prompt="nsfw one", ratings={versions[0].pk: "nsfw"})
    assert voter.get("/arena").context["matchup"] is None
    ContentPreference.objects.create(user=alice, show_nsfw=True)
    matchup = voter.get("/arena").context["matchup"]
    assert matchup.comparison == nsfw


def test_predictions_of_the_same_version_or_failed_ones_make_no_pair(voter, versions, make_comparison):
    comparison = make_comparison([versions[0], versions[0]])
    assert voter.get("/arena").context["matchup"] is None
    other = make_comparison(versions[:2])
    other.predictions.filter(version=versions[1]).update(status="failed")
    assert voter.get("/arena").context["matchup"] is None
    assert comparison


def test_pairs_are_chosen_where_the_leaderboard_is_least_sure(voter, alice, versions, make_comparison):
    from app.services import arena

    # alpha and beta have many votes between them, gamma none: every pair offered involves gamma.
    seeded = [make_comparison(versions) for _ in range(6)]
    add_votes(
        "u999",
        [(first_output(c, versions[0]), first_output(c, versions[1]), "a") for c in seeded],
    )
    arena.recompute("")
    for _ in range(4):
        response, matchup = cast(voter, "left")
        offered = {matchup.left.prediction.version_id, matchup.right.prediction.version_id}
        assert versions[2].pk in offered


def test_a_daily_cap_per_voter(voter, versions, make_comparison, settings):
    settings.ARENA_VOTES_PER_DAY = 1
    make_comparison(versions[:2])
    make_comparison(versions[:2])
    assert cast(voter)[0].status_code == 302
    response, _ = cast(voter)
    assert "come back tomorrow" in voter.get(response["Location"]).content.decode()
    assert ArenaVote.objects.count() == 1


def test_visitors_cannot_vote_unless_anonymous_voting_is_on(client, versions, make_comparison):
    make_comparison(versions[:2])
    page = client.get("/arena")
    assert page.context["matchup"] is None and "Log in to vote" in page.content.decode()
    response = client.post("/arena/vote", {"token": "x", "choice": "left"})
    assert response.status_code == 302 and "/account/login/" in response["Location"]
    assert not ArenaVote.objects.exists()


@override_settings(ARENA_ANONYMOUS=True, ARENA_ANONYMOUS_VOTES_PER_HOUR=1)
def test_anonymous_voting_when_on_is_limited_per_address(client, versions, make_comparison):
    make_comparison(versions[:2])
    make_comparison(versions[:2])
    response, _ = cast(client, "right")
    assert response.status_code == 302
    vote = ArenaVote.objects.get()
    assert vote.user is None and vote.voter_key.startswith("s")
    response, _ = cast(client, "right")
    assert "voted as often as they may this hour" in client.get(response["Location"]).content.decode()
    assert ArenaVote.objects.count() == 1


def test_the_arena_of_one_run_shows_only_its_comparisons(voter, alice, versions, make_comparison):
    prompt_set = PromptSet.objects.create(slug="set", name="Set")
    prompt = Prompt.objects.create(prompt_set=prompt_set, position=0, text="a cat", category="animals")
    run = BenchmarkRun.objects.create(owner=alice, prompt_set=prompt_set, visibility="unlisted", title="My run")
    mine = make_comparison(versions[:2], prompt="a cat", visibility="unlisted", benchmark=run, prompt_row=prompt)
    make_comparison(versions[:2], prompt="elsewhere")
    for _ in range(1):
        response, matchup = cast(voter, "left", run=run.pk)
        assert matchup.comparison == mine
    assert voter.get(f"/arena?run={run.pk}").context["matchup"] is None
    # An unknown run is not an error: the arena of everything.
    assert voter.get("/arena?run=nope").context["run"] is None


def test_htmx_votes_swap_in_the_reveal(voter, versions, make_comparison):
    make_comparison(versions[:2])
    matchup = voter.get("/arena").context["matchup"]
    response = voter.post(
        "/arena/vote", {"token": matchup.token, "choice": "bad"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="arena-stage"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "You voted: both bad" in body and "<html" not in body
    assert "voted=" in response["HX-Push-Url"]


def test_a_vote_queues_a_debounced_refit(voter, versions, make_comparison, refits_recorded):
    make_comparison(versions[:2])
    make_comparison(versions[:2])
    cast(voter)
    cast(voter)
    names = [name for name, _ in refits_recorded]
    # One refit of the arena and one of the voter's own board, however many votes.
    assert names.count("tasks.arena.recompute") == 1
    assert names.count("tasks.arena.recompute_personal") == 1


@pytest.mark.parametrize(
    "url",
    [
        "/arena?voted=%00",
        "/arena?run=%00",
        "/arena?run=" + "x" * 500,
        "/leaderboard?category=%00",
        "/leaderboard?run=%00&category=" + "é" * 300,
        "/leaderboard?mine=1",
        "/leaderboard/votes.csv?run=%00",
        "/arena/image/%00/left",
    ],
)
def test_hostile_query_strings_never_answer_5xx(voter, versions, make_comparison, url):
    make_comparison(versions[:2])
    assert voter.get(url).status_code in (200, 400, 404)
