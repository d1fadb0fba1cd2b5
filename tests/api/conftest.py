import httpx
import pytest
import replicate


@pytest.fixture
def client(site, alice_token):
    """The official Python client, signed in as alice."""
    return replicate.Client(api_token=alice_token, base_url=site.url)


@pytest.fixture
def bob_token(bob):
    from app.models import ApiToken

    return ApiToken.issue(bob)[1]


@pytest.fixture
def bob_client(site, bob_token):
    return replicate.Client(api_token=bob_token, base_url=site.url)


@pytest.fixture
def bob_api(site, bob_token):
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {bob_token}"}, timeout=70) as http:
        yield http
