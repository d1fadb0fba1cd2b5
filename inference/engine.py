"""One loaded model and everything a prediction does with it.

The Engine owns the text-to-image pipeline and builds the image-to-image,
inpainting and ControlNet variants from it with from_pipe (shared weights,
~1 ms). It decodes latents itself, so outputs become uint8 on the device and
a VAE that diffusers would upcast to float32 on every call can stay in
bfloat16 instead.
"""

import json
import math
import os
import platform
import time
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from inference import families, images, weights

MAX_LOADED_LORAS = 4

# (xl, mode, controlnet) -> diffusers pipeline class name
PIPELINES = {
    (False, "txt2img", False): "StableDiffusionPipeline",
    (False, "img2img", False): "StableDiffusionImg2ImgPipeline",
    (False, "inpaint", False): "StableDiffusionInpaintPipeline",
    (False, "txt2img", True): "StableDiffusionControlNetPipeline",
    (False, "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    (False, "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    (True, "txt2img", False): "StableDiffusionXLPipeline",
    (True, "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    (True, "inpaint", False): "StableDiffusionXLInpaintPipeline",
    (True, "txt2img", True): "StableDiffusionXLControlNetPipeline",
    (True, "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    (True, "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}


def make_scheduler(name: str, config: dict):
    import diffusers

    classes = {
        "DDIM": ("DDIMScheduler", {}),
        "K_EULER": ("EulerDiscreteScheduler", {}),
        "K_EULER_ANCESTRAL": ("EulerAncestralDiscreteScheduler", {}),
        "DPMSolverMultistep": ("DPMSolverMultistepScheduler", {}),
        "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
        "HeunDiscrete": ("HeunDiscreteScheduler", {}),
        "KarrasDPM": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        "LCM": ("LCMScheduler", {}),
    }
    class_name, extra = classes[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SpeedOptions:
    """What diffusers documents for speed, each switched by the environment.
    All off by default: they cost minutes of compilation at start."""

    compile: bool = False
    compile_mode: str = "reduce-overhead"
    channels_last: bool = False
    fuse_qkv: bool = False
    warmup: tuple = ()  # (width, height) pairs run once at setup

    @classmethod
    def from_environment(cls, family: families.Family) -> "SpeedOptions":
        compile_ = env_flag("LIGHTBOX_COMPILE")
        sizes = os.environ.get("LIGHTBOX_WARMUP")
        if sizes is None:
            warmup = ((family.width, family.height),) if compile_ else ()
        else:
            warmup = tuple(tuple(int(v) for v in size.lower().split("x")) for size in sizes.split(",") if size.strip())
        return cls(
            compile=compile_,
            compile_mode=os.environ.get("LIGHTBOX_COMPILE_MODE", "reduce-overhead"),
            channels_last=env_flag("LIGHTBOX_CHANNELS_LAST", compile_),
            fuse_qkv=env_flag("LIGHTBOX_FUSE_QKV", compile_),
            warmup=warmup,
        )


def pick_device() -> str:
    import torch

    wanted = os.environ.get("LIGHTBOX_DEVICE")
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str):
    import torch

    wanted = os.environ.get("LIGHTBOX_DTYPE")
    if wanted:
        return getattr(torch, wanted)
    return torch.float16 if device.startswith("cuda") else torch.float32


def pin_threads() -> int:
    """A fixed intra-op thread count: results on a CPU differ in a pixel here
    and there between thread counts, and the same seed must give the same image."""
    import torch

    threads = int(os.environ.get("LIGHTBOX_TORCH_THREADS") or min(os.cpu_count() or 1, 8))
    torch.set_num_threads(threads)
    return threads


class Engine:
    def __init__(self, pipe, family: families.Family, controlnet=None, speed=SpeedOptions()):
        import torch

        self.base = pipe
        self.family = family
        self.controlnet = controlnet
        self.speed = speed
        self.device = pipe.device
        self.scheduler_config = dict(pipe.scheduler.config)
        self.safety_checker = getattr(pipe, "safety_checker", None)
        self.pipes = {}
        self.schedulers = {}
        self.loras = OrderedDict()  # lora reference -> adapter name
        self.lora_count = 0
        self.vae = pipe.vae
        self.preprocess_control = os.environ.get("CONTROLNET_PREPROCESS", "canny")
        # diffusers upcasts such a VAE (SDXL's overflows in float16) to float32
        # and back on every call; bfloat16 has float32's range and does not
        # overflow, so keep it there once.
        if (
            family.xl  # only the SDXL pipelines upcast
            and self.vae.dtype == torch.float16
            and getattr(self.vae.config, "force_upcast", False)
            and os.environ.get("LIGHTBOX_VAE_DTYPE", "bfloat16") == "bfloat16"
            and (self.device.type != "cuda" or torch.cuda.is_bf16_supported())
        ):
            self.vae.to(torch.bfloat16)
        self._apply_speed_options()

    # -- loading ---------------------------------------------------------

    @classmethod
    def load(cls, model_id: str, family: families.Family) -> "Engine":
        import torch
        from diffusers import ControlNetModel, DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # keep setup logs readable
        pin_threads()
        device = pick_device()
        dtype = pick_dtype(device)
        fp16 = dtype == torch.float16
        folder = weights.model_dir(model_id, fp16)
        detected = families.from_config(folder)
        if detected and detected != family.name:
            print(f"config says model family {detected}; serving as {family.name}")
        variant = "fp16" if fp16 and weights.has_fp16_variant(folder) else None
        started = time.monotonic()
        pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, variant=variant)
        if type(pipe).__name__ not in (PIPELINES[(False, "txt2img", False)], PIPELINES[(True, "txt2img", False)]):
            raise RuntimeError(
                f"{model_id} is a {type(pipe).__name__}: only SD and SDXL text-to-image models are served"
            )
        pipe.to(device)
        controlnet = None
        controlnet_id = os.environ.get("CONTROLNET_ID") or (
            os.path.join(folder, "controlnet") if os.path.isdir(os.path.join(folder, "controlnet")) else None
        )
        if controlnet_id:
            controlnet_dir = weights.model_dir(controlnet_id, fp16)
            controlnet = ControlNetModel.from_pretrained(controlnet_dir, torch_dtype=dtype).to(device)
        print(
            f"loaded {model_id} ({family.name}) on {device} in {time.monotonic() - started:.1f}s"
            + (f" with ControlNet {controlnet_id}" if controlnet else "")
        )
        import diffusers

        gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine()
        engine = cls(pipe, family, controlnet, SpeedOptions.from_environment(family))
        # Printed with every prediction too: its logs, which Lightbox keeps, then say
        # what made its images (a bundle's manifest records it; docs/bundles.md).
        engine.runtime = f"torch {torch.__version__}; diffusers {diffusers.__version__}; device {device} ({gpu})"
        print(f"runtime: {engine.runtime}")
        engine.warm_up()
        return engine

    def _apply_speed_options(self) -> None:
        import torch

        s = self.speed
        modules = [self.base.unet, self.vae] + ([self.controlnet] if self.controlnet else [])
        if s.fuse_qkv:
            for m in (self.base.unet, self.vae):
                m.fuse_qkv_projections()
        if s.channels_last:
            for m in modules:
                m.to(memory_format=torch.channels_last)
        if s.compile:
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True
            inductor.epilogue_fusion = False
            self.base.unet.compile(mode=s.compile_mode, fullgraph=True)
            self.vae.decoder.compile(mode=s.compile_mode, fullgraph=True)

    def warm_up(self) -> None:
        for width, height in self.speed.warmup:
            started = time.monotonic()
            self.generate(prompt="warm-up", width=width, height=height, num_inference_steps=2, seed=0, quiet=True)
            print(f"warmed up {width}x{height} in {time.monotonic() - started:.1f}s")

    # -- building blocks -----------------------------------------------

    def pipeline(self, mode: str, control: bool):
        key = (mode, control)
        if key not in self.pipes:
            import diffusers

            cls = getattr(diffusers, PIPELINES[(self.family.xl, mode, control)])
            if mode == "txt2img" and not control:
                self.pipes[key] = self.base
            else:
                extra = {"controlnet": self.controlnet} if control else {}
                self.pipes[key] = cls.from_pipe(self.base, **extra)
        pipe = self.pipes[key]
        # from_pipe copies neither of these, so set them on the pipe we call.
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def use_lora(self, ref: str | None, scale: float) -> None:
        pipe = self.base
        if not ref or scale == 0:
            if self.loras:
                pipe.disable_lora()
            return
        name = self.loras.get(ref)
        if name is None:
            path = weights.lora_file(ref)
            if self.speed.fuse_qkv:
                self.base.unet.unfuse_qkv_projections()  # LoRAs target to_q/to_k/to_v
            self.lora_count += 1
            name = f"lora{self.lora_count}"
            try:
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            except Exception as e:
                self._forget_adapter(name)
                raise ValueError(f"lora {ref!r} could not be loaded: {e}") from e
            self.loras[ref] = name
            while len(self.loras) > MAX_LOADED_LORAS:
                _, old = self.loras.popitem(last=False)
                self._forget_adapter(old)
        self.loras.move_to_end(ref)
        pipe.enable_lora()
        pipe.set_adapters([name], adapter_weights=[scale])

    def _forget_adapter(self, name: str) -> None:
        try:
            self.base.delete_adapters(name)
        except Exception:
            pass

    def decode(self, latents, check_safety: bool):
        """Latents -> uint8 HWC arrays (plus NSFW flags), converted on the device."""
        import torch

        vae = self.vae
        config = vae.config
        latents = latents.to(vae.dtype)
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        upcast = vae.dtype == torch.float16 and self.family.xl and getattr(config, "force_upcast", False)
        if upcast:  # LIGHTBOX_VAE_DTYPE other than bfloat16: diffusers' way, float32 for the decode
            vae.to(torch.float32)
            latents = latents.float()
        try:
            decoded = vae.decode(latents, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        flags = [False] * decoded.shape[0]
        if check_safety and self.safety_checker is not None:
            # The pipelines skip it for latent output; run the base pipe's own,
            # but keep the pixels it would black out: Lightbox stores flagged
            # images rated nsfw and shows them only to those who opt in.
            _, nsfw = self.base.run_safety_checker(decoded.clone(), self.device, self.base.unet.dtype)
            flags = [bool(flag) for flag in (nsfw or flags)]
        pixels = ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy(), flags

    # -- a prediction --------------------------------------------------

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        image=None,
        mask=None,
        width: int | None = None,
        height: int | None = None,
        num_outputs: int = 1,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        scheduler: str | None = None,
        seed: int | None = None,
        prompt_strength: float = 0.8,
        outpainting: str | None = None,
        lora: str | None = None,
        lora_scale: float = 1.0,
        control_image=None,
        controlnet_conditioning_scale: float = 1.0,
        disable_safety_checker: bool = False,
        quiet: bool = False,
    ) -> list[Image.Image]:
        import torch

        f = self.family
        width = f.width if width is None else width
        height = f.height if height is None else height
        steps = f.steps if num_inference_steps is None else num_inference_steps
        guidance = f.guidance if guidance_scale is None else guidance_scale
        scheduler = scheduler or f.scheduler
        if scheduler not in f.schedulers:
            raise ValueError(
                f"scheduler {scheduler} does not fit {f.name} models; choose one of {', '.join(f.schedulers)}"
            )
        if scheduler == "LCM" and steps > 50:
            raise ValueError("the LCM scheduler takes at most 50 steps")
        if (mask is not None or outpainting) and image is None:
            raise ValueError("mask and outpainting need an image")
        if control_image is not None and self.controlnet is None:
            raise ValueError("this server has no ControlNet: start it with CONTROLNET_ID set")
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "big") >> 1
        if not quiet:
            print(f"Using seed: {seed}")
            if getattr(self, "runtime", ""):
                print(f"runtime: {self.runtime}")

        w, h = images.round8(width), images.round8(height)
        if (w, h) != (width, height) and not quiet:
            print(f"size rounded down to a multiple of 8: {w}x{h}")
        call = dict(
            prompt=prompt,
            negative_prompt=negative_prompt or None,
            num_inference_steps=steps,
            guidance_scale=guidance,
            num_images_per_prompt=num_outputs,
            generator=[torch.Generator(self.device).manual_seed(seed + i) for i in range(num_outputs)],
            output_type="latent",
        )
        original = keep = None  # for inpainting: the canvas and its repaint mask
        if image is None:
            mode = "txt2img"
            call.update(width=w, height=h)
        else:
            init = images.load_rgb(image)
            if mask is None and not outpainting:
                mode = "img2img"
                strength = prompt_strength
                init = init.resize((w, h), Image.LANCZOS) if init.size != (w, h) else init
                if strength <= 0:
                    return [init.copy() for _ in range(num_outputs)]
                call.update(image=init, strength=strength)
            else:
                mode = "inpaint"
                repaint = images.load_mask(mask, init.size) if mask is not None else None
                strength = prompt_strength
                if outpainting:
                    init, repaint = images.extend_canvas(init, repaint, images.parse_outpainting(outpainting))
                    strength = 1.0  # the new border starts as stretched edges: paint it from noise
                    if max(init.size) > 4096:
                        raise ValueError(
                            f"outpainting makes a {init.size[0]}x{init.size[1]} canvas; at most 4096 px a side"
                        )
                original, keep = init, repaint
                w, h = images.working_size(*init.size)
                work = init.resize((w, h), Image.LANCZOS) if init.size != (w, h) else init
                mask_img = images.mask_image(repaint).resize((w, h), Image.NEAREST)
                if strength <= 0:
                    return [original.copy() for _ in range(num_outputs)]
                call.update(image=work, mask_image=mask_img, strength=strength, width=w, height=h)
            if int(steps * strength) < 1:
                steps = math.ceil(1 / strength)
                call["num_inference_steps"] = steps
                if not quiet:
                    print(f"{steps} steps, so that prompt_strength {strength} leaves at least one")

        control = control_image is not None
        if control:
            hint = images.load_rgb(control_image).resize((w, h), Image.LANCZOS)
            if self.preprocess_control == "canny":
                hint = images.canny(hint)
            call["image" if mode == "txt2img" else "control_image"] = hint
            call["controlnet_conditioning_scale"] = controlnet_conditioning_scale

        pipe = self.pipeline(mode, control)
        if scheduler not in self.schedulers:
            self.schedulers[scheduler] = make_scheduler(scheduler, self.scheduler_config)
        pipe.scheduler = self.schedulers[scheduler]
        self.use_lora(lora, lora_scale)

        def progress(p, i, t, tensors):
            if not quiet:
                print(f"step {i + 1}/{p.num_timesteps}", flush=True)
            return tensors

        with torch.inference_mode():
            latents = pipe(callback_on_step_end=progress, **call).images
            pixels, nsfw = self.decode(latents, check_safety=not disable_safety_checker)

        if any(nsfw):
            # One flag per output, in the line Lightbox reads (app/core/logs.py).
            print("nsfw_content_detected: " + json.dumps(nsfw), flush=True)
        outputs = []
        for array in pixels:
            out = Image.fromarray(array)
            if original is not None:
                out = images.composite(original, out, keep)
            outputs.append(out)
        return outputs
