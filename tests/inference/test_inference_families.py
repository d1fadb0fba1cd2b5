"""Per-family defaults in the input schema, and family detection."""

import json
import os
import subprocess
import sys

import pytest

from inference import families

from cogserver import ROOT


def schema_for(tmp_path, **env):
    out = tmp_path / "schema.json"
    subprocess.run([sys.executable, "-m", "inference.schema", str(out)], cwd=ROOT, check=True,
                   env={**os.environ, "MODEL_ID": "", **env}, capture_output=True)
    return json.loads(out.read_text())["components"]["schemas"]


@pytest.mark.parametrize(
    "family, size, steps, guidance, max_steps",
    [
        ("sd15", 512, 25, 7.5, 500),
        ("sd21", 768, 25, 7.5, 500),
        ("sdxl", 1024, 30, 5.0, 500),
        ("sd-turbo", 512, 1, 0.0, 4),
        ("sdxl-turbo", 512, 1, 0.0, 4),
    ],
)
def test_each_family_has_its_defaults_in_the_schema(tmp_path, family, size, steps, guidance, max_steps):
    schemas = schema_for(tmp_path, MODEL_FAMILY=family)
    props = schemas["Input"]["properties"]

    assert props["width"]["default"] == props["height"]["default"] == size
    assert props["num_inference_steps"]["default"] == steps
    assert props["num_inference_steps"]["maximum"] == max_steps
    assert props["guidance_scale"]["default"] == guidance
    assert schemas["scheduler"]["enum"] == list(families.get(family).schedulers)
    assert props["scheduler"]["default"] in schemas["scheduler"]["enum"]


def test_the_schema_describes_every_input_and_a_list_of_images(tmp_path):
    schemas = schema_for(tmp_path, MODEL_FAMILY="sd15")

    assert list(schemas["Input"]["properties"]) == [
        "prompt", "negative_prompt", "image", "mask", "width", "height", "num_outputs",
        "num_inference_steps", "guidance_scale", "scheduler", "seed", "prompt_strength", "outpainting",
        "lora", "lora_scale", "control_image", "controlnet_conditioning_scale", "disable_safety_checker",
    ]
    assert schemas["Output"] == {"title": "Output", "type": "array", "items": {"type": "string", "format": "uri"}}
    assert "required" not in schemas["Input"]


def test_the_family_is_detected_from_the_config(tiny_models):
    assert families.from_config(tiny_models["sd"]) == "sd15"
    assert families.from_config(tiny_models["sdxl"]) == "sdxl"
    assert families.detect(str(tiny_models["sdxl"]), "sdxl-turbo").name == "sdxl-turbo"


@pytest.mark.parametrize(
    "model_id, family",
    [
        ("stabilityai/sd-turbo", "sd-turbo"),
        ("stabilityai/sdxl-turbo", "sdxl-turbo"),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"),
        ("stabilityai/stable-diffusion-2-1", "sd21"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
        ("someone/my-xl-finetune", "sdxl"),
    ],
)
def test_known_models_get_their_family_without_any_download(model_id, family):
    assert families.detect(model_id).name == family


def test_outpainting_margins_follow_css_order():
    from inference.images import Margins, parse_outpainting

    assert parse_outpainting("128") == Margins(128, 128, 128, 128)
    assert parse_outpainting("0, 256") == Margins(0, 256, 0, 256)
    assert parse_outpainting("1,2,3") == Margins(1, 2, 3, 2)
    assert parse_outpainting("1,2,3,4") == Margins(1, 2, 3, 4)
