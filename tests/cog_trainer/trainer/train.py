"""A fast, deterministic Cog trainer that stands in for the LoRA trainer in
tests: served by the real Cog server in train mode (`--x-mode train`,
COG_TRAIN_TYPE_STUB=train.py:train). It reads the images of its zip, logs
"step k/N loss=..." per step like diffusers' trainers, stops when canceled
(Cog cancels between steps), and returns a small .safetensors file whose
content depends on the images, the trigger word and the seed."""

import hashlib
import json
import os
import tempfile
import time
import zipfile

from cog import BaseModel, Input, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(
    input_images: Path = Input(description="A zip of images."),
    token_string: str = Input(description="The trigger word.", default="TOK"),
    max_train_steps: int = Input(description="Steps.", default=4),
    learning_rate: float = Input(description="Learning rate.", default=1e-4),
    lora_rank: int = Input(description="LoRA rank.", default=4),
    resolution: int = Input(description="Resolution.", default=64),
    seed: int = Input(description="Seed.", default=0),
    step_delay: float = Input(description="Seconds per step (tests).", default=0.0),
    fail: str = Input(description="Raise this error (tests).", default=""),
) -> TrainingOutput:
    run_log = os.environ.get("TEST_TRAINER_RUN_LOG", "")
    if run_log:
        with open(run_log, "a") as runs:
            runs.write(token_string + "\n")
    digest = hashlib.sha256(f"{token_string}|{seed}|{lora_rank}".encode())
    with zipfile.ZipFile(input_images) as archive:
        names = sorted(archive.namelist())
        for name in names:
            digest.update(archive.read(name))
    print(f"{len(names)} files, trigger word {token_string}", flush=True)
    delay = step_delay or float(os.environ.get("TEST_TRAINER_STEP_DELAY", "0"))
    for step in range(1, max_train_steps + 1):
        time.sleep(delay)
        print(f"step {step}/{max_train_steps} loss={1.0 / (step + 1):.4f}", flush=True)
    if fail:
        raise RuntimeError(fail)
    header = json.dumps({"__metadata__": {"digest": digest.hexdigest(), "trigger": token_string}}).encode()
    header += b" " * (-len(header) % 8)
    path = Path(tempfile.mkdtemp()) / "lora.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return TrainingOutput(weights=path)
