"""The local inference server, through the real Cog HTTP server, on tiny
random-weight pipelines. Random weights make noise, so each test checks what
holds for any weights: sizes, determinism, untouched pixels, that an input
changes the result."""

import re

import numpy as np
import pytest
from cogserver import Webhooks, data_uri, decode, free_port, noise_image
from PIL import Image

from inference import families

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def test_text_to_image_returns_the_requested_images_and_logs_progress(sd):
    body = sd.predict(prompt="a red fox", width=96, height=64, num_outputs=2, num_inference_steps=3, seed=7)

    assert body["status"] == "succeeded", body
    assert len(body["output"]) == 2
    assert [decode(uri).size for uri in body["output"]] == [(96, 64), (96, 64)]
    assert re.findall(r"step (\d+)/(\d+)", body["logs"]) == [("1", "3"), ("2", "3"), ("3", "3")]
    assert "Using seed: 7" in body["logs"]


def test_the_same_seed_gives_the_same_image_and_another_seed_another(sd):
    first = sd.image(prompt="a lighthouse", seed=42, **SMALL)
    again = sd.image(prompt="a lighthouse", seed=42, **SMALL)
    other = sd.image(prompt="a lighthouse", seed=43, **SMALL)

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("scheduler", families.ALL_SCHEDULERS)
def test_every_scheduler_runs_on_sd(sd, scheduler):
    assert sd.image(prompt="x", scheduler=scheduler, seed=1, **SMALL).shape == (64, 64, 3)


@pytest.mark.parametrize("scheduler", families.TURBO_SCHEDULERS)
def test_every_turbo_scheduler_runs_on_sdxl_turbo(sdxl, scheduler):
    assert sdxl.image(prompt="x", scheduler=scheduler, seed=1, **SMALL).shape == (64, 64, 3)


def test_a_turbo_server_uses_turbo_defaults(sdxl):
    body = sdxl.predict(prompt="a cat")  # no size, steps or guidance given

    assert body["status"] == "succeeded", body
    assert decode(body["output"][0]).size == (512, 512)
    assert re.findall(r"step \d+/\d+", body["logs"]) == ["step 1/1"]


def test_image_to_image_returns_the_requested_size_and_follows_prompt_strength(sd):
    source = data_uri(noise_image(64, 64))
    weak = sd.image(prompt="x", image=source, width=96, height=64, prompt_strength=0.3, seed=1, num_inference_steps=4)
    strong = sd.image(prompt="x", image=source, width=96, height=64, prompt_strength=0.9, seed=1, num_inference_steps=4)

    assert weak.shape == strong.shape == (64, 96, 3)
    assert not np.array_equal(weak, strong)


def test_image_to_image_on_sdxl(sdxl):
    out = sdxl.image(
        prompt="x",
        image=data_uri(noise_image(64, 64)),
        width=64,
        height=80,
        prompt_strength=0.5,
        num_inference_steps=2,
        seed=1,
    )
    assert out.shape == (80, 64, 3)


def _square_mask(width, height, box):
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask


@pytest.mark.parametrize("server_name", ["sd", "sdxl"])
def test_inpainting_leaves_every_pixel_outside_the_mask_as_it_was(servers, server_name):
    server = servers[server_name]
    server.wait()
    source = noise_image(72, 64, seed=3)  # not a multiple of 16: it still comes back whole
    mask = _square_mask(72, 64, (16, 16, 48, 40))
    out = server.image(
        prompt="x", image=data_uri(source), mask=data_uri(mask), seed=1, num_inference_steps=2, prompt_strength=0.9
    )

    keep = np.asarray(mask) == 0
    assert out.shape == (64, 72, 3)
    assert np.array_equal(out[keep], np.asarray(source)[keep])
    assert not np.array_equal(out[~keep], np.asarray(source)[~keep])


@pytest.mark.parametrize("server_name", ["sd", "sdxl"])
def test_outpainting_extends_the_canvas_and_keeps_the_original(servers, server_name):
    server = servers[server_name]
    server.wait()
    source = noise_image(64, 48, seed=4)
    # CSS order: top 16, right 8, bottom 0, left 24
    out = server.image(prompt="x", image=data_uri(source), outpainting="16,8,0,24", seed=1, num_inference_steps=2)

    assert out.shape == (48 + 16, 64 + 24 + 8, 3)
    assert np.array_equal(out[16 : 16 + 48, 24 : 24 + 64], np.asarray(source))
    # The new border is generated, not a copy of the stretched edge.
    assert not np.array_equal(out[:16, 24:88], np.repeat(np.asarray(source)[:1], 16, axis=0))


def test_a_lora_changes_the_output_and_lora_scale_zero_does_not(sd):
    base = sd.image(prompt="x", seed=5, **SMALL)
    styled = sd.image(prompt="x", seed=5, lora="tiny-sd-style.safetensors", lora_scale=1.0, **SMALL)
    off = sd.image(prompt="x", seed=5, lora="tiny-sd-style", lora_scale=0, **SMALL)
    after = sd.image(prompt="x", seed=5, **SMALL)

    assert not np.array_equal(base, styled)
    assert np.array_equal(base, off)
    assert np.array_equal(base, after)  # a LoRA does not stick to later predictions


def test_a_lora_by_url_is_downloaded_once(sd, file_server):
    url = f"{file_server.url}/remote.safetensors"
    base = sd.image(prompt="x", seed=6, **SMALL)
    first = sd.image(prompt="x", seed=6, lora=url, **SMALL)
    second = sd.image(prompt="x", seed=6, lora=url, lora_scale=0.5, **SMALL)

    assert not np.array_equal(base, first)
    assert not np.array_equal(first, second)
    assert file_server.counts == {"/remote.safetensors": 1}


def test_a_lora_url_inside_is_refused_by_the_server_itself_alike_for_open_and_closed_ports(
    sd, file_server, inside_file_server
):
    open_port = f"{inside_file_server.url}/remote.safetensors"
    closed_port = f"http://127.0.0.2:{free_port()}/remote.safetensors"
    file_server.redirects["/moved.safetensors"] = open_port  # an allowed host that points inside
    bodies = [
        sd.predict(prompt="x", lora=url, **SMALL)
        for url in (
            open_port,
            closed_port,
            f"{file_server.url}/moved.safetensors",
            "http://no-such-host.invalid/remote.safetensors",
        )
    ]

    assert [body["status"] for body in bodies] == ["failed"] * 4
    [error] = {body["error"] for body in bodies}  # Cog adds "Prediction failed: ValueError: "
    assert error.endswith("could not fetch lora")
    assert inside_file_server.counts == {}
    # Why is in the server's log, not in what the caller reads.
    assert not any("non-public" in body["logs"] or "resolve" in body["logs"] for body in bodies)
    assert "resolves to a non-public address (127.0.0.2)" in sd.log_path.read_text()


def test_a_lora_on_sdxl(sdxl):
    base = sdxl.image(prompt="x", seed=5, **SMALL)
    styled = sdxl.image(prompt="x", seed=5, lora="tiny-sdxl-style", **SMALL)
    assert not np.array_equal(base, styled)


def test_a_missing_lora_fails_the_prediction_with_its_name(sd):
    body = sd.predict(prompt="x", lora="no-such-lora", **SMALL)
    assert body["status"] == "failed"
    assert "no-such-lora" in body["error"]


@pytest.mark.parametrize("server_name", ["sd", "sdxl"])
def test_controlnet_changes_the_output(servers, server_name):
    server = servers[server_name]
    server.wait()
    edges_from = data_uri(Image.new("RGB", (64, 64), "white").transform((64, 64), Image.EXTENT, (0, 0, 8, 8)))
    control = data_uri(_checkerboard(64, 64))
    base = server.image(prompt="x", seed=2, **SMALL)
    guided = server.image(prompt="x", seed=2, control_image=control, **SMALL)
    unscaled = server.image(prompt="x", seed=2, control_image=edges_from, controlnet_conditioning_scale=0.0, **SMALL)

    assert not np.array_equal(base, guided)
    assert unscaled.shape == base.shape


def test_controlnet_with_image_to_image_and_inpainting(sd):
    control = data_uri(_checkerboard(64, 64))
    source = noise_image(64, 64, seed=8)
    mask = _square_mask(64, 64, (8, 8, 40, 40))
    img2img = sd.image(prompt="x", image=data_uri(source), control_image=control, seed=2, **SMALL)
    inpainted = sd.image(
        prompt="x", image=data_uri(source), mask=data_uri(mask), control_image=control, seed=2, **SMALL
    )

    assert img2img.shape == (64, 64, 3)
    keep = np.asarray(mask) == 0
    assert np.array_equal(inpainted[keep], np.asarray(source)[keep])


def _checkerboard(width, height, cell=16):
    y, x = np.mgrid[:height, :width]
    board = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([board] * 3, axis=-1))


@pytest.mark.parametrize(
    "server_name, bad, field",
    [
        ("sd", {"width": 5000}, "width"),
        ("sd", {"num_outputs": 5}, "num_outputs"),
        ("sd", {"scheduler": "EULER_FAST"}, "scheduler"),
        ("sd", {"prompt_strength": 1.5}, "prompt_strength"),
        ("sd", {"num_inference_steps": "many"}, "num_inference_steps"),
        ("sd", {"lora": "../../etc/passwd"}, "lora"),
        ("sd", {"lora": "/etc/passwd"}, "lora"),
        ("sd", {"lora": "sub/dir.safetensors"}, "lora"),
        ("sd", {"outpainting": "a lot"}, "outpainting"),
        ("sdxl", {"num_inference_steps": 30}, "num_inference_steps"),  # turbo: 1-4
        ("sdxl", {"scheduler": "PNDM"}, "scheduler"),  # not offered for turbo
    ],
)
def test_bad_input_gets_422_naming_the_field(servers, server_name, bad, field):
    server = servers[server_name]
    server.wait()
    response = server.post("/predictions", json={"input": {"prompt": "x", **bad}})

    assert response.status_code == 422, response.text
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_a_mask_without_an_image_fails_with_a_clear_error(sd):
    body = sd.predict(prompt="x", mask=data_uri(_square_mask(64, 64, (0, 0, 8, 8))), **SMALL)
    assert body["status"] == "failed"
    assert "need an image" in body["error"]


def test_cancel_mid_run_then_the_next_prediction_runs(sd):
    hooks = Webhooks()
    try:
        long_run = {"prompt": "x", "width": 512, "height": 512, "num_inference_steps": 200, "seed": 1}
        response = sd.client.put(
            "/predictions/cancel-me",
            json={"input": long_run, "webhook": hooks.url},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
        hooks.wait_for(lambda b: "step 2/" in (b.get("logs") or ""))

        assert sd.client.post("/predictions/cancel-me/cancel").status_code == 200
        hooks.wait_for(lambda b: b["status"] == "canceled")
        assert not any(b["status"] == "succeeded" for b in hooks.bodies)
    finally:
        hooks.stop()

    assert sd.image(prompt="after", seed=1, **SMALL).shape == (64, 64, 3)


def test_without_weights_offline_setup_fails_naming_the_model_and_the_fix(servers):
    state = servers["offline"].wait(until=("SETUP_FAILED",))

    logs = state["setup"]["logs"]
    assert "stabilityai/sd-turbo" in logs
    assert "hf download stabilityai/sd-turbo" in logs
