"""The comparison page /c/<id>: cards, polling that stops, owner actions."""

import re

import pytest

from app.models import Comparison, Prediction
from app.services import comparisons
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def comparison(alice, sd_version, turbo_version):
    return comparisons.start(
        [sd_version, turbo_version], {"prompt": "a red fox", "num_inference_steps": 8}, owner=alice
    )


def test_it_shows_one_card_per_version_with_every_change(client, comparison):
    response = client.get(f"/c/{comparison.id}")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="card card-starting"') == 2
    assert "local/tiny-sd" in html and "local/sd-turbo" in html
    # What the mapping changed, once above the cards, and the values that ran in the header.
    assert "Not every model took every value" in html
    assert (
        "<strong>local/sd-turbo</strong>: num_inference_steps 8 → 4 (above its maximum 4, the nearest it takes)" in html
    )
    assert (
        f"Seed <code>{comparison.seed}</code> · num_inference_steps <code>8 for tiny-sd · 4 for sd-turbo</code>" in html
    )
    # Running cards poll; without JavaScript the page reloads itself.
    assert html.count('hx-trigger="every 1s"') == 2
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html


def test_a_card_poll_returns_the_card_and_stops_at_a_terminal_state(client, comparison):
    prediction = comparison.predictions.first()
    url = f"/c/{comparison.id}?card={prediction.id}"

    running = client.get(url, headers={"HX-Request": "true"})
    assert running.status_code == 200
    assert (
        running.content.decode().lstrip().startswith(f'<article class="card card-starting" id="card-{prediction.id}"')
    )

    Prediction.objects.filter(pk=prediction.pk).update(status="succeeded")
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    assert "Succeeded" in done.content.decode() and "hx-trigger" not in done.content.decode()


def test_a_private_comparison_is_hidden_from_others(client, bob, comparison):
    comparison.set_visibility("private")
    client.force_login(bob)

    assert client.get(f"/c/{comparison.id}").status_code == 404


def test_an_unlisted_comparison_opens_by_its_link(client, comparison):
    assert client.get(f"/c/{comparison.id}").status_code == 200


def test_the_owner_cancels_all_running_predictions(client_alice, comparison):
    response = client_alice.post(f"/c/{comparison.id}/cancel")

    assert response.status_code == 302
    assert set(comparison.predictions.values_list("status", flat=True)) == {"canceled"}


def test_others_cannot_cancel(client, bob, comparison):
    client.force_login(bob)

    assert client.post(f"/c/{comparison.id}/cancel").status_code == 404
    assert set(comparison.predictions.values_list("status", flat=True)) == {"starting"}


def test_cancel_one_card_with_htmx_returns_the_canceled_card(client_alice, comparison):
    prediction = comparison.predictions.first()

    response = client_alice.post(f"/p/{prediction.id}/cancel", headers={"HX-Request": "true"})

    assert response.status_code == 286
    assert "Canceled" in response.content.decode()
    assert comparison.predictions.filter(status="canceled").count() == 1
    # The other still runs: "Cancel all" stays; once it is canceled too, it goes.
    assert "Cancel all" in response.content.decode()
    last = client_alice.post(f"/p/{comparison.predictions.last().id}/cancel", headers={"HX-Request": "true"})
    assert 'id="cancel-all" class="inline-form" hx-swap-oob="true"' in last.content.decode()
    assert "Cancel all" not in last.content.decode()


def test_rerun_with_the_same_seed(client_alice, comparison):
    response = client_alice.post(f"/c/{comparison.id}/rerun", {"seed": "same"})

    rerun = Comparison.objects.exclude(pk=comparison.pk).get()
    assert response["Location"] == f"/c/{rerun.id}"
    assert rerun.seed == comparison.seed and rerun.input == comparison.input
    assert rerun.predictions.count() == 2


def test_rerun_with_a_new_seed(client_alice, comparison):
    client_alice.post(f"/c/{comparison.id}/rerun", {"seed": "new"})

    rerun = Comparison.objects.exclude(pk=comparison.pk).get()
    assert rerun.seed != comparison.seed


def test_add_a_version_into_the_same_comparison(client_alice, alice, sd_version, turbo_version):
    comparison = comparisons.start([sd_version], {"prompt": "a fox"}, owner=alice)

    client_alice.post(f"/c/{comparison.id}/add", {"version": turbo_version.id})

    assert comparison.predictions.count() == 2
    assert "local/sd-turbo" in client_alice.get(f"/c/{comparison.id}").content.decode()


def test_publish_from_the_page(client_alice, comparison):
    client_alice.post(f"/c/{comparison.id}/visibility", {"visibility": "public"})

    comparison.refresh_from_db()
    assert comparison.visibility == "public"
    assert set(comparison.predictions.values_list("visibility", flat=True)) == {"public"}


def test_delete_takes_the_predictions_and_their_files(client_alice, alice, sd_version):
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "x"}, seed=1)
    prediction = make_prediction(sd_version, owner=alice, comparison=comparison)
    path = prediction.outputs.get().file.path

    client_alice.post(f"/c/{comparison.id}/delete")

    assert not Comparison.objects.exists() and not Prediction.objects.exists()
    import os

    assert not os.path.exists(path)


@pytest.mark.parametrize("count", [2, 6])
def test_the_page_runs_a_constant_number_of_queries(
    client_alice, alice, sd_version, django_assert_max_num_queries, count
):
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "x"}, seed=1)
    for _ in range(count):
        make_prediction(sd_version, owner=alice, comparison=comparison, outputs=2)

    # 6, and one for the signed-in user's unread notices (base.html): not one per card.
    with django_assert_max_num_queries(7):
        response = client_alice.get(f"/c/{comparison.id}")
    assert response.content.decode().count("<article") == count


def test_a_shared_link_previews_the_models_side_by_side(client, alice, sd_version):
    import io
    import re

    from PIL import Image

    comparison = Comparison.objects.create(owner=alice, input={"prompt": "a harbour"}, seed=1)
    make_prediction(sd_version, owner=alice, comparison=comparison)
    make_prediction(sd_version, owner=alice, comparison=comparison)

    html = client.get(f"/c/{comparison.id}").content.decode()

    assert '<meta property="og:title" content="a harbour">' in html
    assert '<meta property="og:description" content="2 models compared on Lightbox">' in html
    assert "{#" not in html and "What a shared link shows" not in html  # the partial's comment stays a comment
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    url = re.search(r'<meta property="og:image" content="http://testserver(/c/[^"]+)"', html).group(1)
    response = client.get(url)
    assert response["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (1200, 630)

    # Two pictures (red), each in its half; between them, the background (JPEG: nearly).
    def red(x, y):
        return image.getpixel((x, y))[0] > 150

    assert red(300, 200) and red(900, 200) and not red(600, 200) and not red(3, 3)


def test_no_preview_of_a_private_comparison(client, alice, sd_version):
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "mine"}, seed=1, visibility="private")
    make_prediction(sd_version, owner=alice, comparison=comparison, visibility="private")

    client.force_login(alice)
    page = client.get(f"/c/{comparison.id}").content.decode()
    assert "og:image" not in page and '<meta name="robots" content="noindex">' in page
    assert client.get(f"/c/{comparison.id}/preview.jpg").status_code == 404


def _card(client, comparison, prediction):
    return client.get(f"/c/{comparison.id}?card={prediction.id}", headers={"HX-Request": "true"})


def test_a_waiting_card_says_its_place_in_the_queue_and_the_usual_time(client_alice, alice, sd_version):
    from datetime import timedelta

    from django.utils import timezone

    for seconds in (2.0, 4.0, 3.0):
        done = make_prediction(sd_version, owner=alice)
        Prediction.objects.filter(pk=done.pk).update(
            predict_time=seconds, input={"prompt": "x", "num_inference_steps": 8}
        )
    earlier = make_prediction(sd_version, owner=alice, status="processing")
    Prediction.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - timedelta(seconds=20))
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "a queue"}, seed=1)
    waiting = make_prediction(sd_version, owner=alice, status="starting", comparison=comparison)
    Prediction.objects.filter(pk=waiting.pk).update(
        created_at=timezone.now() - timedelta(seconds=12), input={"prompt": "a queue", "num_inference_steps": 8}
    )

    html = _card(client_alice, comparison, waiting).content.decode()

    assert "In the queue: 1 prediction ahead of it" in html
    assert "<dt>Elapsed</dt><dd data-elapsed>12 s</dd>" in html
    assert "<dt>Usually takes</dt><dd>3.0 s</dd>" in html
    # No figure while it waits: the bar says "working" without one.
    assert '<progress max="100"  aria-label=' in html


def test_a_running_cards_progress_moves_with_time_and_says_when_it_saves(client_alice, alice, sd_version):
    from datetime import timedelta

    from django.utils import timezone

    for _ in range(3):
        done = make_prediction(sd_version, owner=alice)
        Prediction.objects.filter(pk=done.pk).update(predict_time=10.0)
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "slow"}, seed=1)
    running = make_prediction(sd_version, owner=alice, status="processing", comparison=comparison)
    five_seconds_ago = timezone.now() - timedelta(seconds=5)
    Prediction.objects.filter(pk=running.pk).update(logs="", started_at=five_seconds_ago)

    getting_ready = _card(client_alice, comparison, running).content.decode()
    Prediction.objects.filter(pk=running.pk).update(logs="step 4/4\n")
    saving = _card(client_alice, comparison, running).content.decode()

    assert "the model is getting ready" in getting_ready
    # 5 s (and however long this busy machine took) into a run that usually takes 10 s: half way or more, not done.
    assert 50 <= int(re.search(r'<progress max="100" value="(\d+)"', getting_ready).group(1)) <= 90
    assert "All 4 steps done; saving the images" in saving and 'value="99"' in saving


def test_cancel_all_goes_when_the_last_prediction_ends(client_alice, alice, sd_version):
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "two"}, seed=1)
    first = make_prediction(sd_version, owner=alice, status="processing", comparison=comparison)
    second = make_prediction(sd_version, owner=alice, status="processing", comparison=comparison)
    assert "Cancel all" in client_alice.get(f"/c/{comparison.id}").content.decode()

    Prediction.objects.filter(pk=first.pk).update(status="succeeded")
    one_left = _card(client_alice, comparison, first).content.decode()
    Prediction.objects.filter(pk=second.pk).update(status="canceled")
    none_left = _card(client_alice, comparison, second)

    assert 'id="cancel-all"' in one_left and "Cancel all" in one_left
    assert none_left.status_code == 286
    assert 'id="cancel-all" class="inline-form" hx-swap-oob="true"' in none_left.content.decode()
    assert "Cancel all" not in none_left.content.decode()
    assert "Cancel all" not in client_alice.get(f"/c/{comparison.id}").content.decode()
    answer = client_alice.post(f"/c/{comparison.id}/cancel", follow=True).content.decode()
    assert "Nothing was running: every prediction had already ended." in answer


def test_add_a_version_offers_the_available_ones_first_and_offline_ones_disabled(client_alice, alice, sd_version):
    from tests.web.conftest import make_version, turbo_schema

    comparison = comparisons.start([sd_version], {"prompt": "a red fox"}, owner=alice)
    offline = make_version("local", "sd-1.5", turbo_schema(), location="http://127.0.0.1:9/sd-1.5")
    offline.set_availability(False, "The model server at http://127.0.0.1:9/sd-1.5 does not answer.")
    up = make_version("local", "sd-turbo", turbo_schema())

    html = client_alice.get(f"/c/{comparison.id}").content.decode()

    select = html[html.index('<select name="version"') : html.index("</select>")]
    options = select.split("<option")[1:]
    assert f'value="{up.id}"' in options[0] and "disabled" not in options[0]  # the one preselected
    assert f'value="{offline.id}" disabled' in select
