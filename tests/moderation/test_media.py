"""Stored images go through a permission check: private and hidden ones only
to their owner and moderators (or a signed URL), nsfw ones only to those who
may see them, blurred thumbnails to everyone who may see the item."""

import time
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from PIL import Image

from app.models import ContentPreference
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

    old = storage.signed_url(output.file, now=time.time() - 3600)

    assert Client().get(old).status_code == 403


def test_files_that_belong_to_no_output_are_not_served(make_prediction, alice):
    from django.core.files.base import ContentFile

    prediction = make_prediction(owner=alice)
    stray = storage.default_storage.save(f"outputs/{prediction.id[:2]}/{prediction.id}/stray.png", ContentFile(b"x"))

    assert _status(alice, f"/media/{stray}") == 404
    assert _status(alice, "/media/outputs/../secret") == 404
