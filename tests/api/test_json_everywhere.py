"""Every answer under /v1 is JSON (RFC 7807 for errors), whatever the path,
the method or what went wrong: Replicate's clients read nothing else."""

import httpx
import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == status


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v1/files/abc/def/ghi", "/v1", "/v1/"])
def test_an_unknown_path_is_a_json_404_with_any_method(site, method, path):
    # No token and no CSRF cookie, as an API client sends: not Django's CSRF page.
    response = httpx.request(method, site.url + path, json={"a": 1})

    assert_problem(response, 404)
    assert path in response.json()["detail"]


def test_a_form_post_without_csrf_is_answered_as_an_api(site, alice_token):
    response = httpx.post(
        site.url + "/v1/no-such-endpoint", data={"a": "b"}, headers={"Authorization": f"Bearer {alice_token}"}
    )

    assert_problem(response, 404)


def test_a_broken_multipart_body_is_a_json_400(api):
    # A multipart body without a boundary, as a hand-written client may send.
    response = api.post("/v1/files", content=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data"})

    assert_problem(response, 400)


def test_an_error_inside_a_view_is_a_json_500(api, monkeypatch):
    from app.services import api_json

    def broken(user):
        raise RuntimeError("boom")

    monkeypatch.setattr(api_json, "account_json", broken)
    response = api.get("/v1/account")

    assert_problem(response, 500)
    assert "boom" not in response.text


def test_pages_keep_their_html_404(site):
    response = httpx.get(site.url + "/no-such-page")

    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")


def test_a_body_larger_than_any_endpoint_takes_is_a_json_413_unread(site):
    import json
    import socket

    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999999\r\n\r\n")
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()

    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and "content-type: application/problem+json" in head.lower()
    # The body may come chunked: the problem is the JSON object in it.
    assert json.loads(body[body.index("{") : body.rindex("}") + 1])["status"] == 413


def test_a_database_that_does_not_answer_is_a_503_to_retry_not_a_500(api, monkeypatch):
    from django.db import OperationalError

    from app.views import api as api_views
    from app.views import gallery

    def lost(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api_views, "_list", lost)
    response = api.get("/v1/predictions")

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "Try again" in response.json()["detail"]

    monkeypatch.setattr(gallery, "_filtered", lost)
    page = api.get("/gallery")

    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "cannot reach its database" in page.text and "text/html" in page.headers["Content-Type"]
