"""The gallery: public predictions, newest first, keyset pages, filters, search."""

import base64

import pytest

from app.models import Prediction
from app.services import storage
from tests.web.conftest import make_prediction, make_version, turbo_schema

pytestmark = pytest.mark.django_db(transaction=True)


def prompts(response):
    return [p.input["prompt"] for p in response.context["page"].items]


def test_it_lists_only_public_succeeded_predictions_newest_first(client, alice, sd_version):
    make_prediction(sd_version, owner=alice, prompt="old fox")
    make_prediction(sd_version, owner=alice, prompt="hidden fox", visibility="unlisted")
    make_prediction(sd_version, owner=alice, prompt="private fox", visibility="private")
    make_prediction(sd_version, owner=alice, prompt="failed fox", status="failed")
    make_prediction(sd_version, owner=alice, prompt="new fox")

    response = client.get("/gallery")

    assert prompts(response) == ["new fox", "old fox"]
    html = response.content.decode()
    assert 'loading="lazy"' in html and ".thumb.webp" in html and ".png" not in html.split("<main")[1]


def test_search_finds_a_prompt(client, alice, sd_version):
    make_prediction(sd_version, owner=alice, prompt="a lighthouse at dusk")
    make_prediction(sd_version, owner=alice, prompt="a red fox")

    assert prompts(client.get("/gallery", {"q": "lighthouse"})) == ["a lighthouse at dusk"]


def test_search_on_postgresql_is_full_text(client, alice, sd_version):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("full-text search is PostgreSQL's; SQLite matches the text as typed")
    make_prediction(sd_version, owner=alice, prompt="Two red foxes running in the snow")
    make_prediction(sd_version, owner=alice, prompt="a lighthouse")

    assert prompts(client.get("/gallery", {"q": "fox run"})) == ["Two red foxes running in the snow"]
    assert prompts(client.get("/gallery", {"q": "fox -snow"})) == []


def test_filters_by_model_version_and_own_status(client, alice, sd_version):
    turbo = make_version("local", "sd-turbo", turbo_schema())
    make_prediction(sd_version, owner=alice, prompt="sd fox")
    make_prediction(turbo, owner=alice, prompt="turbo fox")
    make_prediction(turbo, owner=alice, prompt="canceled fox", status="canceled")

    assert prompts(client.get("/gallery", {"model": "local/sd-turbo"})) == ["turbo fox"]
    assert prompts(client.get("/gallery", {"version": sd_version.id})) == ["sd fox"]
    # Visitors get finished images, whatever the address asks.
    assert prompts(client.get("/gallery", {"status": "canceled"})) == ["turbo fox", "sd fox"]
    client.force_login(alice)
    assert prompts(client.get("/gallery", {"mine": "1", "status": "canceled"})) == ["canceled fox"]
    assert len(prompts(client.get("/gallery", {"mine": "1", "status": "any"}))) == 3


def test_mine_shows_all_of_mine_and_none_of_theirs(client_alice, alice, bob, sd_version):
    make_prediction(sd_version, owner=alice, prompt="my unlisted fox", visibility="unlisted")
    make_prediction(sd_version, owner=bob, prompt="bob's public fox")

    assert prompts(client_alice.get("/gallery", {"mine": "1"})) == ["my unlisted fox"]


def test_keyset_pages_walk_forward_and_back(client, alice, sd_version):
    for index in range(30):
        make_prediction(sd_version, owner=alice, prompt=f"fox {index:02}", outputs=0 if index % 2 else 1)

    first = client.get("/gallery")
    assert prompts(first) == [f"fox {i:02}" for i in range(29, 5, -1)]
    next_url = first.context["next_url"]
    second = client.get("/gallery" + next_url)
    assert prompts(second) == [f"fox {i:02}" for i in range(5, -1, -1)]
    assert second.context["next_url"] == ""
    back = client.get("/gallery" + second.context["previous_url"])
    assert prompts(back) == prompts(first)
    # Real links under the grid, and infinite scroll on the last tile.
    html = first.content.decode()
    assert 'rel="next"' in html and 'hx-trigger="revealed"' in html


def test_infinite_scroll_gets_the_next_tiles_and_the_pager(client, alice, sd_version):
    for index in range(26):
        make_prediction(sd_version, owner=alice, prompt=f"fox {index:02}", outputs=0)
    next_url = client.get("/gallery").context["next_url"]

    response = client.get("/gallery" + next_url, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert "<html" not in html and html.count('class="tile"') == 2
    assert 'hx-swap-oob="true"' in html


@pytest.mark.parametrize("count", [3, 30])
def test_the_page_runs_a_constant_number_of_queries_and_no_count(
    client_alice, alice, sd_version, django_assert_max_num_queries, count
):
    for index in range(count):
        make_prediction(sd_version, owner=alice, prompt=f"fox {index}")

    with django_assert_max_num_queries(6) as captured:
        response = client_alice.get("/gallery", {"q": "fox"})
    assert len(response.context["page"].items) == min(count, 24)
    assert not any("COUNT(" in query["sql"].upper() for query in captured.captured_queries)


def test_bad_cursor_gives_the_first_page(client, alice, sd_version):
    make_prediction(sd_version, owner=alice, prompt="fox")

    assert prompts(client.get("/gallery", {"cursor": "not-a-cursor"})) == ["fox"]


@pytest.mark.parametrize(
    "forged",
    [
        "next|2030-01-01T00:00:00+00:00|ab\x00c",
        "next|2030-01-01T00:00:00|abc",
        "next|2030-01-01T00:00:00+00:00|' OR 1=1",
    ],
)
def test_a_forged_cursor_gives_the_first_page_not_an_error(client, alice, sd_version, forged):
    """The pages' cursors get the checks the API's had: a NUL byte (PostgreSQL
    answered 500), a naive time, an id that is not ours."""
    make_prediction(sd_version, owner=alice, prompt="fox")
    cursor = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")

    assert prompts(client.get("/gallery", {"cursor": cursor})) == ["fox"]
    client.force_login(alice)
    assert client.get("/account/", {"cursor": cursor}).status_code == 200


def test_the_model_page_lists_versions_with_counts_and_median_predict_time(client, alice, sd_version):
    for seconds in (1.0, 3.0, 2.0, 10.0):
        prediction = make_prediction(sd_version, owner=alice)
        Prediction.objects.filter(pk=prediction.pk).update(predict_time=seconds)
    make_prediction(sd_version, owner=alice, status="failed")

    response = client.get("/models/local/tiny-sd")

    [version] = response.context["versions"]
    assert version.prediction_count == 5
    assert version.median_predict_time == 2.5
    assert "2.50 s" in response.content.decode()


def test_the_models_page_lists_the_catalog(client, sd_version):
    assert "local/tiny-sd" in client.get("/models").content.decode()


def test_an_unknown_model_is_404(client, transactional_db):
    assert client.get("/models/nobody/nothing").status_code == 404


def test_moderated_images_are_blurred_or_removed(client, alice, sd_version):
    removed = make_prediction(sd_version, owner=alice, prompt="blocked fox")
    removed.outputs.get().block()
    nsfw = make_prediction(sd_version, owner=alice, prompt="nsfw fox")
    output = nsfw.outputs.get()
    storage.mark_nsfw(output)
    output.refresh_from_db()

    html = client.get("/gallery").content.decode()

    assert "Removed by moderators" in html
    assert output.blurred_thumbnail.url in html and output.thumbnail.url not in html
    page = client.get(f"/p/{nsfw.id}").content.decode()
    assert output.blurred_thumbnail.url in page and output.file.url not in page
    assert 'property="og:image"' not in page
    # Its owner sees it.
    client.force_login(alice)
    assert output.thumbnail.url in client.get("/gallery").content.decode()
    assert output.file.url in client.get(f"/p/{nsfw.id}").content.decode()


def test_hidden_predictions_leave_the_gallery_and_their_links_answer_gone(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice, prompt="reported fox")
    prediction.hide("Reported as spam")

    assert prompts(client.get("/gallery")) == []
    response = client.get(f"/p/{prediction.id}")
    assert response.status_code == 410 and "Hidden by moderators" in response.content.decode()
    client.force_login(alice)
    page = client.get(f"/p/{prediction.id}")
    assert page.status_code == 200 and "Reported as spam" in page.content.decode()


def test_public_filters_offer_models_but_no_version_hashes_or_run_states(client, alice, sd_version):
    make_prediction(sd_version, owner=alice, prompt="fox")

    html = client.get("/gallery").content.decode()

    assert 'name="version"' not in html and sd_version.id[:8] not in html
    assert 'name="status"' not in html and "Failed" not in html
    assert '<option value="local/tiny-sd"' in html
    client.force_login(alice)
    mine = client.get("/gallery", {"mine": "1"}).content.decode()
    assert '<option value="failed"' in mine and "Still running" in mine


def test_the_address_follows_the_filters(client, alice, sd_version):
    make_prediction(sd_version, owner=alice, prompt="dragon")

    typed = client.get("/gallery", {"q": "dragon", "model": ""}, headers={"HX-Request": "true", "HX-Target": "results"})
    picked = client.get(
        "/gallery", {"q": "dragon", "model": "local/tiny-sd"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    cleared = client.get("/gallery", {"q": ""}, headers={"HX-Request": "true", "HX-Target": "results"})

    assert typed["HX-Push-Url"] == "/gallery?q=dragon"
    assert picked["HX-Push-Url"] == "/gallery?q=dragon&model=local%2Ftiny-sd"
    assert cleared["HX-Push-Url"] == "/gallery"


def test_infinite_scroll_offers_no_stale_newer_link(client, alice, sd_version):
    for index in range(30):
        make_prediction(sd_version, owner=alice, prompt=f"fox {index:02}", outputs=0)
    next_url = client.get("/gallery").context["next_url"]

    html = client.get("/gallery" + next_url, headers={"HX-Request": "true"}).content.decode()

    pager = html.split('id="pager"')[1]
    assert "Newer" not in pager and "Newest" not in pager and "Older" not in pager


def test_comparisons_show_as_strips_without_what_visitors_may_not_see(client, alice, sd_version):
    from app.models import Comparison

    turbo = make_version("local", "sd-turbo", turbo_schema())
    shared = Comparison.objects.create(owner=alice, input={"prompt": "two foxes"}, seed=7, visibility="public")
    shown = make_prediction(sd_version, owner=alice, comparison=shared)
    hidden = make_prediction(turbo, owner=alice, comparison=shared)
    hidden.hide("Hidden by a moderator: gore.")
    Comparison.objects.create(owner=alice, input={"prompt": "unlisted foxes"}, visibility="unlisted")
    make_prediction(sd_version, owner=alice, prompt="a single fox")

    response = client.get("/gallery", {"show": "comparisons"})

    html = response.content.decode()
    assert [c.input["prompt"] for c in response.context["page"].items] == ["two foxes"]
    assert f'href="/c/{shared.id}"' in html and "a single fox" not in html
    assert shown.outputs.get().thumbnail.url in html
    assert hidden.outputs.get().thumbnail.url not in html and "sd-turbo" not in html.split('id="results"')[1]
    assert prompts(client.get("/gallery", {"show": "comparisons", "model": "local/tiny-sd"})) == ["two foxes"]
    # Its sd-turbo image is hidden: filtering by that model does not find it.
    assert prompts(client.get("/gallery", {"show": "comparisons", "model": "local/sd-turbo"})) == []
    assert prompts(client.get("/gallery", {"show": "comparisons", "q": "nothing"})) == []


def test_ticking_only_mine_brings_the_status_filter_along(client_alice, alice, sd_version):
    htmx = {"HX-Request": "true", "HX-Target": "results"}

    mine = client_alice.get("/gallery", {"mine": "1"}, headers=htmx).content.decode()
    everyone = client_alice.get("/gallery", {"show": "comparisons"}, headers=htmx).content.decode()

    assert '<div class="field" id="gallery-status-field" hx-swap-oob="true">' in mine
    assert 'id="gallery-lead" hx-swap-oob="true">Everything you ran' in mine
    assert 'id="gallery-status-field" hidden hx-swap-oob="true"' in everyone
    assert "Prompts people ran on several models at once" in everyone
