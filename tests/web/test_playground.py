"""The playground at /: a form built from the chosen versions' schemas."""

import base64
import copy

import pytest
from django.test import override_settings

from app.models import Comparison, Prediction
from app.services import comparisons
from tasks.predictions import refresh_versions
from tests.web.conftest import make_prediction, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_builds_the_common_fields_once_from_the_schemas(client_alice, sd_version, turbo_version):
    response = client_alice.get("/", {"version": [sd_version.id, turbo_version.id]})

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('name="prompt"') == 1
    assert html.count('name="width"') == 1
    # Each field's description is its help, said once: per model only where they differ.
    assert "Width in pixels. Default 64 for tiny-sd; 512 for sd-turbo. From 16 to 1024." in html
    assert "Guidance. Default 7.5 for tiny-sd; 0 for sd-turbo. From 0 to 20." in html
    # The browser knows the range: the union of the versions' ranges.
    assert 'name="num_inference_steps"' in html and 'min="1" max="100"' in html
    # A required prompt has no default; a field only one version has is said once.
    assert "Prompt</label>" in html and "What to draw.</p>" in html
    # A field several versions have (a LoRA, here a step delay) is shown once.
    assert html.count('name="step_delay"') == 1
    assert "local/tiny-sd: default" not in html
    # A field only one chosen version has goes under its own options, said as such.
    html = client_alice.get("/", {"version": sd_version.id}).content.decode()
    assert f'name="{sd_version.id[:12]}-step_delay"' in html
    assert "More options for local/tiny-sd only" in html


def test_a_field_only_some_versions_have_is_shown_and_says_so(client_alice, sd_version, turbo_version):
    response = client_alice.get("/", {"version": [sd_version.id, turbo_version.id]})

    assert "Not used by sd-turbo." in response.content.decode()  # negative_prompt, scheduler


def test_the_fields_region_alone_for_htmx(client_alice, sd_version):
    response = client_alice.get("/", {"version": sd_version.id}, headers={"HX-Request": "true", "HX-Target": "fields"})

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="fields"')
    assert "<html" not in html


def test_anonymous_visitors_see_what_lightbox_is_and_recent_public_comparisons(client, alice, sd_version):
    for prompt, visibility in (("a public heron", "public"), ("an unlisted owl", "unlisted")):
        comparison = Comparison.objects.create(owner=alice, input={"prompt": prompt}, seed=1, visibility=visibility)
        make_prediction(sd_version, owner=alice, prompt=prompt, visibility=visibility, comparison=comparison)

    html = client.get("/").content.decode()

    assert "Write a prompt once and run it on several image models" in html
    assert "Sign up to run models" in html and "Recent public comparisons" in html
    assert "a public heron" in html and "an unlisted owl" not in html
    assert 'name="prompt"' not in html  # no disabled form

    response = client.post("/run", {"version": sd_version.id, "prompt": "a fox"})

    assert response.status_code == 302 and response["Location"].startswith("/account/login/")
    assert Comparison.objects.count() == 2


@override_settings(ANONYMOUS_RUNS=True)
def test_a_setting_allows_anonymous_runs(client, sd_version):
    response = client.post("/run", {"version": sd_version.id, "prompt": "a fox"})

    comparison = Comparison.objects.get()
    assert response["Location"] == f"/c/{comparison.id}"
    assert comparison.owner is None


def test_run_creates_a_comparison_with_one_prediction_per_version(client_alice, alice, sd_version, turbo_version):
    response = client_alice.post(
        "/run",
        {
            "version": [sd_version.id, turbo_version.id],
            "prompt": "a red fox",
            "num_inference_steps": "12",
            "seed": "77",
            "step_delay": "0.5",
        },
    )

    comparison = Comparison.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/c/{comparison.id}"
    predictions = {p.version_id: p for p in comparison.predictions.all()}
    assert predictions[sd_version.id].input == {
        "prompt": "a red fox",
        "num_inference_steps": 12,
        "seed": 77,
        "step_delay": 0.5,
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "guidance_scale": 7.5,
        "scheduler": "K_EULER",
        "num_outputs": 1,
    }
    # 12 is past sd-turbo's maximum: its maximum, the nearest it takes.
    assert predictions[turbo_version.id].input["num_inference_steps"] == 4
    assert predictions[turbo_version.id].input["step_delay"] == 0.5
    assert comparison.visibility == "unlisted"


def test_publish_makes_the_comparison_public(client_alice, sd_version):
    client_alice.post("/run", {"version": sd_version.id, "prompt": "a fox", "publish": "on"})

    comparison = Comparison.objects.get()
    assert comparison.visibility == "public"
    assert comparison.predictions.get().visibility == "public"


def test_an_uploaded_image_goes_in_as_a_data_uri(client_alice, sd_version):
    props = sd_version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    props["image"] = {"type": "string", "format": "uri", "title": "Image", "description": "Input image.", "x-order": 9}
    sd_version.save()
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("in.png", png_bytes(), content_type="image/png")
    client_alice.post("/run", {"version": sd_version.id, "prompt": "a fox", "image": upload})

    image = Comparison.objects.get().predictions.get().input["image"]
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1]) == png_bytes()


def test_errors_are_shown_per_model_and_nothing_runs(client_alice, sd_version):
    response = client_alice.post("/run", {"version": sd_version.id, "prompt": ""})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Comparison.objects.exists()


def test_an_unavailable_version_is_reported_by_name(client_alice, sd_version, turbo_version):
    turbo_version.available = False
    turbo_version.unavailable_reason = "The model server is still starting."
    turbo_version.save()

    response = client_alice.post("/run", {"version": [sd_version.id, turbo_version.id], "prompt": "a fox"})

    assert "local/sd-turbo: unavailable: The model server is still starting." in response.content.decode()
    assert not Comparison.objects.exists()


def test_remix_loads_a_comparisons_input_into_the_form(client_alice, alice, sd_version, turbo_version):
    comparison = comparisons.start(
        [sd_version, turbo_version], {"prompt": "a blue heron", "num_inference_steps": 9}, owner=alice, seed=5
    )

    html = client_alice.get("/", {"remix": comparison.id}).content.decode()

    assert "a blue heron</textarea>" in html
    assert 'name="num_inference_steps" value="9"' in html
    assert 'name="seed" value="5"' in html
    assert html.count("checked") == 2


def test_the_page_reads_stored_availability_which_the_beat_refreshes(client_alice, sd_version, turbo_version):
    client = client_alice
    # As after a model server died: the stored state still says available.
    Version = type(sd_version)
    Version.objects.filter(pk=turbo_version.pk).update(available=True, checked_at=None)

    # A page asks no model server (it would wait on a dead one).
    client.get("/")
    turbo_version.refresh_from_db()
    assert turbo_version.available and turbo_version.checked_at is None

    refresh_versions()

    turbo_version.refresh_from_db()
    assert not turbo_version.available and "could not connect" in turbo_version.unavailable_reason
    html = client.get("/").content.decode()
    assert "1 offline model: why, and how to start it" in html
    assert "does not answer (could not connect)" in html
    # Only the available one is chosen by default; the offline one cannot be.
    assert html.count("checked") == 1 and html.count('disabled id="offline-') == 1


def test_a_lora_url_inside_is_refused_in_the_form_and_nothing_runs(client_alice, sd_version):
    from app.forms import advanced_name

    schema = copy.deepcopy(sd_version.openapi_schema)
    schema["components"]["schemas"]["Input"]["properties"]["lora"] = {"type": "string", "title": "Lora"}
    sd_version.openapi_schema = schema
    sd_version.save()

    response = client_alice.post(
        "/run",
        {
            "version": sd_version.id,
            "prompt": "a fox",
            advanced_name(sd_version, "lora"): "http://127.0.0.2:6379/x.safetensors",
        },
    )

    assert response.status_code == 400
    assert "Could not fetch lora." in response.content.decode()
    assert not Comparison.objects.exists() and not Prediction.objects.exists()


def test_values_no_chosen_version_takes_are_refused_with_field_errors(client_alice, sd_version, turbo_version):
    response = client_alice.post(
        "/run",
        {
            "version": [sd_version.id, turbo_version.id],
            "prompt": "a fox",
            "width": "10",
            "num_inference_steps": "101",
            "guidance_scale": "-5",
            "num_outputs": "0",
        },
    )

    html = response.content.decode()
    assert response.status_code == 400
    # One summary at the top, each line a link to its field.
    assert "Nothing was run.</strong> Fix 4 problems:" in html
    assert '<a href="#id_width">Width: Must be from 16 to 1024.</a>' in html
    assert (
        '<a href="#id_num_inference_steps">Num Inference Steps: Must be from 1 to 100. (1 to 4 for sd-turbo; 1 to 100 for tiny-sd.)</a>'
        in html
    )
    assert '<a href="#id_guidance_scale">Guidance Scale: Must be from 0 to 20.</a>' in html
    assert '<a href="#id_num_outputs">Num Outputs: Must be from 1 to 4.</a>' in html
    assert not Comparison.objects.exists()


def test_seed_minus_one_means_random(client_alice, sd_version):
    client_alice.post("/run", {"version": sd_version.id, "prompt": "a fox", "seed": "-1"})

    seed = Comparison.objects.get().seed
    assert seed is not None and seed >= 0
    assert Comparison.objects.get().predictions.get().input["seed"] == seed


def _with_image_input(version):
    props = version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    props["mask"] = {"type": "string", "format": "uri", "title": "Mask", "description": "Mask.", "x-order": 12}
    version.save()
    return version


def test_a_form_that_comes_back_keeps_its_image_and_painted_mask(client_alice, sd_version):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from app.core import uploads

    _with_image_input(sd_version)
    painted = uploads.clean_image(png_bytes(color=(255, 255, 255))).data_uri
    upload = SimpleUploadedFile("in.png", png_bytes(), content_type="image/png")

    response = client_alice.post(
        "/run", {"version": sd_version.id, "prompt": "", "image": upload, "mask_painted": painted}
    )

    html = response.content.decode()
    assert response.status_code == 400
    kept = uploads.clean_image(png_bytes()).data_uri
    assert f'<input type="hidden" name="image_kept" value="{kept}"' in html
    assert f'<input type="hidden" name="mask_painted" value="{painted}"' in html
    assert f'<img src="{kept}" alt="The image to use">' in html

    # Sent again as it came back (the file input empty): the kept image runs.
    client_alice.post(
        "/run", {"version": sd_version.id, "prompt": "a fox", "image_kept": kept, "mask_painted": painted}
    )
    prediction = Comparison.objects.get().predictions.get()
    assert prediction.input["image"] == kept and prediction.input["mask"] == painted


def test_remix_keeps_the_image_and_mask(client_alice, alice, sd_version):
    from app.core import uploads

    _with_image_input(sd_version)
    image = uploads.clean_image(png_bytes()).data_uri
    comparison = comparisons.start([sd_version], {"prompt": "a heron", "image": image, "mask": image}, owner=alice)

    html = client_alice.get("/", {"remix": comparison.id}).content.decode()

    assert f'<input type="hidden" name="image_kept" value="{image}"' in html
    assert f'<input type="hidden" name="mask_kept" value="{image}"' in html
    assert '<details class="image-inputs" open>' in html


def test_an_output_goes_to_image_to_image(client_alice, alice, bob, sd_version):
    from tests.web.conftest import make_prediction

    prediction = make_prediction(sd_version, owner=alice, prompt="a red kite", visibility="private")

    html = client_alice.get("/", {"from": prediction.id, "output": "0"}).content.decode()

    assert 'name="image_kept" value="data:image/png;base64,' in html
    assert "a red kite</textarea>" in html
    client_alice.force_login(bob)  # not his to open
    assert client_alice.get("/", {"from": prediction.id, "output": "0"}).status_code == 404


def test_a_bad_image_is_named_in_the_summary_in_words(client_alice, sd_version, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.UPLOAD_MAX_PIXELS = 64 * 64
    _with_image_input(sd_version)
    for upload, message in (
        (
            SimpleUploadedFile("notes.txt", b"not an image", content_type="text/plain"),
            "Upload an image: PNG, JPEG, WEBP.",
        ),
        (
            SimpleUploadedFile("big.png", png_bytes(size=(96, 64))),
            "The image is 96 x 64 pixels; the largest allowed is 64 x 64 pixels.",
        ),
    ):
        html = client_alice.post(
            "/run", {"version": sd_version.id, "prompt": "a fox", "image": upload}
        ).content.decode()
        assert f'<a href="#id_image">Image: {message}</a>' in html
        assert '<details class="image-inputs" open>' in html
    assert not Comparison.objects.exists()


def test_an_offline_version_asked_for_is_not_chosen_and_says_why(client_alice, sd_version, turbo_version):
    turbo_version.set_availability(False, "The model server at http://127.0.0.1:9 does not answer (could not connect).")

    html = client_alice.get("/", {"version": [sd_version.id, turbo_version.id]}).content.decode()

    assert "local/sd-turbo is offline, so it is not chosen." in html
    assert "Run 1 model" in html
    assert f'value="{turbo_version.id}"' not in html  # nothing to tick
    assert "does not answer (could not connect)." in html
    assert 'href="/help/running-models"' in html


def test_the_help_page_shows_the_readmes_section(client):
    html = client.get("/help/running-models").content.decode()

    assert "From the README: Running real models" in html
    assert "python manage.py serve_model NAME" in html
