"""Where weights come from: a local folder, the Hugging Face cache, or the hub."""

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path


class MissingModel(RuntimeError):
    pass


def _patterns(fp16: bool) -> list[str]:
    # Only the diffusers folders, never the single-file checkpoints at a repo's root.
    weights = "*/*.fp16.safetensors" if fp16 else "*/*.safetensors"
    return ["model_index.json", "*/*.json", "*/*.txt", "tokenizer*/*", weights]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def how_to_get(model_id: str) -> str:
    return (
        f"model {model_id!r} is not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub cannot be reached. "
        f"On a machine with internet run `hf download {model_id}` "
        "(or `huggingface-cli download ...`), then copy the cache here or point HF_HOME at it; "
        "or set MODEL_ID to a local diffusers folder."
    )


def model_dir(model_id: str, fp16: bool) -> str:
    """A local folder holding the model, downloading it if the hub is reachable."""
    if not model_id:
        raise MissingModel("MODEL_ID is not set: give a Hugging Face id or a local folder")
    if os.path.isdir(model_id):
        return model_id
    if model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        raise MissingModel(f"model folder {model_id!r} does not exist")
    from huggingface_hub import snapshot_download

    for variant_fp16 in ((True, False) if fp16 else (False,)):
        try:
            folder = snapshot_download(
                model_id, local_files_only=True, allow_patterns=_patterns(variant_fp16)
            )
            if any(Path(folder).glob("*/*.safetensors")):
                return folder
        except Exception:
            pass
    if _offline():
        raise MissingModel(how_to_get(model_id))
    try:
        return snapshot_download(model_id, allow_patterns=_patterns(fp16))
    except Exception as e:
        raise MissingModel(how_to_get(model_id) + f" ({type(e).__name__}: {e})") from e


def has_fp16_variant(folder: str) -> bool:
    return any(Path(folder).glob("unet/*.fp16.safetensors"))


# LoRA files: a name inside LORA_DIR, or an http(s) URL downloaded once.

LORA_PATTERN = r"^(https?://\S+|[A-Za-z0-9_][A-Za-z0-9_.-]*)$"
MAX_LORA_BYTES = 2 * 1024**3


def lora_dir() -> Path:
    return Path(os.environ.get("LORA_DIR", "var/loras")).resolve()


def lora_file(ref: str) -> Path:
    if ref.startswith(("http://", "https://")):
        return _download_lora(ref)
    root = lora_dir()
    candidates = [root / ref, root / f"{ref}.safetensors"]
    for path in candidates:
        resolved = path.resolve()
        # A name, not a path: the schema's pattern already refuses slashes;
        # this also refuses symlinks that lead out of LORA_DIR.
        if resolved.parent != root and root not in resolved.parents:
            raise ValueError(f"lora {ref!r} is outside LORA_DIR")
        if resolved.is_file():
            return resolved
    raise ValueError(f"lora {ref!r} not found in LORA_DIR ({root})")


def _download_lora(url: str) -> Path:
    cache = lora_dir() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".safetensors")
    if target.is_file():
        return target
    print(f"downloading lora {url}")
    with urllib.request.urlopen(url, timeout=60) as response:
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".part")
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_LORA_BYTES:
                    os.unlink(tmp)
                    raise ValueError(f"lora {url} is larger than {MAX_LORA_BYTES} bytes")
                out.write(chunk)
    with open(tmp, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or int.from_bytes(header, "little") > 100_000_000:
        os.unlink(tmp)
        raise ValueError(f"lora {url} is not a .safetensors file")
    os.replace(tmp, target)
    return target
