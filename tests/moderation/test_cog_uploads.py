"""Files on this site's own origin: what a Cog server may upload (--upload-url)
and what a model's outputs may be, told by their bytes; how stored files are
served; safe upload names; one upload token per Cog server."""

import base64
import io
import json
from urllib.parse import quote, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from PIL import Image

from app.models import Prediction, Upload
from app.services import storage
from app.services.backends import cog
from tasks.predictions import finish_prediction
from tests.stored_files import snapshot

from .conftest import _version, login, png

pytestmark = pytest.mark.django_db(transaction=True)

HTML = b"<!DOCTYPE html><html><body><script>fetch('/v1/predictions')</script></body></html>"
JS = b"fetch('/account/tokens', {method: 'POST'}).then(r => r.text()).then(alert)\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def _upload_path(location):
    return urlsplit(storage.upload_url(location)).path


def _put(location, filename, body, content_type="image/png", prediction_id="remote-1", quoted=True):
    """PUT through the real URL, as Cog does: the name is appended to --upload-url."""
    name = quote(filename, safe="") if quoted else filename
    return Client().generic(
        "PUT", _upload_path(location) + name, body, content_type=content_type, HTTP_X_PREDICTION_ID=prediction_id
    )


def _running(version, **extra):
    return Prediction.objects.create(
        version=version,
        input={"prompt": "a red square", "seed": 1},
        status="processing",
        started_at=timezone.now(),
        **extra,
    )


def _completed(prediction, output):
    """The Cog server's completed webhook, through the real endpoint."""
    path = urlsplit(cog.webhook_url(prediction)).path
    body = {"id": prediction.id, "status": "succeeded", "output": output, "logs": ""}
    return Client().post(path, json.dumps(body), content_type="application/json")


def _data_uri(data, content_type):
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def _nothing_saved(before):
    return Upload.objects.count() == 0 and snapshot() == before


def _body(response):
    return b"".join(response.streaming_content)


@pytest.fixture
def other_version(transactional_db):
    return _version("local", "other-model", "cog", "http://127.0.0.1:10")


def test_markup_and_script_are_refused_by_their_content_whatever_the_name_or_header(version):
    before = snapshot()
    for body in (HTML, JS, SVG):
        for filename, content_type in (("out.png", "image/png"), ("out.html", "text/html"), ("out.js", "image/png")):
            response = _put(version.location, filename, body, content_type=content_type)
            assert response.status_code == 415, (body[:20], filename)
            assert b"PNG, JPEG, WEBP, GIF or JSON" in response.content
    assert _nothing_saved(before)


def test_a_damaged_image_or_hostile_json_is_refused_not_a_500(version):
    before = snapshot()
    truncated = png(size=(300, 300))[:200]
    for body in (truncated, b"[" * 100_000, b"", b"\xff\xfe{}"):
        assert _put(version.location, "out.png", body).status_code == 415
    assert _nothing_saved(before)


def test_every_allowed_kind_is_taken(version):
    for fmt, content_type in (
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
    ):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, fmt)
        assert _put(version.location, f"out.{fmt}", buffer.getvalue(), content_type="text/html").status_code == 201
        assert Upload.objects.latest("created_at").content_type == content_type
    assert _put(version.location, "out.json", b'{"ok": true}').status_code == 201


def test_a_png_named_html_is_stored_and_served_as_a_png(version, alice):
    response = _put(version.location, "page.html", png(), content_type="text/html")
    assert response.status_code == 201
    assert Upload.objects.get().content_type == "image/png"

    served = Client().get(urlsplit(response["Location"]).path)
    assert served["Content-Type"] == "image/png"
    assert not served.get("Content-Disposition", "").startswith("attachment")
    assert served["X-Content-Type-Options"] == "nosniff"
    assert _body(served) == png()

    prediction = _running(version, owner=alice, visibility="public")
    assert _completed(prediction, [response["Location"]]).status_code == 200
    output = Prediction.objects.get(pk=prediction.pk).outputs.get()
    assert (output.content_type, output.file.name.rsplit("/", 1)[1]) == ("image/png", "0.png")
    media = Client().get(output.file.url)
    assert media["Content-Type"] == "image/png"
    assert not media.get("Content-Disposition", "").startswith("attachment")


def test_json_a_model_returns_is_served_as_a_sandboxed_attachment(version, alice):
    data = json.dumps({"caption": "<script>alert(1)</script>"}).encode()
    response = _put(version.location, "caption.html", data, content_type="text/html")
    assert response.status_code == 201

    served = Client().get(urlsplit(response["Location"]).path)
    assert served["Content-Type"] == "application/json"
    assert served["Content-Disposition"].startswith("attachment")

    prediction = _running(version, owner=alice, visibility="public")
    assert _completed(prediction, [response["Location"]]).status_code == 200
    output = Prediction.objects.get(pk=prediction.pk).outputs.get()
    assert output.content_type == "application/json"

    media = Client().get(output.file.url)
    assert media.status_code == 200
    assert media["Content-Type"] == "application/json"
    assert media["Content-Disposition"].startswith("attachment")
    assert "sandbox" in [directive.strip() for directive in media["Content-Security-Policy"].split(";")]
    assert media["X-Content-Type-Options"] == "nosniff"
    assert _body(media) == data


def test_a_stored_file_of_a_type_never_checked_is_not_served_as_it_claims(make_prediction, alice):
    """A row stored before types were checked: its recorded type is not trusted."""
    prediction = make_prediction(owner=alice)
    output = prediction.outputs.get()
    output.file.save("0.html", ContentFile(HTML), save=False)
    output.content_type = "text/html"
    output.save()

    media = Client().get(output.file.url)
    assert media["Content-Type"] == "application/octet-stream"
    assert media["Content-Disposition"].startswith("attachment")
    assert "sandbox" in media["Content-Security-Policy"]


def test_an_output_of_a_refused_type_fails_the_prediction_and_stores_nothing(version, alice):
    before = snapshot()
    prediction = _running(version, owner=alice)
    uploaded = _put(version.location, "out-1.png", png(), prediction_id=prediction.id)
    assert uploaded.status_code == 201

    # A good first output and a page as the second: neither is kept.
    response = _completed(prediction, [uploaded["Location"], _data_uri(HTML, "image/png")])

    assert response.status_code == 200
    prediction.refresh_from_db()
    assert prediction.status == "failed"
    assert "Could not store the outputs" in prediction.error
    assert "PNG, JPEG, WEBP, GIF or JSON" in prediction.error
    assert prediction.outputs.count() == 0
    assert _nothing_saved(before)


@pytest.mark.parametrize(
    "filename",
    [
        "a\r\nSet-Cookie: x=1.png",
        "a\nb.png",
        "a\x00b.png",
        "../escape.png",
        "a/b.png",
        "a\\b.png",
        "..",
        ".htaccess",
        "a\u202egnp.html",
        "x" * 101 + ".png",
    ],
)
def test_unsafe_filenames_are_refused_and_nothing_is_saved(version, filename):
    before = snapshot()

    response = _put(version.location, filename, png())

    assert response.status_code == 400, filename
    assert b"file name" in response.content
    assert _nothing_saved(before)


def test_a_path_in_the_real_url_is_refused(version):
    """Unencoded: Django's routing splits it into an upload id and a name."""
    before = snapshot()
    assert _put(version.location, "nested/out.png", png(), quoted=False).status_code == 400
    assert _put(version.location, "../../media/out.png", png(), quoted=False).status_code in (400, 404)
    assert _nothing_saved(before)


def test_each_cog_server_has_its_own_upload_token(version, other_version):
    assert storage.upload_url(version.location) != storage.upload_url(other_version.location)
    assert storage.upload_url(version.location) == storage.upload_url(version.location + "/")
    forged = _upload_path(version.location).replace("/uploads/", "/uploads/x").rstrip("/") + "/out.png"
    assert Client().generic("PUT", forged, png(), content_type="image/png").status_code == 403


def test_one_servers_token_cannot_place_an_upload_in_another_servers_prediction(
    version, other_version, alice, monkeypatch
):
    # Not ours to take from the upload table, so a worker would try the URL:
    # run that task here (no worker in these tests).
    monkeypatch.setattr(finish_prediction, "delay", lambda *args: finish_prediction.apply(args=args))
    victim = _running(other_version, owner=alice)
    response = _put(version.location, "out-0.png", png(), prediction_id=victim.id)
    assert response.status_code == 201
    location = response["Location"]

    # The other server's token does not fetch it either.
    upload = Upload.objects.get()
    assert upload.server == version.location
    theirs = f"{_upload_path(other_version.location)}{upload.pk}/out-0.png"
    assert Client().get(theirs).status_code == 404

    # Named in the victim's webhook (as if it came from its own server).
    _completed(victim, [location])

    victim.refresh_from_db()
    assert victim.status == "failed"
    assert "another model server" in victim.error
    assert victim.outputs.count() == 0


def test_serve_model_gives_each_server_its_own_upload_url(monkeypatch):
    from django.core.management import call_command

    from app.services import catalog

    commands = []
    monkeypatch.setattr("os.execv", lambda executable, command: commands.append(command))
    call_command("serve_model", "tiny-sd")
    call_command("serve_model", "tiny-sdxl")

    urls = [command[command.index("--upload-url") + 1] for command in commands]
    assert urls == [storage.upload_url(catalog.local_url(name)) for name in ("tiny-sd", "tiny-sdxl")]
    assert urls[0] != urls[1]


def test_the_signed_in_owner_gets_a_stored_json_as_a_download_too(version, alice):
    prediction = _running(version, owner=alice, visibility="private")
    _completed(prediction, [_data_uri(b'{"a": 1}', "text/html")])
    output = Prediction.objects.get(pk=prediction.pk).outputs.get()

    media = login(Client(), alice).get(output.file.url)

    assert media["Content-Type"] == "application/json"
    assert media["Content-Disposition"].startswith("attachment")
    assert default_storage.exists(output.file.name)
