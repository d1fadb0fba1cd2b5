"""Who sees what, over the API and stored images: anonymous, the owner,
another user, a moderator and plain staff, against public, unlisted, private
and hidden items. Private and hidden items show to their owner and
moderators only."""

import pytest
from django.test import Client

from app.models import ApiToken, BenchmarkRun, Comparison, Grid, PromptSet

from .conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

STATES = ["public", "unlisted", "private", "hidden"]
# What each role gets for GET /v1/predictions/{id} (anonymous: no token, 401).
API = {
    "owner": {"public": 200, "unlisted": 200, "private": 200, "hidden": 200},
    "other": {"public": 200, "unlisted": 200, "private": 404, "hidden": 410},
    "moderator": {"public": 200, "unlisted": 200, "private": 200, "hidden": 200},
    "staff": {"public": 200, "unlisted": 200, "private": 404, "hidden": 410},
}
# What each role gets for the image itself (a session, no signed URL).
MEDIA = {
    "anonymous": {"public": 200, "unlisted": 200, "private": 404, "hidden": 410},
    **{role: {state: 200 if code == 200 else code for state, code in codes.items()} for role, codes in API.items()},
}


@pytest.fixture
def people(alice, bob, moderator, staff):
    return {"owner": alice, "other": bob, "moderator": moderator, "staff": staff, "anonymous": None}


@pytest.fixture
def items(make_prediction, alice):
    made = {
        state: make_prediction(owner=alice, visibility=state if state != "hidden" else "unlisted") for state in STATES
    }
    made["hidden"].hide("Hidden by a moderator: test")
    return made


def test_the_api(people, items):
    for role, expected in API.items():
        headers = {"Authorization": f"Bearer {ApiToken.issue(people[role])[1]}"}
        for state, status in expected.items():
            response = Client().get(f"/v1/predictions/{items[state].id}", headers=headers)
            assert response.status_code == status, (role, state)
            if status == 200:
                assert ("moderation" in response.json()) == (state == "hidden")
        # Cancel and the list are the owner's alone.
        others = [p.id for p in items.values()]
        listed = [p["id"] for p in Client().get("/v1/predictions", headers=headers).json()["results"]]
        assert set(listed) == (set(others) if role == "owner" else set())
        if role != "owner":
            assert Client().post(f"/v1/predictions/{items['public'].id}/cancel", headers=headers).status_code == 404
    assert Client().get(f"/v1/predictions/{items['public'].id}").status_code == 401


# Each kind /v1 looks up by id: its noun in a problem's detail, and the
# action only its owner may take.
KINDS = {
    "predictions": ("Prediction", "cancel"),
    "comparisons": ("Comparison", None),
    "grids": ("Grid", "cancel"),
    "benchmarks": ("Benchmark run", "stop"),
}


def test_every_kind_the_api_looks_up_answers_alike(people, alice, make_prediction):
    """An item and its bundle: another user finds a private one not there and
    a hidden one gone, a moderator sees a hidden one, and only the owner may
    cancel or stop one."""
    prompt_set = PromptSet.objects.create(slug="mine", name="Mine", owner=alice)
    make = {
        "predictions": lambda visibility: make_prediction(owner=alice, visibility=visibility),
        "comparisons": lambda visibility: Comparison.objects.create(owner=alice, visibility=visibility),
        "grids": lambda visibility: Grid.objects.create(owner=alice, visibility=visibility),
        "benchmarks": lambda visibility: BenchmarkRun.objects.create(
            owner=alice, visibility=visibility, prompt_set=prompt_set
        ),
    }
    bob = {"Authorization": f"Bearer {ApiToken.issue(people['other'])[1]}"}
    moderator = {"Authorization": f"Bearer {ApiToken.issue(people['moderator'])[1]}"}
    for kind, (what, action) in KINDS.items():
        public, private, hidden = make[kind]("public"), make[kind]("private"), make[kind]("unlisted")
        hidden.hide("Hidden by a moderator: test")
        for path in (f"/v1/{kind}/{{}}", f"/v1/{kind}/{{}}/bundle"):
            gone = Client().get(path.format(hidden.pk), headers=bob)
            assert gone.status_code == 410, path
            assert gone.json()["detail"] == f"This {what.lower()} was hidden by moderators."
            missing = Client().get(path.format(private.pk), headers=bob)
            assert missing.status_code == 404, path
            assert missing.json()["detail"] == f"{what} {private.pk} does not exist or is not yours."
        assert Client().get(f"/v1/{kind}/{public.pk}", headers=bob).status_code == 200
        assert Client().get(f"/v1/{kind}/{hidden.pk}", headers=moderator).status_code == 200
        if action:
            for someone in (bob, moderator):
                assert Client().post(f"/v1/{kind}/{public.pk}/{action}", headers=someone).status_code == 404


def test_stored_images(people, items):
    for role, expected in MEDIA.items():
        client = Client()
        if people[role] is not None:
            login(client, people[role])
        for state, status in expected.items():
            output = items[state].outputs.get()
            for url in (output.file.url, output.thumbnail.url):
                assert client.get(url).status_code == status, (role, state, url)
