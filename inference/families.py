"""Model families and their defaults, detected from a pipeline's config.

A family decides the defaults a user sees in the input schema (size, steps,
guidance, scheduler) and which schedulers are offered. It is detected from the
pipeline's config files, so it can be known before any weights are loaded,
and MODEL_FAMILY overrides it (the tiny test pipelines use that to exercise
every family's defaults).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

ALL_SCHEDULERS = (
    "DDIM",
    "K_EULER",
    "K_EULER_ANCESTRAL",
    "DPMSolverMultistep",
    "PNDM",
    "HeunDiscrete",
    "KarrasDPM",
    "LCM",
)
# Turbo models are distilled for 1-4 steps on a trailing timestep schedule;
# multistep warm-up (PNDM), second-order (Heun) and Karras sigmas don't fit.
TURBO_SCHEDULERS = ("K_EULER_ANCESTRAL", "K_EULER", "DDIM", "DPMSolverMultistep", "LCM")


@dataclass(frozen=True)
class Family:
    name: str
    xl: bool
    width: int
    height: int
    steps: int
    max_steps: int
    guidance: float
    scheduler: str
    schedulers: tuple

    @property
    def turbo(self) -> bool:
        return self.name.endswith("turbo")


FAMILIES = {
    f.name: f
    for f in (
        Family("sd15", False, 512, 512, 25, 500, 7.5, "DPMSolverMultistep", ALL_SCHEDULERS),
        Family("sd21", False, 768, 768, 25, 500, 7.5, "DPMSolverMultistep", ALL_SCHEDULERS),
        Family("sdxl", True, 1024, 1024, 30, 500, 5.0, "K_EULER", ALL_SCHEDULERS),
        Family("sd-turbo", False, 512, 512, 1, 4, 0.0, "K_EULER_ANCESTRAL", TURBO_SCHEDULERS),
        Family("sdxl-turbo", True, 512, 512, 1, 4, 0.0, "K_EULER_ANCESTRAL", TURBO_SCHEDULERS),
    )
}

# Hub ids whose family is known without looking at their files.
KNOWN_MODELS = {
    "stabilityai/sd-turbo": "sd-turbo",
    "stabilityai/sdxl-turbo": "sdxl-turbo",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15",
    "runwayml/stable-diffusion-v1-5": "sd15",
    "stabilityai/stable-diffusion-2-1": "sd21",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
}


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def from_config(model_dir) -> str | None:
    """Guess the family from a diffusers pipeline folder, without weights."""
    root = Path(model_dir)
    index = _read_json(root / "model_index.json")
    if not index:
        return None
    xl = "XL" in index.get("_class_name", "")
    unet = _read_json(root / "unet" / "config.json")
    scheduler = _read_json(root / "scheduler" / "scheduler_config.json")
    turbo = scheduler.get("timestep_spacing") == "trailing"
    if xl:
        return "sdxl-turbo" if turbo else "sdxl"
    if turbo:
        return "sd-turbo"
    # SD 2.x uses OpenCLIP (1024-wide) text embeddings, SD 1.x CLIP-L (768).
    if unet.get("cross_attention_dim") == 1024:
        return "sd21"
    return "sd15"


def from_name(model_id: str) -> str | None:
    if model_id in KNOWN_MODELS:
        return KNOWN_MODELS[model_id]
    name = model_id.lower()
    if "turbo" in name:
        return "sdxl-turbo" if "xl" in name else "sd-turbo"
    if "xl" in name:
        return "sdxl"
    if "2-1" in name or "2.1" in name:
        return "sd21"
    return None


def cached_model_dir(model_id: str) -> str | None:
    """The local folder of a model: the folder itself, or its Hugging Face cache snapshot."""
    if os.path.isdir(model_id):
        return model_id
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, local_files_only=True, allow_patterns=["*.json"])
    except Exception:
        return None


def detect(model_id: str, override: str | None = None) -> Family:
    """MODEL_FAMILY wins; then a known hub id; then the config; then the name."""
    if override:
        return get(override)
    if model_id in KNOWN_MODELS:
        return get(KNOWN_MODELS[model_id])
    local = cached_model_dir(model_id)
    name = (local and from_config(local)) or from_name(model_id) or "sd15"
    return get(name)


def from_environment() -> Family:
    return detect(os.environ.get("MODEL_ID", ""), os.environ.get("MODEL_FAMILY") or None)
