"""Lightbox's Cog predictor: Stable Diffusion and SDXL through diffusers.

One model per server process, chosen by MODEL_ID (a Hugging Face id or a
local diffusers folder); its family (MODEL_FAMILY, else detected from the
config) sets the defaults and scheduler choices in the input schema. Inputs
are named as on Replicate's Stable Diffusion models.
"""

import inspect
import os
import tempfile
from typing import Optional

from cog import BaseRunner, Input, Path

from inference import families, images, weights

FAMILY = families.from_environment()
MODEL_ID = os.environ.get("MODEL_ID", "")
# Text inputs this server downloads itself when given a URL, declared in the
# schema (x-lightbox-url-inputs) so Lightbox's network guard checks them too.
URL_INPUTS = ("lora",)


class Predictor(BaseRunner):
    def setup(self) -> None:
        from inference.engine import Engine

        self.engine = Engine.load(MODEL_ID, FAMILY)
        self.png_level = int(os.environ.get("LIGHTBOX_PNG_LEVEL", "1"))

    def run(
        self,
        prompt: str = Input(description="Input prompt", default="An astronaut riding a rainbow unicorn"),
        negative_prompt: str = Input(description="Things you do not want to see in the image", default=""),
        image: Optional[Path] = Input(
            description="Input image for image to image, inpainting or outpainting mode", default=None
        ),
        mask: Optional[Path] = Input(
            description="Mask for inpainting mode: white areas are repainted, black areas are kept exactly",
            default=None,
        ),
        width: int = Input(
            description="Width of the output image (text or image to image; rounded down to a multiple of 8)",
            default=FAMILY.width,
            ge=64,
            le=2048,
        ),
        height: int = Input(
            description="Height of the output image (text or image to image; rounded down to a multiple of 8)",
            default=FAMILY.height,
            ge=64,
            le=2048,
        ),
        num_outputs: int = Input(description="Number of images to output", default=1, ge=1, le=4),
        num_inference_steps: int = Input(
            description="Number of denoising steps", default=FAMILY.steps, ge=1, le=FAMILY.max_steps
        ),
        guidance_scale: float = Input(
            description="Scale for classifier-free guidance", default=FAMILY.guidance, ge=0, le=50
        ),
        scheduler: str = Input(description="Scheduler", default=FAMILY.scheduler, choices=list(FAMILY.schedulers)),
        seed: Optional[int] = Input(description="Random seed. Leave blank to randomize the seed", default=None),
        prompt_strength: float = Input(
            description="Prompt strength for image to image and inpainting: 1.0 fully replaces the image",
            default=0.8,
            ge=0,
            le=1,
        ),
        outpainting: Optional[str] = Input(
            description="Extend the image by this many pixels on each side and fill the new area, "
            "in CSS margin order: '128' (all sides), '0,256' (top and bottom, left and right) "
            "or '0,256,0,256' (top, right, bottom, left). Needs an image.",
            default=None,
            regex=images.OUTPAINTING_PATTERN,
        ),
        lora: Optional[str] = Input(
            description="A LoRA: an http(s) URL of a .safetensors file, or the name of a file in the server's LORA_DIR",
            default=None,
            regex=weights.LORA_PATTERN,
        ),
        lora_scale: float = Input(description="LoRA strength; 0 turns it off", default=1.0, ge=-1, le=3),
        control_image: Optional[Path] = Input(
            description="Image whose edges (canny) guide the composition; needs a server with a ControlNet",
            default=None,
        ),
        controlnet_conditioning_scale: float = Input(
            description="How strongly the ControlNet guides the image", default=1.0, ge=0, le=2
        ),
        disable_safety_checker: bool = Input(
            description="Disable the safety checker for generated images (models that have one)", default=False
        ),
    ) -> list[Path]:
        """Run a single prediction on the model."""
        outputs = self.engine.generate(
            prompt=prompt,
            negative_prompt=negative_prompt,
            image=image,
            mask=mask,
            width=width,
            height=height,
            num_outputs=num_outputs,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            scheduler=scheduler,
            seed=seed,
            prompt_strength=prompt_strength,
            outpainting=outpainting,
            lora=lora,
            lora_scale=lora_scale,
            control_image=control_image,
            controlnet_conditioning_scale=controlnet_conditioning_scale,
            disable_safety_checker=disable_safety_checker,
        )
        folder = tempfile.mkdtemp(prefix="lightbox-")
        paths = [os.path.join(folder, f"out-{i}.png") for i in range(len(outputs))]
        for image, path in zip(outputs, paths):
            images.save_png(image, path, self.png_level)
        return [Path(p) for p in paths]


def input_defaults() -> dict:
    """The defaults of run()'s inputs, for calling it directly (benchmarks)."""
    return {
        name: param.default.default
        for name, param in inspect.signature(Predictor.run).parameters.items()
        if name != "self"
    }
