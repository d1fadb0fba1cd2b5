"""Both official clients' trainings methods against Lightbox: Python
`client.trainings.create/get/list/cancel` and Node `replicate.trainings.*`."""

import pytest
import replicate
from replicate.exceptions import ReplicateError

from tests.api.clients import run_node
from tests.conftest import wait_until
from tests.trainings.conftest import data_uri, image_zip

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(site, alice_token):
    return replicate.Client(api_token=alice_token, base_url=site.url)


def test_python_client_create_get_list_and_cancel(client, worker, base_version, destination, tmp_path):
    from app.models import File, Training

    archive = tmp_path / "photos.zip"
    archive.write_bytes(image_zip(3))
    with archive.open("rb") as images:
        # An open file is uploaded by the client first (/v1/files), and read here.
        training = client.trainings.create(
            version=f"local/tiny-base:{base_version.id}",
            input={"input_images": images, "token_string": "pyk", "max_train_steps": 2},
            destination="alice/my-face",
        )
    assert training.status == "starting" and training.destination == "alice/my-face"
    assert File.objects.get().content_type == "application/zip"
    wait_until(lambda: client.trainings.get(training.id).status == "succeeded", timeout=60, message="succeeded")
    done = client.trainings.get(training.id)
    assert done.output["version"].startswith("alice/my-face:")
    assert done.output["weights"].startswith("http")
    assert [t.id for t in client.trainings.list().results] == [training.id]

    slow = client.trainings.create(
        version=f"local/tiny-base:{base_version.id}",
        input={"input_images": data_uri(image_zip(2)), "max_train_steps": 300, "step_delay": 0.1},
        destination="alice/my-face",
    )
    wait_until(lambda: Training.objects.get(pk=slow.id).status == "processing", timeout=30)
    assert client.trainings.cancel(slow.id).status == "canceled"


def test_python_client_errors_name_the_destination(client, base_version):
    with pytest.raises(ReplicateError) as raised:
        client.trainings.create(
            version=f"local/tiny-base:{base_version.id}",
            input={"input_images": data_uri(image_zip(1))},
            destination="alice/not-made-yet",
        )
    assert raised.value.status == 404 and "does not exist" in raised.value.detail


def test_node_client_create_get_list_and_cancel(site, alice_token, worker, base_version, destination):
    from app.models import Training

    result = run_node(
        site.url,
        alice_token,
        f"""
        const created = await replicate.trainings.create("local", "tiny-base", {base_version.id!r}, {{
            destination: "alice/my-face",
            input: {{input_images: {data_uri(image_zip(2))!r}, token_string: "nod", max_train_steps: 2}},
        }});
        let got = created;
        for (let i = 0; i < 300 && !["succeeded", "failed", "canceled"].includes(got.status); i++) {{
            await new Promise((resolve) => setTimeout(resolve, 200));
            got = await replicate.trainings.get(created.id);
        }}
        const listed = await replicate.trainings.list();
        const slow = await replicate.trainings.create("local", "tiny-base", {base_version.id!r}, {{
            destination: "alice/my-face",
            input: {{input_images: {data_uri(image_zip(2))!r}, max_train_steps: 300, step_delay: 0.1}},
        }});
        const canceled = await replicate.trainings.cancel(slow.id);
        let refused;
        try {{
            await replicate.trainings.create("local", "tiny-base", {base_version.id!r}, {{
                destination: "alice/nope", input: {{input_images: "x"}},
            }});
        }} catch (error) {{ refused = error.response.status; }}
        return {{created, got, listed: listed.results.map((t) => t.id), canceled, refused}};
        """,
    )
    assert result["created"]["status"] == "starting"
    assert result["got"]["status"] == "succeeded", result["got"]["error"]
    assert result["got"]["output"]["version"].startswith("alice/my-face:")
    assert result["created"]["id"] in result["listed"]
    assert result["canceled"]["status"] == "canceled"
    assert result["refused"] == 404
    assert Training.objects.get(pk=result["canceled"]["id"]).status == "canceled"
