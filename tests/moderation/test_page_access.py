"""Who sees what on the pages: anonymous, the owner, another user, a moderator
and plain staff, against public, unlisted, private and hidden items. A private
or hidden item shows to its owner and moderators only, in no listing or search
result for anyone else, and never in a link preview (Open Graph) that a chat
app could fetch without signing in. (The API and stored images:
test_authorization.py.)"""

import re

import pytest
from django.test import Client

from app.models import Comparison

from .conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

STATES = ["public", "unlisted", "private", "hidden"]
ROLES = ["anonymous", "owner", "other", "moderator", "staff"]
SHARED = {"public": 200, "unlisted": 200, "private": 404, "hidden": 410}
EVERYTHING = {state: 200 for state in STATES}
# The item's own page, /p/<id> and /c/<id>.
PAGE = {"anonymous": SHARED, "owner": EVERYTHING, "other": SHARED, "moderator": EVERYTHING, "staff": SHARED}
OG_IMAGE = re.compile(r'<meta property="og:image" content="([^"]+)"')


@pytest.fixture
def people(alice, bob, moderator, staff):
    return {"anonymous": None, "owner": alice, "other": bob, "moderator": moderator, "staff": staff}


@pytest.fixture
def items(make_prediction, alice):
    """Per state, a comparison and its prediction, each with a word of its own in the prompt."""
    made = {}
    for state in STATES:
        visibility = "unlisted" if state == "hidden" else state
        comparison = Comparison.objects.create(
            owner=alice, visibility=visibility, input={"prompt": f"a quokka, {state}zz"}
        )
        prediction = make_prediction(owner=alice, visibility=visibility, comparison=comparison)
        prediction.input = {"prompt": f"a quokka on a beach, {state}zz", "seed": 1}
        prediction.save(update_fields=["input"])
        if state == "hidden":
            comparison.hide("Hidden by a moderator: test")
        made[state] = (prediction, comparison)
    return made


def _client(person):
    return login(Client(), person) if person else Client()


def _shown(body, items):
    """The states whose prediction (or comparison) a page mentions."""
    return {
        state for state, (prediction, comparison) in items.items() if prediction.id in body or comparison.id in body
    }


def test_each_item_page(people, items):
    for role in ROLES:
        client = _client(people[role])
        for state, (prediction, comparison) in items.items():
            for url in (f"/p/{prediction.id}", f"/c/{comparison.id}"):
                response = client.get(url)
                assert response.status_code == PAGE[role][state], (role, state, url)
                body = response.content.decode()
                if response.status_code != 200:
                    # The refusal names nothing of the item.
                    assert f"{state}zz" not in body and not OG_IMAGE.search(body), (role, state, url)


def test_listings_and_search_show_only_what_is_public(people, items):
    listings = ["/gallery", "/gallery?status=any", "/gallery?q=quokka", "/models/local/idle-model"]
    listings += [f"/gallery?q={state}zz" for state in STATES]
    for role in ROLES:
        client = _client(people[role])
        for url in listings:
            response = client.get(url)
            assert response.status_code == 200, (role, url)
            assert _shown(response.content.decode(), items) <= {"public"}, (role, url)
        assert "public" in _shown(client.get("/gallery?q=quokka").content.decode(), items), role


def test_only_the_owner_lists_their_own_items(people, items):
    for role in ROLES:
        body = _client(people[role]).get("/gallery?mine=1&status=any").content.decode()
        # Signed out, "mine" is the public gallery.
        expected = {"owner": set(STATES), "anonymous": {"public"}}.get(role, set())
        assert _shown(body, items) == expected, role


def test_link_previews_only_for_what_anyone_may_open(people, items):
    """A chat app fetches a shared link's preview image without signing in: a
    page shows one only when that fetch would succeed, and never for a private
    item, even to its owner."""
    anonymous = Client()
    for role in ROLES:
        client = _client(people[role])
        for state, (prediction, comparison) in items.items():
            for url in (f"/p/{prediction.id}", f"/c/{comparison.id}"):
                response = client.get(url)
                if response.status_code != 200:
                    continue
                previews = OG_IMAGE.findall(response.content.decode())
                if state == "private":
                    assert previews == [], (role, url)
                elif state in ("public", "unlisted"):
                    assert previews, (role, state, url)
                for image in previews:
                    expected = 410 if state == "hidden" else 200
                    assert anonymous.get(image.removeprefix("http://testserver")).status_code == expected, (role, url)


# --- A prediction inside a comparison (issue 9, item 5) ------------------------------
# Its card follows the prediction's own rule, whatever the comparison's: one
# its owner made private, or moderators hid, is a placeholder for everyone
# else, with nothing of it (no status, seed, logs, input or images).


@pytest.fixture
def mixed(make_prediction, alice):
    """An unlisted comparison with one shared, one private and one hidden prediction."""
    comparison = Comparison.objects.create(owner=alice, visibility="unlisted", input={"prompt": "three quokkas"})
    made = {}
    for state, seed in (("shared", 1111111), ("private", 2222222), ("hidden", 3333333)):
        prediction = make_prediction(
            owner=alice, visibility="private" if state == "private" else "unlisted", comparison=comparison
        )
        prediction.input = {"prompt": f"a quokka, {state}zz", "seed": seed}
        prediction.logs = f"step 1/1\nlogs of the {state}zz one"
        prediction.save(update_fields=["input", "logs"])
        if state == "hidden":
            prediction.hide("Hidden by reports")
        made[state] = prediction
    return comparison, made


def _leaks(body, prediction):
    """What of `prediction` a body shows: its id, seed, logs, prompt or images."""
    output = prediction.outputs.get()
    found = [
        prediction.id,
        str(prediction.input["seed"]),
        prediction.logs.splitlines()[-1],
        prediction.input["prompt"],
        output.file.name,
        output.thumbnail.name,
    ]
    return [text for text in found if text in body]


def test_a_comparison_shows_only_placeholders_of_what_the_viewer_may_not_open(people, mixed):
    comparison, made = mixed
    for role in ROLES:
        body = _client(people[role]).get(f"/c/{comparison.id}").content.decode()
        assert _leaks(body, made["shared"]), role
        if role in ("owner", "moderator"):
            assert _leaks(body, made["private"]) and _leaks(body, made["hidden"]), role
            continue
        assert _leaks(body, made["private"]) == [] and _leaks(body, made["hidden"]) == [], role
        assert "Private" in body and "Hidden by moderators" in body, role
        assert all("/0.png" not in image or made["shared"].id in image for image in OG_IMAGE.findall(body)), role


def test_a_card_poll_of_a_prediction_the_viewer_may_not_open_gives_a_placeholder(people, mixed):
    comparison, made = mixed
    for role in ("anonymous", "other", "staff"):
        client = _client(people[role])
        for state, placeholder in (("private", "Private"), ("hidden", "Hidden by moderators")):
            prediction = made[state]
            response = client.get(f"/c/{comparison.id}?card={prediction.id}", headers={"HX-Request": "true"})
            body = response.content.decode()
            assert placeholder in body, (role, state)
            assert "succeeded" not in body.lower() and _leaks(body, prediction) == [], (role, state)
    owner = _client(people["owner"])
    for prediction in made.values():
        body = owner.get(f"/c/{comparison.id}?card={prediction.id}", headers={"HX-Request": "true"}).content.decode()
        assert prediction.logs.splitlines()[-1] in body
