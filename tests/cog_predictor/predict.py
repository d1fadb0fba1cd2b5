"""A fast, deterministic Cog predictor that stands in for a diffusion model in tests.

It draws a flat image whose colour comes from the prompt and seed, logs one
"step k/N" line per step like diffusers does, and can be told to misbehave.
Its "safety checker" flags the outputs the `nsfw` input names, and reports
them the way Lightbox reads a checker's verdict (app.services.moderation): a log line
`nsfw_content_detected: [...]`, one boolean per output.
"""

import hashlib
import os
import tempfile
import time

from cog import BasePredictor, Input, Path
from PIL import Image


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.step_delay = float(os.environ.get("TEST_PREDICTOR_STEP_DELAY", "0"))
        # Tests that count runs (a prediction must never run twice) read this file.
        self.run_log = os.environ.get("TEST_PREDICTOR_RUN_LOG", "")

    def predict(
        self,
        prompt: str = Input(description="What to draw."),
        negative_prompt: str = Input(description="What not to draw.", default=""),
        width: int = Input(description="Width in pixels.", default=64, ge=16, le=1024),
        height: int = Input(description="Height in pixels.", default=64, ge=16, le=1024),
        num_outputs: int = Input(description="How many images.", default=1, ge=1, le=4),
        num_inference_steps: int = Input(description="Denoising steps.", default=4, ge=1, le=100),
        guidance_scale: float = Input(description="Guidance.", default=7.5, ge=0, le=20),
        scheduler: str = Input(description="Scheduler.", default="K_EULER", choices=["DDIM", "K_EULER", "PNDM"]),
        seed: int = Input(description="Random seed.", default=None),
        step_delay: float = Input(description="Seconds per step (tests).", default=0.0, ge=0, le=10),
        fail: str = Input(description="Raise this error (tests).", default=""),
        image: Path = Input(description="Starting image; its size is reported in the logs (tests).", default=None),
        nsfw: str = Input(
            description="Comma-separated output indices the stand-in safety checker flags (tests).", default=""
        ),
        disable_safety_checker: bool = Input(description="Turn off the safety checker.", default=False),
    ) -> list[Path]:
        if self.run_log:
            with open(self.run_log, "a") as runs:
                runs.write(prompt.replace("\n", " ") + "\n")
        if image is not None:
            with Image.open(image) as start:
                print(f"image {start.width}x{start.height}", flush=True)
        for step in range(1, num_inference_steps + 1):
            time.sleep(step_delay or self.step_delay)
            print(f"step {step}/{num_inference_steps}", flush=True)
        if fail:
            raise RuntimeError(fail)
        outputs = []
        for index in range(num_outputs):
            digest = hashlib.sha256(f"{prompt}|{seed}|{index}".encode()).digest()
            image = Image.new("RGB", (width, height), tuple(digest[:3]))
            path = Path(tempfile.mkdtemp()) / f"out-{index}.png"
            image.save(path)
            outputs.append(path)
        flagged = {int(index) for index in nsfw.split(",") if index.strip()}
        if flagged and not disable_safety_checker:
            flags = ", ".join("true" if index in flagged else "false" for index in range(num_outputs))
            print(f"nsfw_content_detected: [{flags}]", flush=True)
        return outputs
