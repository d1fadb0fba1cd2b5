"""The GPU figures issue 13 asks for, in one script that fits in ten minutes.

    python bench/gpu_train.py [--steps 30] [--runs 5] [--json out.jsonl]
    python bench/gpu_train.py --tiny      # the same code on a CPU, tiny shapes

1. LoRA training steps per second on full-size SDXL (random weights, built
   from its config as bench/gpu_predictor.py does: nothing can be downloaded
   on the GPU machines), 1024 px, batch 1, rank 4, in one process:
   (t1) our trainer (inference/train.py: frozen weights in bfloat16, LoRA in
        float32, each image's latent distribution encoded once);
   (t2) the training step of diffusers' examples/dreambooth/
        train_dreambooth_lora_sdxl.py with the settings of its README
        (--mixed_precision fp16 --resolution 1024 --train_batch_size 1
        --rank 4 --learning_rate 1e-4): frozen weights in float16, the VAE in
        float32 encoding every batch again, the UNet under fp16 autocast with a
        gradient scaler, AdamW on float32 LoRA weights, clipping at 1.0.
   Each is timed over --steps steps after three warm-up steps.
2. Issue 3's two figures, by bench/gpu_predictor.py in child processes:
   (a) SD-Turbo 1 step, (b) with stored PNGs (--png-level 0): target b/a <= 1.05;
   SD-Turbo 4 steps compiled, with the current PNG writer: target a/c >= 1.5.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import redirect_stdout
from io import BytesIO, StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
PROMPT = "a photo of sks dog"


def images(count: int, size: int):
    import numpy as np
    from PIL import Image

    return [
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8))
        for i in range(count)
    ]


def images_zip(path: Path, count: int, size: int) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i, image in enumerate(images(count, size)):
            buffer = BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(f"{i}.png", buffer.getvalue())
    return path


def timed_steps(step, steps: int, sync) -> float:
    """Seconds per step over `steps` steps, after three warm-up steps."""
    for _ in range(3):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - started) / steps


def ours(pipe, archive, resolution: int, rank: int, batch: int, steps: int) -> float:
    from diffusers import DDPMScheduler

    from inference import families
    from inference.train import Trainer, freeze

    freeze(pipe)
    trainer = Trainer(pipe, DDPMScheduler.from_config(pipe.scheduler.config), families.get("sdxl"))
    common = dict(
        archive=archive,
        token_string="sks",
        caption_prefix="a photo of sks dog",
        learning_rate=1e-4,
        rank=rank,
        resolution=resolution,
        batch_size=batch,
        seed=0,
        out_dir=tempfile.mkdtemp(),
    )
    with redirect_stdout(StringIO()):
        trainer.run(steps=3, **common)  # warm-up
        trainer.run(steps=steps, **common)
    return trainer.seconds_per_step


def diffusers_example(pipe, pictures, resolution: int, rank: int, batch: int, steps: int, device: str) -> float:
    """train_dreambooth_lora_sdxl.py's loop body (text encoders frozen, so
    its prompt embeddings are computed once, as the script does then)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    cuda = device == "cuda"
    weight_dtype = torch.float16 if cuda else torch.float32
    unet, vae = pipe.unet, pipe.vae
    unet.to(weight_dtype)
    pipe.text_encoder.to(weight_dtype)
    pipe.text_encoder_2.to(weight_dtype)
    vae.to(torch.float32)  # the script keeps SDXL's VAE in float32 (it overflows in float16)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGET_MODULES),
        adapter_name="example",
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # cast_training_params(unet, dtype=torch.float32)
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device=device, do_classifier_free_guidance=False)
    time_ids = pipe._get_add_time_ids(
        (resolution, resolution),
        (0, 0),
        (resolution, resolution),
        dtype=weight_dtype,
        text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
    ).to(device)
    pixels = torch.stack(
        [
            torch.from_numpy(np.asarray(p.resize((resolution, resolution)), dtype=np.float32) / 127.5 - 1).permute(
                2, 0, 1
            )
            for p in pictures
        ]
    )
    index = [0]
    unet.train()

    def step():
        chosen = [(index[0] + i) % len(pixels) for i in range(batch)]
        index[0] += batch
        batch_pixels = pixels[chosen].to(device, torch.float32)
        with torch.no_grad():
            latents = vae.encode(batch_pixels).latent_dist.sample() * vae.config.scaling_factor
        latents = latents.to(weight_dtype)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), device=device).long()
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(device, dtype=weight_dtype, enabled=cuda):
            prediction = unet(
                noisy,
                timesteps,
                embeds.repeat(batch, 1, 1),
                added_cond_kwargs={"text_embeds": pooled.repeat(batch, 1), "time_ids": time_ids.repeat(batch, 1)},
                return_dict=False,
            )[0]
        loss = F.mse_loss(prediction.float(), noise.float())
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    try:
        return timed_steps(step, steps, sync)
    finally:
        unet.eval()
        unet.delete_adapters("example")


def training_rows(args, device: str) -> list[dict]:
    import torch
    from gpu_predictor import build_pipeline

    from inference.train import _frozen_dtype

    resolution = 64 if args.tiny else 1024
    rank, batch = 4, 1
    work = Path(tempfile.mkdtemp(prefix="lightbox-gpu-train-"))
    archive = images_zip(work / "images.zip", 4, resolution)
    started = time.perf_counter()
    pipe = build_pipeline("sdxl", device, _frozen_dtype(device), args.tiny)
    print(f"built sdxl in {time.perf_counter() - started:.1f}s", flush=True)
    rows = []
    t1 = ours(pipe, archive, resolution, rank, batch, args.steps)
    rows.append(dict(row="train-sdxl-ours", resolution=resolution, batch=batch, rank=rank, seconds_per_step=t1))
    print(f"(t1) ours              {resolution}px batch {batch} rank {rank}: {1 / t1:6.2f} steps/s", flush=True)
    t2 = diffusers_example(pipe, images(4, resolution), resolution, rank, batch, args.steps, device)
    rows.append(
        dict(row="train-sdxl-diffusers-example", resolution=resolution, batch=batch, rank=rank, seconds_per_step=t2)
    )
    print(
        f"(t2) diffusers example {resolution}px batch {batch} rank {rank}: {1 / t2:6.2f} steps/s"
        f"  ours/example {t2 / t1:.2f}x",
        flush=True,
    )
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def predictor_rows(args) -> list[dict]:
    """Issue 3's two unmeasured figures, each in a fresh process."""
    runs = ["--runs", "1" if args.tiny else str(args.runs)] + (["--tiny"] if args.tiny else [])
    rows = []
    for label, extra in (
        ("sd-turbo-1, stored PNG", ["--rows", "sd-turbo-1", "--png-level", "0"]),
        # torch.compile on a CPU takes minutes (inductor's C++): --tiny checks the row without it.
        ("sd-turbo-4 compiled", ["--rows", "sd-turbo-4"] + ([] if args.tiny else ["--compile", "sd-turbo-4"])),
    ):
        out = Path(tempfile.mkdtemp()) / "rows.jsonl"
        command = [sys.executable, str(ROOT / "bench" / "gpu_predictor.py"), *extra, *runs, "--json", str(out)]
        print(f"{label}: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, timeout=args.child_timeout, capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        if done.returncode or not out.exists():
            sys.stdout.write(done.stderr[-3000:])
            continue
        rows += [json.loads(line) for line in out.read_text().splitlines()]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per trainer")
    parser.add_argument("--runs", type=int, default=5, help="runs per predictor figure (gpu_predictor.py)")
    parser.add_argument("--tiny", action="store_true", help="tiny models at 64 px: check the script on a CPU")
    parser.add_argument("--skip", default="", help="parts to leave out: train, predictor")
    parser.add_argument("--child-timeout", type=int, default=420, help="seconds for each gpu_predictor.py run")
    parser.add_argument("--json", help="append every row's figures to this file as JSON lines")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps = min(args.steps, 3)

    import diffusers
    import torch

    from inference.engine import pin_threads

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if device == "cpu":
        os.environ.setdefault("LIGHTBOX_DEVICE", "cpu")
        pin_threads()
    diffusers.utils.logging.set_verbosity_error()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, diffusers {diffusers.__version__}", flush=True)
    skip = set(filter(None, args.skip.split(",")))
    rows = []
    if "train" not in skip:
        rows += training_rows(args, device)
    if "predictor" not in skip:
        rows += predictor_rows(args)
    for row in rows:
        row["device"] = name
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    by_name = {r["row"]: r for r in rows}
    if "sd-turbo-1" in by_name:
        print(f"SD-Turbo 1 step, stored PNG: b/a {by_name['sd-turbo-1']['b_over_a']:.3f} (target <= 1.05)")
    if "c_ms" in by_name.get("sd-turbo-4", {}):
        print(f"SD-Turbo 4 steps compiled: a/c {by_name['sd-turbo-4']['a_over_c']:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
