"""The LoRA trainer through the real Cog server in training mode, on the
tiny random-weight SD pipeline: its weights uploaded as a prediction's output
would be, loaded by the real predictor server; cancel; bad archives."""

import base64
import hashlib
import io
import re
import tarfile
import time
import zipfile

import numpy as np
import pytest
from cogserver import CogServer, UploadServer, Webhooks, noise_image
from PIL import Image

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}
# A few steps at a learning rate high enough to move random weights visibly.
QUICK = {"max_train_steps": 3, "resolution": 64, "lora_rank": 4, "train_batch_size": 2, "learning_rate": 1e-2}
# The limits the trainer server runs with here, small enough to reach cheaply.
LIMITS = {
    "LIGHTBOX_TRAIN_MAX_FILES": "40",
    "LIGHTBOX_TRAIN_MAX_BYTES": "3000000",
    "LIGHTBOX_TRAIN_MAX_PIXELS": "1000000",
}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    server = UploadServer(tmp_path_factory.mktemp("uploads"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, tiny_models, uploads):
    server = CogServer(
        "tiny-sd-trainer",
        tiny_models["sd"],
        tmp_path_factory.mktemp("trainer"),
        LIMITS,
        family="sd15",
        train=True,
        upload_url=uploads.upload_url,
    )
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def zip_uri(members: dict) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return "data:application/zip;base64," + base64.b64encode(buffer.getvalue()).decode()


def four_images() -> dict:
    return {f"subject-{i}.png": png(noise_image(96, 80, seed=i)) for i in range(4)}


def train(server, **inputs) -> dict:
    response = server.post("/trainings", json={"input": inputs})
    assert response.status_code == 200, response.text
    return response.json()


def weights_of(body) -> bytes:
    """The weights' bytes: coglet (0.23.1) uploads only a Path returned as
    the whole output, so the one inside {"weights": ...} comes as a data URI."""
    assert body["status"] == "succeeded", body.get("error") or body.get("logs")
    uri = body["output"]["weights"]
    assert uri.startswith("data:application/octet-stream;base64,"), uri[:60]
    return base64.b64decode(uri.split(",", 1)[1])


def test_a_training_returns_weights_that_the_predictor_loads(trainer, uploads, lora_dir, sd):
    hooks = Webhooks()
    try:
        response = trainer.client.put(
            "/trainings/train-1",
            json={
                "input": {"input_images": zip_uri(four_images()), "token_string": "zxq", "seed": 3, **QUICK},
                "webhook": hooks.url,
            },
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
        done = hooks.wait_for(lambda b: b["status"] in ("succeeded", "failed", "canceled"))
    finally:
        hooks.stop()

    assert done["status"] == "succeeded", done.get("error") or done["logs"]
    assert re.findall(r"step (\d+)/(\d+) loss=\d+\.\d+", done["logs"]) == [("1", "3"), ("2", "3"), ("3", "3")]
    assert "prompt: 'a photo of zxq'" in done["logs"]
    assert uploads.puts == []  # even with --upload-url: see weights_of
    weights = weights_of(done)
    assert int.from_bytes(weights[:8], "little") < len(weights)  # a .safetensors header, then tensors
    (lora_dir / "trained-sd.safetensors").write_bytes(weights)
    url = "trained-sd"

    base = sd.image(prompt="a photo of zxq", seed=5, **SMALL)
    tuned = sd.image(prompt="a photo of zxq", seed=5, lora=url, **SMALL)
    off = sd.image(prompt="a photo of zxq", seed=5, lora=url, lora_scale=0, **SMALL)
    assert not np.array_equal(base, tuned)
    assert np.array_equal(base, off)


def test_the_same_seed_and_images_give_the_same_weights_bit_for_bit(trainer):
    images = zip_uri(four_images())
    first = weights_of(train(trainer, input_images=images, seed=11, **QUICK))
    again = weights_of(train(trainer, input_images=images, seed=11, **QUICK))
    other = weights_of(train(trainer, input_images=images, seed=12, **QUICK))

    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()
    assert first != other


def test_captions_from_a_tar_archive_follow_the_caption_prefix(trainer):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {**four_images(), "subject-2.txt": b"wearing a red hat\n"}.items():
            info = tarfile.TarInfo(f"photos/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    body = train(
        trainer,
        input_images="data:application/gzip;base64," + base64.b64encode(buffer.getvalue()).decode(),
        token_string="zxq",
        caption_prefix="a portrait of zxq, ",
        seed=1,
        **{**QUICK, "max_train_steps": 1},
    )

    assert body["status"] == "succeeded", body.get("error")
    assert "4 images (1 with captions)" in body["logs"]


def test_prior_preservation_makes_class_images_and_needs_a_class_prompt(trainer):
    images = zip_uri(four_images())
    body = train(
        trainer,
        input_images=images,
        with_prior_preservation=True,
        class_prompt="a photo of a cat",
        num_class_images=2,
        seed=1,
        **QUICK,
    )
    missing = train(trainer, input_images=images, with_prior_preservation=True, seed=1, **QUICK)

    assert body["status"] == "succeeded", body.get("error")
    assert "class images 2/2" in body["logs"]
    assert missing["status"] == "failed"
    assert "needs a class_prompt" in missing["error"]


def _tar_with_link() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("subject.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive, error",
    [
        (png(noise_image(8, 8)), "must be a zip or tar archive"),
        (b"PK\x03\x04 not really a zip", "must be a zip or tar archive"),
        ({"readme.txt": b"hello", "notes.md": b"x"}, "has no images"),
        ({"__MACOSX/._a.png": b"x", ".hidden.png": b"x"}, "has no images"),
        ({"../../escape.png": png(noise_image(8, 8))}, "points outside the archive"),
        ({"/etc/cron.d/x.png": png(noise_image(8, 8))}, "points outside the archive"),
        (_tar_with_link(), "is a link"),
        ({"a.png": png(noise_image(8, 8)), "bomb.png": b"\0" * 4_000_000}, "more than 3000000 bytes once unpacked"),
        ({"huge.png": png(Image.new("RGB", (1200, 1000)))}, "is 1200x1000, more than 1000000 pixels"),
        ({f"{i}.txt": b"x" for i in range(41)}, "more than 40 files"),
        ({"a.png": b"\x89PNG\r\n\x1a\n broken"}, "'a.png' is not a readable image"),
        ({"a.png": png(noise_image(8, 8)), "a.txt": b"\xff\xfe\xfa"}, "'a.txt' is not UTF-8 text"),
    ],
)
def test_a_bad_archive_fails_the_training_with_a_clear_error(trainer, archive, error):
    if isinstance(archive, dict):
        uri = zip_uri(archive)
    else:
        uri = "data:application/octet-stream;base64," + base64.b64encode(archive).decode()
    body = train(trainer, input_images=uri, seed=1, **QUICK)

    assert body["status"] == "failed"
    assert error in body["error"], body["error"]
    assert "step 1/" not in body["logs"]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"lora_rank": 0}, "lora_rank"),
        ({"max_train_steps": 0}, "max_train_steps"),
        ({"resolution": 4096}, "resolution"),
        ({"token_string": ""}, "token_string"),
        ({"learning_rate": "fast"}, "learning_rate"),
    ],
)
def test_bad_input_gets_422_naming_the_field(trainer, bad, field):
    response = trainer.post("/trainings", json={"input": {"input_images": zip_uri(four_images()), **bad}})

    assert response.status_code == 422, response.text
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_a_caption_prefix_without_the_token_is_refused(trainer):
    body = train(trainer, input_images=zip_uri(four_images()), token_string="zxq", caption_prefix="a photo", **QUICK)

    assert body["status"] == "failed"
    assert "caption_prefix must contain token_string ('zxq')" in body["error"]


def test_cancel_mid_training_stops_it_and_the_next_training_runs(trainer):
    images = zip_uri(four_images())
    before = weights_of(train(trainer, input_images=images, seed=11, **QUICK))
    hooks = Webhooks()
    try:
        long_run = {"input_images": images, **QUICK, "max_train_steps": 20000, "seed": 1}
        # coglet frees its one slot a moment after it answered the last
        # training: until then it says 409 "At capacity".
        deadline = time.monotonic() + 15
        while True:
            response = trainer.client.put(
                "/trainings/cancel-me",
                json={"input": long_run, "webhook": hooks.url},
                headers={"Prefer": "respond-async"},
            )
            if response.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status_code == 202, response.text
        hooks.wait_for(lambda b: "step 2/20000" in (b.get("logs") or ""))

        assert trainer.client.post("/trainings/cancel-me/cancel").status_code == 200
        canceled = hooks.wait_for(lambda b: b["status"] in ("canceled", "succeeded", "failed"))
    finally:
        hooks.stop()

    assert canceled["status"] == "canceled"
    assert "step 20000/20000" not in canceled["logs"]
    # The canceled training's LoRA layers are gone: the next one starts clean.
    assert weights_of(train(trainer, input_images=images, seed=11, **QUICK)) == before


def test_an_sdxl_lora_loads_in_the_sdxl_predictor(tiny_models, lora_dir, sdxl, tmp_path):
    from inference import families
    from inference.train import Trainer, load

    archive = tmp_path / "images.zip"
    archive.write_bytes(base64.b64decode(zip_uri(four_images()).split(",", 1)[1]))
    trainer = Trainer(*load(str(tiny_models["sdxl"]), families.get("sdxl")))
    path = trainer.run(
        archive, "zxq", "", steps=3, learning_rate=1e-2, rank=4, resolution=64, batch_size=2, seed=2, out_dir=tmp_path
    )
    (lora_dir / "trained-sdxl.safetensors").write_bytes(open(path, "rb").read())

    base = sdxl.image(prompt="a photo of zxq", seed=5, **SMALL)
    tuned = sdxl.image(prompt="a photo of zxq", seed=5, lora="trained-sdxl", **SMALL)
    off = sdxl.image(prompt="a photo of zxq", seed=5, lora="trained-sdxl", lora_scale=0, **SMALL)
    assert not np.array_equal(base, tuned)
    assert np.array_equal(base, off)


def test_large_images_are_scaled_down_as_they_are_read(tmp_path):
    from inference import archives

    path = tmp_path / "big.zip"
    path.write_bytes(base64.b64decode(zip_uri({"wide.png": png(Image.new("RGB", (900, 300), "red"))}).split(",")[1]))

    [example] = archives.read(path, short_side=64)

    assert example.image.size == (192, 64)
    assert example.original_size == (900, 300)  # what SDXL's size conditioning is told


def test_a_v_prediction_model_trains_on_velocity(tiny_models, tmp_path):
    """SD 2.x predicts velocity: the loss is taken against it, not the noise."""
    from diffusers import DDPMScheduler

    from inference import families
    from inference.train import Trainer, load

    pipe, _, _ = load(str(tiny_models["sd"]), families.get("sd21"))
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    archive = tmp_path / "images.zip"
    archive.write_bytes(base64.b64decode(zip_uri(four_images()).split(",", 1)[1]))
    run = dict(token_string="zxq", caption_prefix="", steps=2, learning_rate=1e-2, rank=4, resolution=64, batch_size=2)

    velocity = Trainer(pipe, scheduler, families.get("sd21")).run(archive, seed=1, out_dir=tmp_path / "v", **run)
    noise = Trainer(*load(str(tiny_models["sd"]), families.get("sd21"))).run(
        archive, seed=1, out_dir=tmp_path / "eps", **run
    )

    assert open(velocity, "rb").read() != open(noise, "rb").read()
