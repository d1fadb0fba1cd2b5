"""A view that loses the database answers 503 with Retry-After, never a 500."""

import pytest
from django.db import OperationalError


@pytest.fixture
def database_gone(monkeypatch):
    from app.views import api, gallery

    def lost(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api, "_list", lost)
    monkeypatch.setattr(gallery, "_filtered", lost)


def test_api_answers_503_problem_with_retry_after(client, db, alice_token, database_gone):
    response = client.get("/v1/predictions", HTTP_AUTHORIZATION=f"Bearer {alice_token}")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["status"] == 503 and "nothing was changed" in body["detail"]


def test_page_answers_503_page(client, db, database_gone):
    response = client.get("/gallery")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "application/problem+json" not in response["Content-Type"]
