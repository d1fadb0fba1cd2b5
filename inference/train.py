"""Lightbox's Cog trainer: a DreamBooth-style LoRA for an SD or SDXL model.

Cog runs `train` in its training mode (`python -m cog.server.http --x-mode
train`, COG_TRAIN_TYPE_STUB=inference/train.py:train; `python -m
inference.serve --train` does both). One base model per server, chosen as the
predictor's is (MODEL_ID, MODEL_FAMILY), loaded once when the server starts.
Inputs are named as on Replicate's SDXL trainer; the output's `weights` is a
.safetensors file in the format the predictor's `lora` input loads.

The instance images come in an archive (inference.archives); each image's
prompt is the caption prefix, which holds the trigger word, followed by its
caption when the archive has one. Only the UNet's attention layers get LoRA
weights (the text encoders stay frozen), as diffusers' DreamBooth LoRA
examples do by default. With the same seed and inputs a CPU gives the same
weights, bit for bit: every random draw comes from one seeded generator and
the thread count is fixed (inference.engine.pin_threads).
"""

import json
import math
import os
import tempfile
import time
from typing import Optional

from cog import BaseModel, Input, Path

from inference import archives, families

FAMILY = families.from_environment()
MODEL_ID = os.environ.get("MODEL_ID", "")
TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
WEIGHTS_NAME = "lora.safetensors"
# The base model, loaded once per server: (pipeline, its noise scheduler).
_loaded = {}


class TrainingOutput(BaseModel):
    weights: Path


def train(
    input_images: Path = Input(
        description="A zip or tar archive of the instance images (.png, .jpg, .jpeg, .webp); a .txt file "
        "with an image's name is its caption",
    ),
    token_string: str = Input(
        description="The trigger word: a unique string the LoRA learns to mean what the images show",
        default="TOK",
        min_length=1,
        max_length=100,
    ),
    caption_prefix: str = Input(
        description="The start of every image's prompt; must contain token_string. Its caption, if any, "
        "follows. Default: 'a photo of <token_string>'",
        default="",
        max_length=500,
    ),
    max_train_steps: int = Input(description="Number of training steps", default=1000, ge=1, le=20000),
    learning_rate: float = Input(description="Learning rate of the LoRA weights", default=1e-4, ge=1e-8, le=1),
    lora_rank: int = Input(description="Rank of the LoRA matrices", default=32, ge=1, le=256),
    resolution: int = Input(
        description="Square size the images are resized and center-cropped to (a multiple of 8)",
        default=FAMILY.width,
        ge=64,
        le=2048,
    ),
    train_batch_size: int = Input(description="Images per step", default=4, ge=1, le=64),
    seed: Optional[int] = Input(description="Random seed. Leave blank to randomize the seed", default=None),
    with_prior_preservation: bool = Input(
        description="Also train on images the base model makes of class_prompt, so the class keeps its look",
        default=False,
    ),
    class_prompt: str = Input(
        description="The class the subject belongs to, e.g. 'a photo of a dog' (prior preservation)",
        default="",
        max_length=500,
    ),
    num_class_images: int = Input(
        description="How many class images the base model makes (prior preservation)", default=50, ge=1, le=1000
    ),
    prior_loss_weight: float = Input(description="Weight of the class images' loss", default=1.0, ge=0, le=10),
) -> TrainingOutput:
    """Train a LoRA on the instance images and return its weights."""
    trainer = Trainer(*load())
    path = trainer.run(
        archive=input_images,
        token_string=token_string.strip(),
        caption_prefix=caption_prefix,
        steps=max_train_steps,
        learning_rate=learning_rate,
        rank=lora_rank,
        resolution=resolution,
        batch_size=train_batch_size,
        seed=seed,
        class_prompt=class_prompt if with_prior_preservation else None,
        num_class_images=num_class_images,
        prior_loss_weight=prior_loss_weight,
    )
    return TrainingOutput(weights=Path(path))


def load(model_id: str = "", family: families.Family | None = None):
    """The base pipeline and its training noise scheduler, once per process."""
    model_id = model_id or MODEL_ID
    family = family or FAMILY
    key = (model_id, family.name)
    if key not in _loaded:
        import torch
        from diffusers import DDPMScheduler, DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        from inference import engine, weights

        diffusers_logging.disable_progress_bar()
        engine.pin_threads()
        device = engine.pick_device()
        dtype = _frozen_dtype(device)
        folder = weights.model_dir(model_id, dtype == torch.float16)
        variant = "fp16" if dtype == torch.float16 and weights.has_fp16_variant(folder) else None
        started = time.monotonic()
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, variant=variant)
        if type(pipe).__name__ not in (
            engine.PIPELINES[(False, "txt2img", False)],
            engine.PIPELINES[(True, "txt2img", False)],
        ):
            raise RuntimeError(f"{model_id} is a {type(pipe).__name__}: only SD and SDXL models can be trained")
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        freeze(pipe)
        noise = DDPMScheduler.from_config(pipe.scheduler.config)
        print(f"loaded {model_id} ({family.name}) for training on {device} in {time.monotonic() - started:.1f}s")
        _loaded.clear()
        _loaded[key] = (pipe, noise, family)
    return _loaded[key]


def freeze(pipe) -> None:
    """Only the LoRA's weights train: everything the pipeline has stays as it is."""
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False)


def _frozen_dtype(device: str):
    """The frozen weights' dtype: bfloat16 on a GPU that has it (float16
    overflows in SDXL's VAE), float32 on a CPU. The LoRA's own weights and its
    optimizer always stay float32."""
    import torch

    wanted = os.environ.get("LIGHTBOX_DTYPE")
    if wanted:
        return getattr(torch, wanted)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class Trainer:
    def __init__(self, pipe, noise_scheduler, family: families.Family):
        self.pipe = pipe
        self.noise_scheduler = noise_scheduler
        self.family = family
        self.device = pipe.device
        self.dtype = pipe.unet.dtype
        self._embeddings = {}
        self.seconds_per_step = None

    def prompts(self, examples, token: str, prefix: str) -> list[str]:
        prefix = (prefix or f"a photo of {token}").strip()
        if token not in prefix:
            raise ValueError(f"caption_prefix must contain token_string ({token!r}): {prefix[:100]!r} does not")
        head = prefix.rstrip(", ")
        return [f"{head}, {e.caption}" if e.caption else head for e in examples]

    def run(
        self,
        archive,
        token_string: str,
        caption_prefix: str,
        steps: int,
        learning_rate: float,
        rank: int,
        resolution: int,
        batch_size: int,
        seed: int | None,
        class_prompt: str | None = None,
        num_class_images: int = 50,
        prior_loss_weight: float = 1.0,
        out_dir: str | None = None,
    ) -> str:
        import torch
        from peft import LoraConfig

        if not token_string:
            raise ValueError("token_string is empty")
        if class_prompt is not None and not class_prompt.strip():
            raise ValueError("with_prior_preservation needs a class_prompt, e.g. 'a photo of a dog'")
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "big") >> 1
        print(f"Using seed: {seed}")
        resolution = resolution // 8 * 8
        examples = archives.read(archive, short_side=resolution)
        prompts = self.prompts(examples, token_string, caption_prefix)
        captioned = sum(1 for e in examples if e.caption)
        print(
            f"{len(examples)} images ({captioned} with captions) at {resolution}x{resolution}; prompt: {prompts[0]!r}"
        )

        generator = torch.Generator(self.device).manual_seed(seed)
        torch.manual_seed(seed)  # peft's initialisation of the LoRA weights
        instances = self.encode_images(examples, resolution)
        embeddings = [self.embed(p) for p in prompts]
        classes = None
        if class_prompt is not None:
            classes = self.class_latents(class_prompt.strip(), num_class_images, resolution, generator)

        unet = self.pipe.unet
        adapter = "lightbox_lora"  # not "training": every nn.Module has that attribute
        unet.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGET_MODULES),
            adapter_name=adapter,
        )
        try:
            params = [p for p in unet.parameters() if p.requires_grad]
            for p in params:
                p.data = p.data.float()
            optimizer = torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
            unet.train()
            order = _Cycle(len(examples), batch_size, generator)
            class_order = _Cycle(len(classes[0]), batch_size, generator) if classes else None
            started = time.monotonic()
            for step in range(1, steps + 1):
                loss = self.step(
                    instances, embeddings, order.next(), classes, class_order, prior_loss_weight, generator
                )
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                value = loss.item()
                if not math.isfinite(value):
                    raise ValueError(f"the loss became {value} at step {step}: lower learning_rate")
                print(f"step {step}/{steps} loss={value:.6f}", flush=True)
            elapsed = time.monotonic() - started
            self.seconds_per_step = elapsed / steps  # for bench/train_steps.py
            print(f"trained {steps} steps in {elapsed:.1f}s ({steps / elapsed:.2f} steps/s)")
            return self.save(adapter, out_dir)
        finally:
            unet.eval()
            unet.delete_adapters(adapter)
            self._embeddings.clear()

    # -- data ------------------------------------------------------------

    def encode_images(self, examples, resolution: int):
        """Each image's latent distribution (mean, std), computed once: the
        VAE is frozen, so only the draw from it differs between steps."""
        import numpy as np
        import torch

        vae = self.pipe.vae
        means, stds, sizes = [], [], []
        for example in examples:
            resized = archives.fit_short_side(example.image, resolution)
            left = (resized.width - resolution) // 2
            top = (resized.height - resolution) // 2
            cropped = resized.crop((left, top, left + resolution, top + resolution))
            pixels = torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
            with torch.no_grad():
                dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            # SDXL's size conditioning: the original size and where the crop starts.
            width, height = example.original_size
            sizes.append((height, width, top, left))
        return torch.cat(means), torch.cat(stds), sizes, resolution

    def embed(self, prompt: str):
        """(prompt embeddings, pooled embeddings or None) of the frozen text encoders."""
        import torch

        if prompt not in self._embeddings:
            with torch.no_grad():
                if self.family.xl:
                    embeds, _, pooled, _ = self.pipe.encode_prompt(
                        prompt=prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
                    )
                else:
                    embeds, _ = self.pipe.encode_prompt(prompt, self.device, 1, False)
                    pooled = None
            self._embeddings[prompt] = (embeds, pooled)
        return self._embeddings[prompt]

    def class_latents(self, prompt: str, count: int, resolution: int, generator):
        """Latents of `count` images the base model makes of the class prompt:
        the space the VAE encodes into, so they go to training as they are."""
        import torch

        f = self.family
        print(f"making {count} class images of {prompt!r}")
        latents = []
        with torch.no_grad():
            for start in range(0, count, 4):
                n = min(4, count - start)
                latents.append(
                    self.pipe(
                        prompt=prompt,
                        num_images_per_prompt=n,
                        num_inference_steps=f.steps,
                        guidance_scale=f.guidance,
                        width=resolution,
                        height=resolution,
                        generator=generator,
                        output_type="latent",
                    ).images
                )
                print(f"class images {start + n}/{count}", flush=True)
        latents = torch.cat(latents)
        sizes = [(resolution, resolution, 0, 0)] * count
        return latents, sizes, self.embed(prompt)

    # -- a step ----------------------------------------------------------

    def step(self, instances, embeddings, batch, classes, class_order, prior_loss_weight, generator):
        import torch
        import torch.nn.functional as F

        means, stds, sizes, resolution = instances
        scaling = self.pipe.vae.config.scaling_factor
        index = torch.tensor(batch, device=means.device)
        sample = torch.randn(means[index].shape, generator=generator, device=self.device, dtype=means.dtype)
        latents = (means[index] + stds[index] * sample) * scaling
        texts = [embeddings[i] for i in batch]
        batch_sizes = [sizes[i] for i in batch]
        n_instance = len(batch)
        if classes is not None:
            class_latents, class_sizes, class_text = classes
            chosen = class_order.next()
            latents = torch.cat([latents, class_latents[torch.tensor(chosen, device=means.device)].to(latents.dtype)])
            texts += [class_text] * len(chosen)
            batch_sizes += [class_sizes[i] for i in chosen]

        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        timesteps = torch.randint(
            0,
            self.noise_scheduler.config.num_train_timesteps,
            (latents.shape[0],),
            generator=generator,
            device=self.device,
        ).long()
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        encoder_states = torch.cat([t[0] for t in texts])
        extra = {}
        if self.family.xl:
            pooled = torch.cat([t[1] for t in texts])
            time_ids = torch.cat(
                [
                    self.pipe._get_add_time_ids(
                        (h, w),
                        (top, left),
                        (resolution, resolution),
                        dtype=encoder_states.dtype,
                        text_encoder_projection_dim=self.pipe.text_encoder_2.config.projection_dim,
                    )
                    for h, w, top, left in batch_sizes
                ]
            ).to(self.device)
            extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        prediction = self.pipe.unet(
            noisy.to(self.dtype), timesteps, encoder_states.to(self.dtype), return_dict=False, **extra
        )[0]
        prediction, target = prediction.float(), target.float()
        loss = F.mse_loss(prediction[:n_instance], target[:n_instance])
        if classes is not None:
            loss = loss + prior_loss_weight * F.mse_loss(prediction[n_instance:], target[n_instance:])
        return loss

    # -- the result ------------------------------------------------------

    def save(self, adapter: str, out_dir: str | None = None) -> str:
        import diffusers
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        unet = self.pipe.unet
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=adapter))
        folder = out_dir or tempfile.mkdtemp(prefix="lightbox-train-")
        metadata = {
            key: sorted(value) if isinstance(value, set) else value
            for key, value in unet.peft_config[adapter].to_dict().items()
        }
        # The pipeline class's own saver writes the keys its loader expects.
        getattr(diffusers, type(self.pipe).__name__).save_lora_weights(
            folder,
            unet_lora_layers=layers,
            weight_name=WEIGHTS_NAME,
            safe_serialization=True,
            unet_lora_adapter_metadata=metadata,
        )
        path = os.path.join(folder, WEIGHTS_NAME)
        canonical_header(path)
        print(f"saved {len(layers)} LoRA tensors, {os.path.getsize(path)} bytes")
        return path


def canonical_header(path: str) -> None:
    """Rewrite a .safetensors header with its keys sorted: safetensors writes
    the metadata map in a random order, so the same weights would otherwise
    give different bytes from one save to the next."""
    with open(path, "r+b") as f:
        data = f.read()
        size = int.from_bytes(data[:8], "little")
        header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)  # the tensors stay 8-byte aligned
        f.seek(0)
        f.write(len(header).to_bytes(8, "little") + header + data[8 + size :])
        f.truncate()


class _Cycle:
    """Batches of indices: every item once per epoch, in an order shuffled by
    the training's generator, wrapping into the next epoch mid-batch."""

    def __init__(self, size: int, batch: int, generator):
        self.size, self.batch, self.generator = size, batch, generator
        self.queue = []

    def next(self) -> list[int]:
        import torch

        out = []
        while len(out) < self.batch:
            if not self.queue:
                self.queue = torch.randperm(self.size, generator=self.generator, device=self.generator.device).tolist()
            out.append(self.queue.pop(0))
        return out


def _preload() -> None:
    """In Cog's worker, load the model while the server starts (its setup),
    so READY means ready and a missing model fails setup with how to get it."""
    try:
        import coglet

        active = coglet.server.active
    except Exception:
        active = False
    if active and MODEL_ID:
        load()


_preload()
