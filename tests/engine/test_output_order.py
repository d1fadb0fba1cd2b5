"""A prediction's images keep the order its predictor returned them in,
though coglet lists a list's uploads as they finish: the safety checker's
flags, comparisons and bundles all go by position."""

import hashlib
import io

import pytest
from PIL import Image

from app.services import predictions
from app.services.backends import cog
from tests.conftest import wait_for_status


def _made_as(prediction, index):
    """The colour tests/cog_predictor paints its output `index` in."""
    text = f"{prediction.input['prompt']}|{prediction.input['seed']}|{index}"
    return tuple(hashlib.sha256(text.encode()).digest()[:3])


def _colour(output):
    with Image.open(io.BytesIO(output.file.read())) as image:
        return image.convert("RGB").getpixel((0, 0))


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_four_images_are_stored_in_the_order_the_model_made_them_and_the_flagged_one_is_nsfw(
    worker, cog_version, alice
):
    for attempt in range(3):  # the uploads' race differs from run to run
        prediction = predictions.start(
            cog_version, {"prompt": f"four {attempt}", "num_outputs": 4, "width": 64, "nsfw": "2"}, owner=alice
        )
        prediction = wait_for_status(prediction.id)
        assert prediction.status == "succeeded", prediction.error
        outputs = list(prediction.outputs.all())
        assert [_colour(o) for o in outputs] == [_made_as(prediction, i) for i in range(4)]
        assert [o.rating for o in outputs] == ["safe", "safe", "nsfw", "safe"]
        assert [url.rsplit("/", 1)[-1] for url in prediction.output] == [f"out-{i}.png" for i in range(4)]


def _completed(output):
    return {"id": "p", "status": "succeeded", "output": output, "logs": ""}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["h/u/a/out-2.png", "h/u/b/out-0.png", "h/u/c/out-10.png", "h/u/d/out-1.png"], [1, 3, 0, 2]),
        (["h/u/a/image.png", "h/u/b/mask.png"], [0, 1]),  # not numbered: as the server gave them
        (["h/u/a/out-1.png", "h/u/b/grid-0.png"], [0, 1]),  # two kinds of names
        (["h/u/a/out-1.png", "h/u/b/out-1.png"], [0, 1]),  # the same number twice
        (["data:image/png;base64,AA==", "h/u/a/out-0.png"], [0, 1]),
    ],
)
def test_a_cog_servers_list_is_put_back_in_the_order_of_its_numbered_file_names(given, stored):
    urls = [f"http://{item}" if not item.startswith("data:") else item for item in given]
    assert cog.parse_update(_completed(urls)).output == [urls[i] for i in stored]


def test_outputs_that_are_no_list_of_files_are_left_as_they_are():
    assert cog.parse_update(_completed({"weights": "http://h/out-1.safetensors"})).output == [
        {"weights": "http://h/out-1.safetensors"}
    ]
    assert cog.parse_update(_completed(None)).output is None
