"""The prediction page /p/<id>: image, input, API JSON, snippets, share tags."""

import os

import pytest

from app.models import Output, Prediction
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_shows_the_image_input_snippets_and_share_tags(client, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, prompt="a red fox in the snow", visibility="unlisted")
    output = prediction.outputs.get()

    html = client.get(f"/p/{prediction.id}").content.decode()

    assert f'src="{output.file.url}"' in html
    assert 'download="tiny-sd_a-red-fox-in-the-snow_seed-42.png"' in html
    assert '<th scope="row">seed</th><td>42</td>' in html
    assert "/v1/predictions" in html and "Prefer: wait" in html
    assert f"replicate.run(\n    &#x27;{sd_version.ref}&#x27;" in html
    # The same variables as the profile's, which the official clients read.
    assert "export REPLICATE_BASE_URL=http://testserver" in html and "$REPLICATE_API_TOKEN" in html
    assert "&quot;status&quot;: &quot;succeeded&quot;" in html  # the API JSON
    assert f'<meta property="og:image" content="http://testserver{output.file.url}">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert '<meta property="og:title" content="a red fox in the snow">' in html
    assert "step 4/4" in html


def test_a_private_prediction_is_only_for_its_owner(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="private")

    assert client.get(f"/p/{prediction.id}").status_code == 404
    client.force_login(bob)
    assert client.get(f"/p/{prediction.id}").status_code == 404
    client.force_login(alice)
    assert client.get(f"/p/{prediction.id}").status_code == 200


def test_a_running_prediction_polls_and_the_poll_stops_when_it_ends(client, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, status="processing")

    page = client.get(f"/p/{prediction.id}").content.decode()
    assert 'hx-trigger="every 1s"' in page

    Prediction.objects.filter(pk=prediction.pk).update(status="failed", error="out of memory")
    response = client.get(f"/p/{prediction.id}?part=result", headers={"HX-Request": "true"})
    assert response.status_code == 286
    assert "out of memory" in response.content.decode()


def test_the_owner_deletes_it_with_its_files(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, outputs=2)
    paths = [p for o in prediction.outputs.all() for p in (o.file.path, o.thumbnail.path)]
    assert all(os.path.exists(path) for path in paths)

    response = client_alice.post(f"/p/{prediction.id}/delete")

    assert response.status_code == 302
    assert not Prediction.objects.exists() and not Output.objects.exists()
    assert not any(os.path.exists(path) for path in paths)


def test_others_cannot_delete_or_change_it(client, bob, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice)
    client.force_login(bob)

    assert client.post(f"/p/{prediction.id}/delete").status_code == 404
    assert client.post(f"/p/{prediction.id}/visibility", {"visibility": "private"}).status_code == 404
    assert Prediction.objects.get().visibility == "public"


def test_the_owner_changes_its_visibility(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")

    client_alice.post(f"/p/{prediction.id}/visibility", {"visibility": "public"})

    assert Prediction.objects.get().visibility == "public"


@pytest.mark.parametrize("outputs", [1, 4])
def test_the_page_runs_a_constant_number_of_queries(
    client_alice, alice, sd_version, django_assert_max_num_queries, outputs
):
    prediction = make_prediction(sd_version, owner=alice, outputs=outputs)

    with django_assert_max_num_queries(5):
        response = client_alice.get(f"/p/{prediction.id}")
    assert response.content.decode().count('class="output"') == outputs


def test_view_on_site_in_the_admin_opens_the_page_of_a_prediction_and_of_a_comparison(client, sd_version):
    """get_absolute_url is each item's page (a prediction's was its API JSON)."""
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from app.models import Comparison

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "a long pass phrase")
    client.force_login(admin)
    prediction = make_prediction(sd_version)
    comparison = Comparison.objects.create(input={"prompt": "x"})
    for item, page in ((prediction, f"/p/{prediction.id}"), (comparison, f"/c/{comparison.id}")):
        content_type = ContentType.objects.get_for_model(item)
        response = client.get(f"/admin/r/{content_type.pk}/{item.pk}/")
        assert response.status_code == 302 and response["Location"].endswith(page)


def test_downloads_are_named_by_model_prompt_and_seed_from_the_page_and_the_api(client, alice, alice_token, sd_version):
    import re

    prediction = make_prediction(sd_version, owner=alice, prompt="A red fox, in fresh snow! (golden hour)", outputs=2)
    expected = [
        "tiny-sd_a-red-fox-in-fresh-snow-golden-hour_seed-42.png",
        "tiny-sd_a-red-fox-in-fresh-snow-golden-hour_seed-42-2.png",
    ]

    page = client.get(f"/p/{prediction.id}").content.decode()
    served = [client.get(output.file.url)["Content-Disposition"] for output in prediction.outputs.all()]
    api = client.get(f"/v1/predictions/{prediction.id}", headers={"Authorization": f"Bearer {alice_token}"}).json()
    from_api = [client.get(url.replace("http://testserver", ""))["Content-Disposition"] for url in api["output"]]

    assert set(re.findall(r'download="([^"]+)"', page)) == set(expected)
    assert served == [f'inline; filename="{name}"' for name in expected]
    assert from_api == served


def test_image_inputs_show_as_thumbnails_and_the_snippets_read_local_files(client, alice, sd_version):
    from app.core import uploads
    from tests.web.conftest import png_bytes

    image = uploads.clean_image(png_bytes()).data_uri
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")
    prediction.input.update(image=image, mask=image)
    prediction.save()

    html = client.get(f"/p/{prediction.id}").content.decode()

    assert f'<img class="input-thumb" src="{image}" alt="The image given">' in html
    assert f'<img class="input-thumb" src="{image}" alt="The mask given">' in html
    python = html.split('id="python-snippet"')[1].split("</pre>")[0]
    assert "base64," not in python  # no image pasted in as text
    assert "&#x27;image&#x27;: open(&quot;input.png&quot;, &quot;rb&quot;)," in html
    assert "&#x27;mask&#x27;: open(&quot;mask.png&quot;, &quot;rb&quot;)," in html
    assert "$(base64 &lt; input.png | tr -d" in html
    assert "The snippets read <code>input.png</code> and <code>mask.png</code> from the current folder" in html
    # Remix keeps the images; any output can start an image to image run.
    assert f'href="/?from={prediction.id}&amp;use=remix"' in html
    assert f'href="/?from={prediction.id}&amp;output=0">Use in image to image</a>' in html


def test_the_curl_snippet_runs_verbatim_in_a_shell(tmp_path, alice, sd_version):
    """The shell turns the snippet's file reads into the data URI the API takes."""
    import json
    import subprocess

    from app.core import uploads
    from app.views.predictions import snippets
    from tests.web.conftest import png_bytes

    image = uploads.clean_image(png_bytes()).data_uri
    prediction = make_prediction(sd_version, owner=alice, prompt="it's a fox")
    prediction.input.update(image=image)
    prediction.save()
    (tmp_path / "input.png").write_bytes(png_bytes())
    curl, _, _ = snippets(prediction)

    # A stand-in curl prints the body the snippet gives it.
    stand_in = 'curl() { while [ "$1" != "-d" ]; do shift; done; printf %s "$2"; }\n'
    body = subprocess.run(
        ["bash", "-c", stand_in + curl], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    sent = json.loads(body)
    assert sent["input"]["image"] == image and sent["input"]["prompt"] == "it's a fox"
