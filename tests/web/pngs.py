"""Sample PNGs as each tool writes them: A1111 (a tEXt "parameters" chunk, as
Pillow's PngInfo writes it; iTXt when the text is not Latin-1), ComfyUI (tEXt
"prompt" and "workflow"), and Lightbox's own (app.core.images)."""

import io
import json
import struct
import zlib

from PIL import Image, PngImagePlugin

A1111_TEXT = (
    "a red fox in fresh snow, golden hour,\n"
    "(masterpiece:1.2), detailed fur\n"
    "Negative prompt: blurry, lowres,\n"
    "watermark\n"
    "Steps: 24, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, "
    'Model hash: 6ce0161689, Model: tiny-sd, Clip skip: 2, Lora hashes: "fox: 0a1b2c, snow: 3d4e", Version: v1.10.1'
)

COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 777,
            "steps": 12,
            "cfg": 5.5,
            "sampler_name": "euler_ancestral",
            "scheduler": "normal",
            "positive": ["6", 0],
            "negative": ["7", 0],
            "model": ["4", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 384, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
}


def png(texts=None, itxt=None, size=(8, 8)):
    """A PNG with tEXt chunks `texts` and iTXt chunks `itxt`, via Pillow as the tools write them."""
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def a1111_png(text=A1111_TEXT):
    return png({"parameters": text})


def comfyui_png():
    return png({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps({"nodes": [], "links": []})})


def chunk(kind, data, crc=None):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def with_chunks(*chunks):
    """A valid small PNG with raw `chunks` put right after IHDR."""
    data = png()
    after_ihdr = 8 + 8 + 13 + 4
    return data[:after_ihdr] + b"".join(chunks) + data[after_ihdr:]
