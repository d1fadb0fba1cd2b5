"""Restoring the playground's settings from a PNG or pasted A1111 text: the
form comes back filled, with the model when it is in the catalog, and a list
of what could not be used; bad files get a message at the field."""

from django.core.files.uploadedfile import SimpleUploadedFile

from app.core import images
from tests.web.conftest import make_prediction
from tests.web.pngs import A1111_TEXT, a1111_png, comfyui_png, png


def upload(data, name="image.png"):
    return SimpleUploadedFile(name, data, content_type="image/png")


def test_an_a1111_png_fills_the_form_and_lists_what_it_could_not_use(client_alice, sd_version, turbo_version):
    response = client_alice.post("/restore", {"png": upload(a1111_png()), "version": [turbo_version.id]})
    assert response.status_code == 200
    form = response.context["form"]
    # "Model: tiny-sd" is in the catalog: the form is for it now.
    assert [version.id for version in form.versions] == [sd_version.id]
    assert form.initial["prompt"].startswith("a red fox in fresh snow")
    assert form.initial["negative_prompt"] == "blurry, lowres,\nwatermark"
    assert (form.initial["width"], form.initial["height"]) == (512, 768)
    assert form.initial["num_inference_steps"] == 24
    assert form.initial["guidance_scale"] == 6.5
    assert form.initial["seed"] == 1234567890
    assert "scheduler" not in form.initial
    content = response.content.decode()
    assert "Restored from AUTOMATIC1111" in content
    assert "a red fox in fresh snow, golden hour," in content  # in the prompt's textarea
    # tiny-sd offers DDIM, K_EULER and PNDM, not DPM++ 2M Karras.
    assert "<strong>scheduler</strong>: KarrasDPM: not offered by tiny-sd" in content
    assert "<strong>Clip skip</strong>: 2" in content
    assert "<strong>Model hash</strong>: 6ce0161689" in content


def test_pasted_text_and_a_model_not_in_the_catalog_keeps_the_chosen_models(client_alice, sd_version, turbo_version):
    text = A1111_TEXT.replace("Model: tiny-sd", "Model: juggernautXL_v9 [c9e3e68f89]").replace(
        "DPM++ 2M, Schedule type: Karras", "Euler"
    )
    response = client_alice.post("/restore", {"parameters": text, "version": [sd_version.id]})
    form = response.context["form"]
    assert [version.id for version in form.versions] == [sd_version.id]
    assert form.initial["scheduler"] == "K_EULER"
    content = response.content.decode()
    assert "juggernautXL_v9 [c9e3e68f89]: Not in this Lightbox&#x27;s catalog" in content


def test_a_lightbox_png_restores_its_version_and_every_input(client_alice, sd_version, turbo_version):
    prediction = make_prediction(sd_version)
    prediction.input.update(num_inference_steps=3, scheduler="PNDM", guidance_scale=2.5, step_delay=0.0)
    data = images.embed_png_metadata(png(), images.parameters_chunks(prediction))
    response = client_alice.post(
        "/restore",
        {"png": upload(data), "version": [turbo_version.id]},
        headers={"HX-Request": "true", "HX-Target": "playground"},
    )
    assert response.status_code == 200
    # The drop zone's htmx request gets the playground region alone.
    assert "<html" not in response.content.decode()
    assert response.content.decode().lstrip().startswith('<div id="playground">')
    form = response.context["form"]
    assert [version.id for version in form.versions] == [sd_version.id]
    assert form.initial["scheduler"] == "PNDM"
    assert form.initial["seed"] == 42
    content = response.content.decode()
    assert "Restored from Lightbox" in content


def test_a_comfyui_png_is_read_too(client_alice, sd_version):
    response = client_alice.post("/restore", {"png": upload(comfyui_png())})
    form = response.context["form"]
    assert form.initial["prompt"] == "a lighthouse at dusk"
    assert form.initial["seed"] == 777
    assert "Restored from ComfyUI" in response.content.decode()


def test_bad_files_and_empty_requests_get_a_message_at_the_field(client_alice, sd_version):
    cases = [
        ({"png": upload(b"GIF89a not a png", "cat.gif")}, "This is not a PNG file."),
        ({"png": upload(png())}, "carries no generation parameters"),
        ({"png": upload(a1111_png()[:40])}, "carries no generation parameters"),
        ({}, "Choose a PNG, or paste its parameters text."),
        ({"parameters": "Steps: x, Seed: y, CFG scale: z"}, "No prompt or settings could be read from this text."),
        ({"parameters": "x" * 70_000}, "at most 65536 characters"),
    ]
    for data, message in cases:
        response = client_alice.post("/restore", data)
        assert response.status_code == 400, message
        assert message in response.content.decode(), message
        # The playground is there as it was, nothing filled in.
        assert response.context["restored"] is None


def test_visitors_who_cannot_run_are_sent_to_log_in(client, sd_version):
    response = client.post("/restore", {"png": upload(a1111_png())})
    assert response.status_code == 302
    assert "/login" in response["Location"]


def test_an_htmx_request_with_a_bad_file_gets_the_panel_alone(client_alice, sd_version):
    response = client_alice.post(
        "/restore", {"png": upload(b"not a png")}, headers={"HX-Request": "true", "HX-Target": "playground"}
    )
    assert response.status_code == 200  # htmx swaps 2xx answers only
    assert response["HX-Retarget"] == "#restore"
    content = response.content.decode()
    assert content.lstrip().startswith('<details class="panel restore" id="restore"')
    assert "This is not a PNG file." in content


def test_an_offline_version_keeps_the_chosen_models_and_says_why(client_alice, sd_version, turbo_version):
    prediction = make_prediction(sd_version)
    data = images.embed_png_metadata(png(), images.parameters_chunks(prediction))
    type(sd_version).objects.filter(pk=sd_version.pk).update(available=False)
    response = client_alice.post("/restore", {"png": upload(data), "version": [turbo_version.id]})
    form = response.context["form"]
    assert [version.id for version in form.versions] == [turbo_version.id]
    assert form.initial["prompt"] == "a red fox" and form.initial["seed"] == 42
    assert "local/tiny-sd is offline; the models chosen before are kept." in response.content.decode()


def test_our_own_parameters_text_names_the_exact_version(client_alice, sd_version, turbo_version):
    text = images.a1111_parameters({"prompt": "a heron", "seed": 7, "scheduler": "DDIM"}, sd_version.ref)
    response = client_alice.post("/restore", {"parameters": text, "version": [turbo_version.id]})
    form = response.context["form"]
    assert [version.id for version in form.versions] == [sd_version.id]
    assert form.initial == {"prompt": "a heron", "seed": 7, "scheduler": "DDIM"}
    assert "Could not be used" not in response.content.decode()
