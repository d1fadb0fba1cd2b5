"""Tiny random-weight SD and SDXL pipelines, for tests and a demo with no download.

    python -m inference.tiny OUT_DIR

writes OUT_DIR/tiny-sd and OUT_DIR/tiny-sdxl, each a diffusers pipeline folder
with a tiny ControlNet in its controlnet/ subfolder (the server picks it up).
Weights are random, so images are noise, but every code path runs: sizes,
seeds, masks, LoRA and ControlNet all behave as with real weights.
"""

import json
import sys
from pathlib import Path

SEED = 0
VOCAB_SIZE = 1000
MERGES = [("a", "n"), ("t", "h"), ("th", "e</w>"), ("an", "d</w>"), ("o", "n</w>")]
BOS_ID = 2 * 256 + len(MERGES)
EOS_ID = BOS_ID + 1


def _byte_chars() -> list[str]:
    """CLIP's byte-to-unicode table: 256 printable characters, one per byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tokenizer(folder: Path) -> None:
    """A byte-level BPE CLIP tokenizer written locally (no hub download)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = MERGES
    for a, b in merges:
        vocab[a + b] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    assert vocab["<|startoftext|>"] == BOS_ID and vocab["<|endoftext|>"] == EOS_ID
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        )
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )


def _tokenizer(tmp: Path):
    from transformers import CLIPTokenizer

    write_tokenizer(tmp)
    return CLIPTokenizer.from_pretrained(tmp)


def _text_config(**overrides):
    from transformers import CLIPTextConfig

    # The ids of <|startoftext|> and <|endoftext|> in write_tokenizer's vocab:
    # the pooled text embedding is read at the first end-of-text token.
    values = dict(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
        projection_dim=32,
    )
    values.update(overrides)
    return CLIPTextConfig(**values)


def _vae():
    from diffusers import AutoencoderKL

    # Four levels, so the latent is 1/8 of the image as in the real models.
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        # Self-attention over every latent pixel dominates at 1024 px on a CPU.
        mid_block_add_attention=False,
    )


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )


def randomize_zero_convs(controlnet) -> None:
    """ControlNetModel.from_unet zeroes its output convolutions, so it changes
    nothing until trained; give them random values so tests can see it act."""
    import torch

    modules = list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block]
    with torch.no_grad():
        for conv in modules:
            torch.nn.init.normal_(conv.weight, std=0.5)
            torch.nn.init.normal_(conv.bias, std=0.1)


def build_sd(tmp: Path):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        # Attention only at the coarse level keeps 512-1024 px usable on a CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=_tokenizer(tmp / "tok"),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(tmp: Path):
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,  # text_encoder (32) + text_encoder_2 (32)
    )
    tokenizer = _tokenizer(tmp / "tok")
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config()),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        add_watermarker=False,
    )


def write_pipeline(pipe, folder: Path) -> None:
    import torch
    from diffusers import ControlNetModel

    pipe.save_pretrained(folder)
    torch.manual_seed(SEED + 2)
    controlnet = ControlNetModel.from_unet(pipe.unet)
    randomize_zero_convs(controlnet)
    controlnet.save_pretrained(folder / "controlnet")


def write_all(out_dir) -> list[Path]:
    import tempfile

    out = Path(out_dir)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in (("tiny-sd", build_sd), ("tiny-sdxl", build_sdxl)):
            folder = out / name
            write_pipeline(build(Path(tmp) / name), folder)
            written.append(folder)
    return written


def write_random_lora(model_dir, path, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA for a pipeline folder's UNet with random weights, saved in the
    format diffusers' load_lora_weights reads (pytorch_lora_weights.safetensors)."""
    import torch
    from diffusers import DiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: make the LoRA act
                param.normal_(std=0.5)
    path = Path(path)
    pipeline_class = DiffusionPipeline.load_config(model_dir)["_class_name"]
    import diffusers

    getattr(diffusers, pipeline_class).save_lora_weights(
        path.parent,
        unet_lora_layers=get_peft_model_state_dict(unet),
        weight_name=path.name,
        safe_serialization=True,
    )
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m inference.tiny OUT_DIR", file=sys.stderr)
        return 2
    for folder in write_all(argv[0]):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
