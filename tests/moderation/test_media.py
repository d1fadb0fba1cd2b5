"""Stored images go through a permission check: private and hidden ones only
to their owner and moderators (also by a signed URL issued to them), nsfw ones
only to those who may see them, blurred thumbnails to everyone who may see the item."""

import re
import time
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from PIL import Image

from app.models import ApiToken, Comparison, ContentPreference
from app.services import api_json as api
from app.services import storage

from .conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def _status(user, url):
    client = Client()
    if user is not None:
        login(client, user)
    return client.get(url).status_code


def test_shared_images_are_served_to_anyone_with_the_path(make_prediction, alice):
    for visibility in ("public", "unlisted"):
        output = make_prediction(owner=alice, visibility=visibility).outputs.get()
        assert _status(None, output.file.url) == 200
        assert _status(None, output.thumbnail.url) == 200


def test_private_images_only_to_owner_and_moderators(make_prediction, alice, bob, moderator, staff):
    output = make_prediction(owner=alice, visibility="private").outputs.get()

    for url in (output.file.url, output.thumbnail.url):
        assert _status(None, url) == 404
        assert _status(bob, url) == 404
        assert _status(staff, url) == 404
        assert _status(alice, url) == 200
        assert _status(moderator, url) == 200


def test_hidden_images_answer_410_to_others(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice, visibility="public")
    prediction.hide("reports")
    output = prediction.outputs.get()

    assert _status(None, output.file.url) == 410
    assert _status(bob, output.thumbnail.url) == 410
    assert _status(alice, output.file.url) == 200
    assert _status(moderator, output.file.url) == 200


def test_nsfw_images_are_blurred_unless_the_user_opted_in(make_prediction, alice, bob, carol):
    output = make_prediction(owner=alice, visibility="public", ratings=("nsfw",)).outputs.get()
    ContentPreference.objects.create(user=carol, show_nsfw=True)

    assert output.blurred_thumbnail
    assert _status(None, output.blurred_thumbnail.url) == 200
    assert _status(None, output.file.url) == 403
    assert _status(None, output.thumbnail.url) == 403
    assert _status(bob, output.file.url) == 403
    assert _status(carol, output.file.url) == 200
    assert _status(alice, output.file.url) == 200
    assert output.thumbnail_for(bob) == output.blurred_thumbnail
    assert output.thumbnail_for(carol) == output.thumbnail


def test_the_blurred_thumbnail_gives_nothing_away(make_prediction, alice):
    output = make_prediction(owner=alice, ratings=("nsfw",)).outputs.get()

    with Image.open(output.blurred_thumbnail.open()) as blurred:
        assert blurred.format == "WEBP"
        colors = blurred.convert("RGB").getcolors(maxcolors=1_000_000)
    # A flat image stays flat; what matters is that it was made on the server
    # from a handful of pixels: few distinct colours, no detail.
    assert len(colors) < 500


def test_blocked_images_are_gone(make_prediction, alice, moderator):
    prediction = make_prediction(owner=alice, visibility="public")
    output = prediction.outputs.get()
    url = output.file.url
    output.block()

    assert _status(alice, url) == 404  # the file itself is deleted
    assert not storage.default_storage.exists(url.removeprefix("/media/"))


def test_api_output_urls_are_signed_and_work_without_a_session(make_prediction, alice):
    prediction = make_prediction(owner=alice, visibility="private")

    url = urlsplit(api.prediction_json(prediction)["output"][0]).path

    assert url.startswith("/files/") and url.endswith("/0.png")
    response = Client().get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    tampered = url.replace("/0.png", "/0.thumb.webp")
    assert Client().get(tampered).status_code == 403


@override_settings(MEDIA_URL_TTL=60)
def test_signed_urls_expire(make_prediction, alice):
    prediction = make_prediction(owner=alice, visibility="private")
    output = prediction.outputs.get()

    old = storage.signed_url(output.file, alice, now=time.time() - 3600)

    assert Client().get(old).status_code == 403


def test_files_that_belong_to_no_output_are_not_served(make_prediction, alice):
    from django.core.files.base import ContentFile

    prediction = make_prediction(owner=alice)
    stray = storage.default_storage.save(f"outputs/{prediction.id[:2]}/{prediction.id}/stray.png", ContentFile(b"x"))

    assert _status(alice, f"/media/{stray}") == 404
    assert _status(alice, "/media/outputs/../secret") == 404


# --- Signed links follow the item's current state (issue 9, item 4) -----------------
# A signed URL carries the rights of the user it was issued to, checked when it
# is served: what that user could no longer open by its page, the link no
# longer serves either.

URL_IN_PAGE = re.compile(r"""(?:https?://testserver)?(/(?:files|media)/[^"'\s<>&]+)""")


def _api_output(user, prediction):
    headers = {"Authorization": f"Bearer {ApiToken.issue(user)[1]}"}
    response = Client().get(f"/v1/predictions/{prediction.id}", headers=headers)
    assert response.status_code == 200
    return [urlsplit(url).path for url in response.json()["output"]]


def _image_bytes(response):
    return b"".join(response.streaming_content) if response.status_code == 200 else b""


def test_a_signed_link_stops_working_when_its_owner_makes_it_private(make_prediction, alice, bob):
    prediction = make_prediction(owner=alice, visibility="unlisted")
    [link] = _api_output(bob, prediction)
    assert Client().get(link).status_code == 200

    login(Client(), alice).post(f"/p/{prediction.id}/visibility", {"visibility": "private"})

    assert Client().get(link).status_code == 404


def test_a_signed_link_stops_working_when_moderators_hide_it(make_prediction, alice, bob):
    prediction = make_prediction(owner=alice, visibility="public")
    [link] = _api_output(bob, prediction)

    prediction.hide("Hidden by a moderator: test")

    assert Client().get(link).status_code == 410


def test_the_owners_client_keeps_fetching_its_own_private_and_hidden_images(make_prediction, alice):
    prediction = make_prediction(owner=alice, visibility="unlisted")
    [link] = _api_output(alice, prediction)

    prediction.visibility = "private"
    prediction.save(update_fields=["visibility"])
    prediction.hide("Hidden by a moderator: test")

    response = Client().get(link)  # no session: an API client
    assert response.status_code == 200
    assert _image_bytes(response)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_api_gives_others_only_the_blurred_picture_of_an_nsfw_image(make_prediction, alice, bob, carol):
    prediction = make_prediction(owner=alice, visibility="public", ratings=("nsfw",))
    original = prediction.outputs.get().file.read()
    ContentPreference.objects.create(user=carol, show_nsfw=True)

    [bobs] = _api_output(bob, prediction)
    [carols] = _api_output(carol, prediction)
    [alices] = _api_output(alice, prediction)

    assert bobs.endswith("/0.blurred.webp")
    assert _image_bytes(Client().get(bobs))[:4] == b"RIFF"
    for link in (carols, alices):
        assert _image_bytes(Client().get(link)) == original
    # An opt-in withdrawn withdraws the links issued under it.
    ContentPreference.objects.filter(user=carol).update(show_nsfw=False)
    assert Client().get(carols).status_code == 403


def test_a_signed_link_cannot_be_moved_to_another_user(make_prediction, alice, bob):
    prediction = make_prediction(owner=alice, visibility="private")
    [link] = _api_output(alice, prediction)
    expires, holder, signature = link.split("/")[2].split(".")

    forged = link.replace(f"/{expires}.{holder}.", f"/{expires}.{bob.pk}.")

    assert Client().get(forged).status_code == 403


def test_pages_embed_no_link_that_gives_a_viewer_an_nsfw_image_they_may_not_see(make_prediction, alice, bob):
    """The prediction page (with its API JSON block) and its comparison: every
    image URL in them, fetched the way the viewer could fetch it (with their
    session, or none for signed links), gives at most the blurred picture."""
    comparison = Comparison.objects.create(owner=alice, visibility="public", input={"prompt": "x"})
    prediction = make_prediction(owner=alice, visibility="public", ratings=("nsfw",), comparison=comparison)
    original = prediction.outputs.get().file.read()

    for viewer in (None, bob):
        client = login(Client(), viewer) if viewer else Client()
        for page in (f"/p/{prediction.id}", f"/c/{comparison.id}"):
            html = client.get(page).content.decode()
            links = set(URL_IN_PAGE.findall(html))
            assert links, page
            for link in links:
                assert _image_bytes(client.get(link)) != original, (viewer, page, link)
    # The owner's own page links to the image itself.
    html = login(Client(), alice).get(f"/p/{prediction.id}").content.decode()
    assert any(
        _image_bytes(Client().get(link)) == original for link in URL_IN_PAGE.findall(html) if link.startswith("/files/")
    )


def test_a_signed_link_follows_its_holders_rights_not_the_ones_they_had(make_prediction, alice, moderator):
    prediction = make_prediction(owner=alice, visibility="private")
    [link] = _api_output(moderator, prediction)
    assert Client().get(link).status_code == 200

    moderator.groups.clear()

    assert Client().get(link).status_code == 404
    moderator.is_active = False
    moderator.save(update_fields=["is_active"])
    assert Client().get(link).status_code == 403


def test_a_malformed_signed_link_is_refused_not_a_server_error(make_prediction, alice):
    path = make_prediction(owner=alice).outputs.get().file.name
    client = Client(raise_request_exception=False)

    for token in (
        "²²²².1.x",
        "1" * 5000 + ".1.x",
        "9999999999.²." + "x" * 43,
        "9999999999." + "1" * 5000 + ".x",
        "..",
        "",
    ):
        assert client.get(f"/files/{token}/{path}").status_code in (403, 404), token


def test_a_signed_link_stops_giving_the_image_once_moderators_rate_it_nsfw(make_prediction, alice, bob):
    prediction = make_prediction(owner=alice, visibility="public")
    [link] = _api_output(bob, prediction)

    storage.mark_nsfw(prediction.outputs.get())

    assert Client().get(link).status_code == 403
    [blurred] = _api_output(bob, prediction)
    assert blurred.endswith("/0.blurred.webp") and Client().get(blurred).status_code == 200
