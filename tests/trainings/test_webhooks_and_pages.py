"""A training's webhooks to its caller are signed as predictions' are; the
pages say what a fine-tune is and refuse what is not yours."""

import json

import pytest
from standardwebhooks.webhooks import Webhook

from tests.api.test_outbound_webhooks import receiver  # noqa: F401  (a fixture)
from tests.conftest import wait_until
from tests.trainings.conftest import data_uri, image_zip

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_completed_webhook_is_signed_and_names_the_new_version(
    worker,
    base_version,
    destination,
    api,
    receiver,  # noqa: F811
):
    secret = api.get("/v1/webhooks/default/secret").json()["key"]
    response = api.post(
        f"/v1/models/local/tiny-base/versions/{base_version.id}/trainings",
        json={
            "destination": "alice/my-face",
            "input": {"input_images": data_uri(image_zip(2)), "max_train_steps": 2},
            "webhook": receiver.url,
            "webhook_events_filter": ["completed"],
        },
    )
    assert response.status_code == 201, response.text
    wait_until(lambda: receiver.calls, timeout=60, message="the completed webhook")
    headers, body = receiver.calls[-1]
    Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    payload = json.loads(body)
    assert payload["id"] == response.json()["id"] and payload["status"] == "succeeded"
    assert payload["output"]["version"].startswith("alice/my-face:")
    assert len(receiver.calls) == 1  # completed only, as filtered


def test_pages_show_a_fine_tune_and_keep_trainings_private(client, base_version, destination, alice, bob):
    from app.models import Model, Training, Version

    fine = Version.objects.create(
        model=destination,
        backend="cog",
        location=base_version.location,
        openapi_schema=base_version.openapi_schema,
        base=base_version,
        trigger_word="zqx",
        available=True,
    )
    client.force_login(alice)
    page = client.get(f"/?version={fine.id}")
    assert 'placeholder="a photo of zqx"' in page.content.decode()
    model_page = client.get("/models/alice/my-face").content.decode()
    assert "Fine-tunes" in model_page and "local/tiny-base" in model_page
    his = Training.objects.create(
        version=base_version, destination=Model.objects.create(owner="bob", name="b", user=bob), owner=bob
    )
    assert client.get(f"/t/{his.id}").status_code == 404
    assert client.post(f"/t/{his.id}/cancel").status_code == 404
    assert Training.objects.get(pk=his.pk).status == "starting"
    # Staff read it in the admin, what it is first.
    alice.is_staff = alice.is_superuser = True
    alice.save()
    admin_page = client.get(f"/admin/app/training/{his.id}/change/").content.decode()
    labels = [
        admin_page.index(f"<label>{label}:</label>") for label in ("Id", "Owner", "Version", "Destination", "Cost")
    ]
    assert labels == sorted(labels)
    alice.is_staff = alice.is_superuser = False
    alice.save()
    # The estimate follows the steps chosen (an htmx partial).
    estimate = client.get(f"/fine-tune?part=estimate&base={base_version.id}&steps=12", HTTP_HX_REQUEST="true")
    text = estimate.content.decode()
    assert "12 steps" in text and "its default: 4" in text and "<html" not in text
    client.logout()
    assert client.get("/fine-tune").status_code == 302  # to the login page
