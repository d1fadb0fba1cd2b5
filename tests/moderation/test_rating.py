"""Content rating: the local server's safety checker verdicts are stored as
ratings, with blurred thumbnails; turning the checker off needs a permission;
a blocklist refuses prompts."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage

from app.core import schema
from app.core.logs import nsfw_flags
from app.models import BlockedTerm, Prediction
from app.services import predictions
from tests.conftest import wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.e2e
def test_outputs_the_local_checker_flags_are_stored_nsfw_with_a_blurred_thumbnail(worker, cog_version, alice):
    prediction = predictions.start(cog_version, {"prompt": "two", "num_outputs": 3, "nsfw": "1"}, owner=alice)

    prediction = wait_for_status(prediction.id)

    assert prediction.status == "succeeded", prediction.error
    outputs = list(prediction.outputs.all())
    assert [o.rating for o in outputs] == ["safe", "nsfw", "safe"]
    assert outputs[1].blurred_thumbnail and not outputs[0].blurred_thumbnail


def test_the_checkers_verdict_is_read_from_its_log_line():
    logs = "step 1/1\nnsfw_content_detected: [false, true]\n"
    assert nsfw_flags(logs) == [False, True]
    assert nsfw_flags("nsfw_content_detected: [true]\nnsfw_content_detected: [false]") == [False]
    assert nsfw_flags("step 1/1") == []
    assert nsfw_flags("nsfw_content_detected: [garbage") == []


def test_turning_the_safety_checker_off_needs_the_permission(version, alice):
    with pytest.raises(schema.InputError) as refused:
        predictions.start(version, {"prompt": "x", "disable_safety_checker": True}, owner=alice)
    assert "disable_safety_checker" in refused.value.errors
    with pytest.raises(schema.InputError):
        predictions.start(version, {"prompt": "x", "disable_safety_checker": True}, owner=None)

    alice.user_permissions.add(Permission.objects.get(codename="disable_safety_checker"))
    alice = type(alice).objects.get(pk=alice.pk)  # permissions are cached per instance
    prediction = predictions.start(version, {"prompt": "x", "disable_safety_checker": True}, owner=alice)
    assert prediction.input["disable_safety_checker"] is True
    # Leaving it on needs nothing.
    predictions.start(version, {"prompt": "x", "disable_safety_checker": False}, owner=None)


def test_the_blocklist_refuses_prompts_with_a_clear_field_error(version, alice):
    BlockedTerm.objects.create(term="Forbidden Thing")

    with pytest.raises(schema.InputError) as refused:
        predictions.start(version, {"prompt": "a forbidden  thing", "negative_prompt": "Forbidden-thing!"}, owner=alice)
    assert set(refused.value.errors) == {"prompt", "negative_prompt"}
    assert "blocked term (Forbidden Thing)" in refused.value.errors["negative_prompt"][0]
    assert not Prediction.objects.exists()
    # Whole words only: a longer word that contains it is fine.
    predictions.start(version, {"prompt": "forbidden things"}, owner=alice)


def test_the_api_answers_a_blocked_prompt_with_a_422_naming_the_field(site, version, api):
    BlockedTerm.objects.create(term="nope")

    response = api.post("/v1/predictions", json={"version": version.id, "input": {"prompt": "NOPE, really"}})

    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == "input.prompt"
    assert "blocked term" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_deleting_an_nsfw_prediction_deletes_its_blurred_thumbnail_too(make_prediction, alice):
    """Every stored file of an output goes with it: the delete signal forgot the
    blurred thumbnail, which stayed in storage after the prediction or account."""
    prediction = make_prediction(owner=alice, ratings=("nsfw",))
    output = prediction.outputs.get()
    names = [field_file.name for field_file in (output.file, output.thumbnail, output.blurred_thumbnail)]
    assert all(default_storage.exists(name) for name in names)

    prediction.delete()

    assert not any(default_storage.exists(name) for name in names)
