"""Network safety: only http(s) and data: URIs reach a backend; webhooks and
image URLs that lead to private, loopback or link-local addresses are refused,
after DNS and on every redirect; the allowlist lets LAN hosts (and this
suite's 127.0.0.1) through."""

import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings
from PIL import Image

from app.core import netguard, schema, uploads
from app.models import Prediction
from app.services import predictions
from tests.conftest import wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)


def _png():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 10)).save(buffer, "PNG")
    return buffer.getvalue()


class Server:
    """A small HTTP server on a loopback address: serves a PNG, or redirects."""

    def __init__(self, host="127.0.0.1", redirect_to=None, body=None):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                content = body or _png()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_port}/image.png"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def inside():
    """A server on 127.0.0.2: loopback, and not in the suite's allowlist."""
    server = Server("127.0.0.2")
    yield server
    server.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8000/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.2]/",
        "http://192.168.0.10/",
        "http://100.64.0.1/",
        "file:///etc/passwd",
        "ftp://example.com/",
        "gopher://127.0.0.1/",
        "http:///nohost",
    ],
)
def test_urls_to_inside_addresses_or_other_schemes_are_refused(url):
    with pytest.raises(netguard.UnsafeURL):
        netguard.check_url(url)


def test_the_allowlist_takes_hosts_addresses_and_networks():
    netguard.check_url("http://127.0.0.1:8000/hook")  # this suite's allowlist
    with override_settings(NETWORK_ALLOWLIST="10.0.0.0/8, nas.lan"):
        netguard.check_url("http://10.9.8.7/")
        with pytest.raises(netguard.UnsafeURL):
            netguard.check_url("http://127.0.0.1/")


def test_a_public_name_that_resolves_inside_is_refused(monkeypatch):
    # No internet here: DNS answers are played by a patched resolver.
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"innocent.example": ["93.184.216.34", "10.0.0.5"]}))
    with pytest.raises(netguard.UnsafeURL, match="10.0.0.5"):
        netguard.check_url("https://innocent.example/x.png")


def test_the_guard_connects_to_the_address_it_checked_so_rebinding_fails(monkeypatch, inside):
    # First answer public (the check passes), then the inside address: the
    # connection resolves again, checks again, and refuses.
    answers = iter([["93.184.216.34"], ["127.0.0.2"], ["127.0.0.2"]])
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in next(answers)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = inside.httpd.server_port
    with pytest.raises(netguard.UnsafeURL):
        netguard.fetch(f"http://rebind.example:{port}/image.png", 10_000)
    assert inside.requests == []


def test_every_redirect_is_checked(inside):
    outside = Server("127.0.0.1", redirect_to=inside.url)  # allowed, but it points inside
    try:
        with pytest.raises(netguard.UnsafeURL):
            netguard.fetch(outside.url, 10_000)
        assert len(outside.requests) == 1 and inside.requests == []
    finally:
        outside.close()


def test_only_http_and_data_uris_are_accepted_for_files(version, alice):
    for value in ("file:///etc/passwd", "/etc/passwd", "s3://bucket/key", "FILE:///x"):
        with pytest.raises(schema.InputError) as refused:
            predictions.start(version, {"prompt": "x", "image": value}, owner=alice)
        assert "http(s) URL or a data: URI" in refused.value.errors["image"][0]
    predictions.start(version, {"prompt": "x", "image": _data_uri(_png())}, owner=alice)


def test_images_given_as_data_uris_are_checked_and_re_encoded(version, alice):
    from tests.moderation.test_uploads import _png_bomb

    with pytest.raises(schema.InputError) as refused:
        predictions.start(version, {"prompt": "x", "image": _data_uri(_png_bomb())}, owner=alice)
    assert "pixels" in refused.value.errors["image"][0]
    with pytest.raises(schema.InputError) as refused:
        predictions.start(version, {"prompt": "x", "image": "data:image/png;base64,@@@"}, owner=alice)
    assert "base64" in refused.value.errors["image"][0]

    given = _data_uri(_png() + b"trailing bytes")
    prediction = predictions.start(version, {"prompt": "x", "image": given}, owner=alice)
    assert prediction.input["image"].startswith("data:image/png;base64,") and prediction.input["image"] != given


def test_images_fetched_for_a_model_server_are_checked_too(version):
    from tests.moderation.test_uploads import _png_bomb

    bombs = Server("127.0.0.1", body=_png_bomb())
    try:
        with pytest.raises(netguard.UnsafeURL, match="pixels"):
            uploads.inline_urls(version, {"prompt": "x", "image": bombs.url})
    finally:
        bombs.close()


def test_an_image_url_inside_is_refused_when_the_prediction_is_created(site, version, api, inside):
    response = api.post("/v1/predictions", json={"version": version.id, "input": {"prompt": "x", "image": inside.url}})

    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == "input.image"
    assert response.json()["invalid_fields"][0]["description"] == "Could not fetch image."
    assert not Prediction.objects.exists() and inside.requests == []


def test_a_webhook_inside_is_refused_when_the_prediction_is_created(site, version, api, inside):
    response = api.post(
        "/v1/predictions", json={"version": version.id, "input": {"prompt": "x"}, "webhook": inside.url}
    )

    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == "webhook"


def test_a_webhook_whose_host_moved_inside_is_not_sent(make_prediction, alice, inside):
    from tasks.predictions import send_webhook

    prediction = make_prediction(owner=alice)
    Prediction.objects.filter(pk=prediction.pk).update(webhook=inside.url)

    send_webhook.apply(args=[prediction.id, "completed"])

    assert inside.requests == []


@pytest.fixture
def lora_version(transactional_db):
    """A version with text inputs a model server downloads: `lora` (known by
    its name, as in Replicate's schemas) and `style`, which the schema declares."""
    import copy

    from tests.moderation.conftest import SCHEMA, _version

    openapi = copy.deepcopy(SCHEMA)
    inputs = openapi["components"]["schemas"]["Input"]
    inputs["properties"]["lora"] = {"type": "string", "title": "Lora", "x-order": 50}
    inputs["properties"]["style"] = {"type": "string", "title": "Style", "x-order": 51}
    inputs["x-lightbox-url-inputs"] = ["style"]
    version = _version("local", "lora-model", "cog", "http://127.0.0.1:9")
    version.openapi_schema = openapi
    version.save()
    return version


def _closed_port(host):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def test_a_lora_inside_is_refused_alike_whether_its_port_is_open_or_closed(site, api, lora_version, inside):
    answers = []
    for port in (inside.httpd.server_port, _closed_port("127.0.0.2")):
        response = api.post(
            "/v1/predictions",
            json={
                "version": lora_version.id,
                "input": {"prompt": "x", "lora": f"http://127.0.0.2:{port}/x.safetensors"},
            },
        )
        assert response.status_code == 422
        [field] = response.json()["invalid_fields"]
        answers.append((field["field"], field["description"]))

    assert answers[0] == answers[1] == ("input.lora", "Could not fetch lora.")
    assert not Prediction.objects.exists() and inside.requests == []


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.2:6379/x.safetensors",
        "http://[::1]/x",
        "https://169.254.169.254/latest/",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "data:application/octet-stream;base64,AAAA",
        "/etc/passwd",
        "../../etc/passwd",
        "~/x.safetensors",
        "C:\\loras\\x",
    ],
)
@pytest.mark.parametrize("field", ["lora", "style"])
def test_text_inputs_a_server_downloads_take_only_public_http_urls_or_names(lora_version, alice, field, value):
    with pytest.raises(schema.InputError) as refused:
        predictions.start(lora_version, {"prompt": "x", field: value}, owner=alice)
    assert list(refused.value.errors) == [field]
    assert not Prediction.objects.exists()


def test_a_lora_by_name_or_public_url_is_accepted(lora_version, alice, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"loras.example": ["93.184.216.34"]}))
    predictions.start(lora_version, {"prompt": "x", "lora": "my-style", "style": "ink.safetensors"}, owner=alice)
    predictions.start(lora_version, {"prompt": "x", "lora": "https://loras.example/a.safetensors"}, owner=alice)
    assert Prediction.objects.count() == 2


def test_refusals_do_not_tell_a_name_that_does_not_resolve_from_a_private_one(site, api, version, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"inside.example": ["10.0.0.5"], "missing.example": None}))
    texts = set()
    for host in ("inside.example", "missing.example", "127.0.0.2"):
        for body in (
            {"input": {"prompt": "x", "image": f"http://{host}/a.png"}},
            {"input": {"prompt": "x"}, "webhook": f"http://{host}/hook"},
        ):
            response = api.post("/v1/predictions", json={"version": version.id, **body})
            assert response.status_code == 422
            texts.add(response.json()["detail"].split(": ", 1)[1])

    assert texts == {"Could not fetch image.", "Could not fetch webhook."}


def test_a_failed_fetch_for_a_model_server_says_only_could_not_fetch(version):
    # An allowed host: a closed port, a 404 and a refused redirect read the same.
    missing = Server("127.0.0.1", body=b"")
    missing.httpd.RequestHandlerClass.do_GET = lambda handler: handler.send_error(404)
    redirecting = Server("127.0.0.1", redirect_to="http://127.0.0.2/inside.png")
    try:
        texts = set()
        for url in (f"http://127.0.0.1:{_closed_port('127.0.0.1')}/a.png", missing.url, redirecting.url):
            with pytest.raises(netguard.UnsafeURL) as failed:
                uploads.inline_urls(version, {"prompt": "x", "image": url})
            texts.add(failed.value.message("an input"))
    finally:
        missing.close()
        redirecting.close()

    assert texts == {"Could not fetch image."}


def test_a_lora_whose_host_moved_inside_is_not_sent_to_the_model_server(lora_version, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"loras.example": ["10.0.0.5"]}))
    with pytest.raises(netguard.UnsafeURL) as refused:
        uploads.inline_urls(lora_version, {"prompt": "x", "lora": "https://loras.example/a.safetensors"})
    assert refused.value.message("an input") == "Could not fetch lora."


@pytest.mark.e2e
def test_the_cog_server_gets_image_urls_as_data_uris_fetched_through_the_guard(worker, cog_version, alice):
    images = Server("127.0.0.1")
    try:
        prediction = predictions.start(cog_version, {"prompt": "x", "image": images.url}, owner=alice)
        prediction = wait_for_status(prediction.id)
    finally:
        images.close()

    assert prediction.status == "succeeded", prediction.error
    assert "image 32x24" in prediction.logs
    assert prediction.input["image"] == images.url  # what the user gave is kept
    [(path, headers)] = images.requests  # fetched once, by Lightbox, not by the model server
    assert headers["User-Agent"] == "Lightbox/0.1"


def _data_uri(data):
    import base64

    return "data:image/png;base64," + base64.b64encode(data).decode()


def _resolver(table):
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host in table:
            if table[host] is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]
        return real(host, port, *args, **kwargs)

    return resolve
