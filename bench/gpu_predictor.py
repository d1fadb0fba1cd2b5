"""Raw diffusers against Lightbox's predictor, on one GPU, row by row.

    python bench/gpu_predictor.py [--rows sd-turbo-1,sd-turbo-4,...] [--compile ROWS] [--runs 5]
    python bench/gpu_predictor.py --tiny      # the same code on a CPU, tiny shapes
    python bench/gpu_predictor.py --rows sd-turbo-1 --png-level 0   # (b) with stored PNGs

For each row, in one process on one device:
  (a) raw diffusers as its docs show it: fp16, default attention, PIL output;
  (b) our Predictor.run() end to end, PNG files included, on the same weights;
  (c) for the rows named by --compile, (b) again with the speed options
      diffusers documents (torch.compile, channels_last, fused QKV projections,
      a warm-up per resolution at setup), as LIGHTBOX_COMPILE=1 would set them.
Each figure is the median of --runs runs after two warm-up runs. The models
are full-size architectures with random weights built from their configs
(nothing can be downloaded on the GPU machines); speed does not depend on
the weights' values. Each row prints as soon as it is done.
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "A photograph of an astronaut riding a horse on the moon, highly detailed"


@dataclass(frozen=True)
class Row:
    name: str
    arch: str  # which full-size architecture
    family: str
    size: int
    steps: int
    guidance: float
    scheduler: str  # the predictor's name for the pipeline's own scheduler


ROWS = [
    Row("sd-turbo-1", "sd-turbo", "sd-turbo", 512, 1, 0.0, "K_EULER"),
    Row("sd-turbo-4", "sd-turbo", "sd-turbo", 512, 4, 0.0, "K_EULER"),
    Row("sdxl-turbo-1", "sdxl-turbo", "sdxl-turbo", 512, 1, 0.0, "K_EULER_ANCESTRAL"),
    Row("sd15-25", "sd15", "sd15", 512, 25, 7.5, "PNDM"),
    Row("sdxl-30", "sdxl", "sdxl", 1024, 30, 5.0, "K_EULER"),
]
ROWS_BY_NAME = {r.name: r for r in ROWS}

# Full-size configs, as in the models' published config files.
CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
OPENCLIP_H = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
)
OPENCLIP_BIGG = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)
SD_UNET = dict(
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    sample_size=64,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
UNETS = {
    "sd15": dict(SD_UNET, cross_attention_dim=768, attention_head_dim=8),
    "sd-turbo": dict(SD_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True),
}
UNETS["sdxl"] = UNETS["sdxl-turbo"] = dict(
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    sample_size=128,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
SCHEDULERS = {
    "sd15": ("PNDMScheduler", dict(BETAS, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)),
    "sd-turbo": ("EulerDiscreteScheduler", dict(BETAS, steps_offset=1, timestep_spacing="trailing")),
    "sdxl-turbo": ("EulerAncestralDiscreteScheduler", dict(BETAS, timestep_spacing="trailing")),
    "sdxl": ("EulerDiscreteScheduler", dict(BETAS, steps_offset=1, timestep_spacing="leading")),
}


def build_pipeline(arch: str, device: str, dtype, tiny: bool):
    """A pipeline with random weights, made on the device (fast even at 2.6B parameters)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from inference import tiny as tiny_models

    xl = "xl" in arch
    if tiny:
        build = tiny_models.build_sdxl if xl else tiny_models.build_sd
        pipe = build(Path(tempfile.mkdtemp()))
    else:
        token_dir = Path(tempfile.mkdtemp())
        tiny_models.write_tokenizer(token_dir)  # text length (77) is what costs, not the vocabulary
        tokenizer = CLIPTokenizer.from_pretrained(token_dir)
        ids = dict(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        with torch.device(device):
            unet = diffusers.UNet2DConditionModel(**UNETS[arch])
            vae = diffusers.AutoencoderKL(
                **VAE,
                sample_size=1024 if xl else 512,
                scaling_factor=0.13025 if xl else 0.18215,
                force_upcast=xl,
            )
            if xl:
                encoders = dict(
                    text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
                    text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG, **ids)),
                    tokenizer_2=tokenizer,
                )
            else:
                te = OPENCLIP_H if arch == "sd-turbo" else CLIP_L
                encoders = dict(text_encoder=CLIPTextModel(CLIPTextConfig(**te, **ids)))
        class_name, config = SCHEDULERS[arch]
        scheduler = getattr(diffusers, class_name)(**config)
        if xl:
            pipe = diffusers.StableDiffusionXLPipeline(
                vae=vae, unet=unet, tokenizer=tokenizer, scheduler=scheduler, add_watermarker=False, **encoders
            )
        else:
            pipe = diffusers.StableDiffusionPipeline(
                vae=vae,
                unet=unet,
                tokenizer=tokenizer,
                scheduler=scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                **encoders,
            )
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def median_seconds(fn, runs: int, sync) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        sync()
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS_BY_NAME), help="comma-separated: " + ", ".join(ROWS_BY_NAME))
    parser.add_argument(
        "--compile", default="", help="rows to also time with the speed options, e.g. sd-turbo-4,sdxl-30"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny models at 64 px: check the script on a CPU")
    parser.add_argument("--json", help="append each row's figures to this file as JSON lines")
    parser.add_argument(
        "--png-level",
        type=int,
        default=int(os.environ.get("LIGHTBOX_PNG_LEVEL", "1")),
        help="deflate level of (b)'s and (c)'s PNG files, as LIGHTBOX_PNG_LEVEL (0: stored, the fastest)",
    )
    args = parser.parse_args(argv)

    import torch

    from inference import families
    from inference.engine import Engine, SpeedOptions, pin_threads
    from inference.predict import Predictor, input_defaults

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cpu":
        pin_threads()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    print(
        f"device {name}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"{'tiny' if args.tiny else 'full-size'} random-weight models",
        flush=True,
    )

    rows = [ROWS_BY_NAME[n] for n in args.rows.split(",") if n]
    compiled = set(filter(None, args.compile.split(",")))
    defaults = input_defaults()
    pipes = {}
    for i, row in enumerate(rows):
        size = 64 if args.tiny else row.size
        if args.tiny:
            row = Row(row.name, row.arch, row.family, row.size, min(row.steps, 2), row.guidance, row.scheduler)
        if row.arch not in pipes:
            pipes.clear()
            if device == "cuda":
                torch.cuda.empty_cache()
            started = time.perf_counter()
            pipes[row.arch] = build_pipeline(row.arch, device, dtype, args.tiny)
            print(f"built {row.arch} in {time.perf_counter() - started:.1f}s", flush=True)
        pipe = pipes[row.arch]
        family = families.get(row.family)
        generator = torch.Generator(device)

        def raw():
            generator.manual_seed(0)
            return pipe(
                prompt=PROMPT,
                width=size,
                height=size,
                num_inference_steps=row.steps,
                guidance_scale=row.guidance,
                generator=generator,
            ).images[0]

        inputs = dict(
            defaults,
            prompt=PROMPT,
            width=size,
            height=size,
            num_inference_steps=row.steps,
            guidance_scale=row.guidance,
            scheduler=row.scheduler,
            seed=0,
        )

        def ours(predictor):
            # The "step k/N" lines still print (into a buffer, as the Cog worker's pipe would take them).
            with contextlib.redirect_stdout(io.StringIO()):
                [path] = predictor.run(**inputs)
            os.unlink(path)

        try:
            a = median_seconds(raw, args.runs, sync)
            vae_dtype = pipe.vae.dtype
            predictor = Predictor()
            predictor.engine = Engine(pipe, family)
            predictor.png_level = args.png_level
            b = median_seconds(lambda: ours(predictor), args.runs, sync)
            gen_inputs = {k: v for k, v in inputs.items()}
            g = median_seconds(lambda: predictor.engine.generate(quiet=True, **gen_inputs), args.runs, sync)
            pipe.vae.to(vae_dtype)  # our Engine may keep an SDXL VAE in bfloat16
        except Exception:
            traceback.print_exc()
            pipes.clear()
            continue
        result = dict(
            row=row.name,
            device=name,
            size=size,
            steps=row.steps,
            a_ms=a * 1000,
            b_ms=b * 1000,
            b_over_a=b / a,
            generate_ms=g * 1000,
            png_level=args.png_level,
        )
        print(
            f"{row.name:13s} {size}x{size} {row.steps:2d} steps  (a) raw {a * 1000:8.1f} ms"
            f"  (b) ours {b * 1000:8.1f} ms  b/a {b / a:.3f}  (b without PNG {g * 1000:.1f} ms)",
            flush=True,
        )
        if row.name in compiled:
            try:
                torch._dynamo.reset()  # forget graphs compiled for another model of the same class
                started = time.perf_counter()
                fast = Predictor()
                fast.engine = Engine(
                    pipe,
                    family,
                    speed=SpeedOptions(
                        compile=True,
                        compile_mode=os.environ.get("LIGHTBOX_COMPILE_MODE", "reduce-overhead"),
                        channels_last=True,
                        fuse_qkv=True,
                        warmup=((size, size),),
                    ),
                )
                with contextlib.redirect_stdout(io.StringIO()):
                    fast.engine.warm_up()
                fast.png_level = args.png_level
                setup = time.perf_counter() - started
                c = median_seconds(lambda: ours(fast), args.runs, sync)
                result.update(c_ms=c * 1000, a_over_c=a / c, compile_setup_s=setup)
                print(
                    f"{row.name:13s} {size}x{size} {row.steps:2d} steps  (c) ours compiled {c * 1000:8.1f} ms"
                    f"  a/c {a / c:.2f}x  (compile and warm-up {setup:.0f}s)",
                    flush=True,
                )
            except Exception:
                traceback.print_exc()
            pipes.clear()  # compiled and fused in place: rebuild for later rows
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
