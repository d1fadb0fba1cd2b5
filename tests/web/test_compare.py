"""The compare viewer's page and heatmap: two images by their predictions,
each by the rules its media URL goes by; bad references get a message, not a 500."""

import io

import pytest
from PIL import Image

from app.models import Comparison, Output
from app.services import storage
from tests.web.conftest import make_prediction, png_bytes


@pytest.fixture
def pair(alice, sd_version, turbo_version):
    """Two predictions of one public comparison: A 96×64 red, B 48×32 a lighter red."""
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "a red fox"}, seed=42, visibility="public")
    a = make_prediction(sd_version, owner=alice, comparison=comparison)
    b = make_prediction(turbo_version, owner=alice, comparison=comparison, outputs=0)
    storage._save_output(b, 0, png_bytes((48, 32), (200, 60, 40)), "image/png")
    storage._save_output(b, 1, png_bytes((96, 64), (200, 40, 40)), "image/png")
    return a, b


def test_the_page_shows_both_images_and_says_how_they_differ(client, pair):
    a, b = pair
    response = client.get(f"/compare?a={a.id}&b={b.id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert a.outputs.get().file.url in html and b.outputs.get(index=0).file.url in html
    assert 'local/tiny-sd <span class="compare-vs">and</span> local/sd-turbo' in html
    # Different sizes: B is scaled to A's, and the page says so.
    assert "B (48×32) is scaled to A's 96×64" in html
    assert "Mean difference 20.0 of 255 levels; 100.0% of pixels differ" in html
    assert f'href="/compare?a={b.id}%3A0&amp;b={a.id}%3A0">Swap A and B' in html
    # Others of the comparison can be picked from here, the two shown chosen.
    pick = html.split('id="compare-again-b"')[1].split("</select>")[0]
    assert f'<option value="{b.id}:0" selected>' in pick and f'<option value="{b.id}:1">' in pick
    assert f'<option value="{a.id}:0" selected>' in html.split('id="compare-again-a"')[1].split("</select>")[0]


def test_the_heatmap_is_a_png_of_as_size_black_where_they_match(client, pair):
    a, b = pair
    same = client.get(f"/compare/diff.png?a={a.id}&b={b.id}:1")
    assert same.status_code == 200 and same["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(same.content)) as heat:
        assert heat.size == (96, 64)
        assert heat.convert("RGB").getextrema() == ((0, 0), (0, 0), (4, 4))
    differ = client.get(f"/compare/diff.png?a={a.id}&b={b.id}:0")
    with Image.open(io.BytesIO(differ.content)) as heat:
        assert heat.size == (96, 64)
        assert heat.convert("RGB").getpixel((10, 10)) != (0, 0, 4)
    assert "private" in differ["Cache-Control"]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("", 400, "Image A: give a prediction id"),
        ("a=<script>&b=x", 400, "Image A: give a prediction id"),
        ("a={a}&b={a}:9999", 400, "Image B: give a prediction id"),
        ("a={a}&b=nothing-here", 404, "Image B: there is no such prediction."),
        ("a={a}:3&b={b}", 404, "Image A: that prediction has no image 4."),
    ],
)
def test_bad_references_get_a_message(client, pair, query, status, message):
    a, b = pair
    response = client.get("/compare?" + query.format(a=a.id, b=b.id))
    assert response.status_code == status
    assert message in response.content.decode()
    assert client.get("/compare/diff.png?" + query.format(a=a.id, b=b.id)).status_code == status


def test_private_hidden_removed_and_nsfw_images_go_by_the_media_rules(client, bob, alice, pair):
    a, b = pair
    url = f"/compare?a={a.id}&b={b.id}"
    type(b).objects.filter(pk=b.pk).update(visibility="private")
    assert client.get(url).status_code == 404
    client.force_login(bob)
    assert "Image B: there is no such prediction." in client.get(url).content.decode()
    client.force_login(alice)  # the owner sees her private one
    assert client.get(url).status_code == 200

    type(b).objects.filter(pk=b.pk).update(visibility="public")
    b.hide("spam")
    client.force_login(bob)
    response = client.get(url)
    assert response.status_code == 410 and "Image B was hidden by moderators." in response.content.decode()
    b.unhide()

    Output.objects.filter(prediction=a).update(rating="nsfw")
    response = client.get(url)
    assert response.status_code == 403
    assert "Image A is rated NSFW" in response.content.decode()
    assert client.get(f"/compare/diff.png?a={a.id}&b={b.id}").status_code == 403
    client.force_login(alice)
    assert client.get(url).status_code == 200

    a.outputs.get().block()
    response = client.get(url)
    assert response.status_code == 410 and "Image A was removed by moderators." in response.content.decode()


def test_comparison_and_prediction_pages_offer_the_viewer(client, pair):
    a, b = pair
    html = client.get(f"/c/{a.comparison_id}").content.decode()
    assert '<form method="get" action="/compare" class="inline-form compare-pick">' in html
    assert "compare_choices" not in html  # the partial's comment stays a comment
    assert f'<option value="{a.id}:0" selected>local/tiny-sd · {a.version_id[:8]}</option>' in html
    assert f'<option value="{b.id}:0" selected>local/sd-turbo · {b.version_id[:8]} · image 1</option>' in html
    html = client.get(f"/p/{a.id}").content.decode()
    assert f'<input type="hidden" name="a" value="{a.id}:0">' in html
    assert f'<option value="{b.id}:1">local/sd-turbo · {b.version_id[:8]} · image 2</option>' in html


def test_use_seed_prompt_all_and_remix_open_the_playground_prefilled(client_alice, sd_version, turbo_version):
    prediction = make_prediction(turbo_version)
    prediction.input.update(negative_prompt="blurry", num_inference_steps=3)
    prediction.save()
    html = client_alice.get(f"/p/{prediction.id}").content.decode()
    for use in ("seed", "prompt", "all", "remix"):
        assert f'href="/?from={prediction.id}&amp;use={use}"' in html

    def form(use):
        return client_alice.get(f"/?from={prediction.id}&use={use}").context["form"]

    seed = form("seed")
    assert seed.initial == {"seed": 42}
    # Only the seed: on the models the playground starts with.
    assert seed.versions == client_alice.get("/").context["form"].versions
    assert form("prompt").initial == {"prompt": "a red fox", "negative_prompt": "blurry"}
    everything = form("all")
    assert [version.id for version in everything.versions] == [turbo_version.id]
    assert everything.initial["seed"] == 42 and everything.initial["num_inference_steps"] == 3
    remix = form("remix")
    assert "seed" not in remix.initial and remix.initial["num_inference_steps"] == 3
    assert [version.id for version in remix.versions] == [turbo_version.id]
