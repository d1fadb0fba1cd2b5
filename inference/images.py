"""Image plumbing around the pipelines: loading, masks, outpainting canvases,
canny edges, compositing and PNG output."""

import os
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 2048  # larger inputs are processed scaled down, then scaled back
_PNG_THREADS = min(8, os.cpu_count() or 1)
_png_pool = ThreadPoolExecutor(max_workers=_PNG_THREADS, thread_name_prefix="png")


def load_rgb(path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def load_mask(path, size) -> np.ndarray:
    """A boolean array, True where the image is to be repainted (white)."""
    with Image.open(path) as im:
        mask = ImageOps.exif_transpose(im).convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.NEAREST)
    return np.asarray(mask) > 127


def round8(value: int) -> int:
    return max(8, value - value % 8)


def working_size(width: int, height: int) -> tuple[int, int]:
    """The size a pipeline runs at for an image of this size: sides a multiple
    of 8, scaled down to fit MAX_SIDE."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    return round8(int(width * scale)), round8(int(height * scale))


@dataclass(frozen=True)
class Margins:
    top: int
    right: int
    bottom: int
    left: int


OUTPAINTING_PATTERN = r"^\s*\d{1,4}(\s*,\s*\d{1,4}){0,3}\s*$"


def parse_outpainting(text: str) -> Margins:
    """Pixels to add on each side, in CSS margin order: "128" (all sides),
    "0,256" (top/bottom, left/right), "0,256,64" (top, left/right, bottom) or
    "0,256,0,256" (top, right, bottom, left)."""
    if not re.match(OUTPAINTING_PATTERN, text):
        raise ValueError(f"outpainting: expected 1 to 4 comma-separated pixel counts, got {text!r}")
    v = [int(x) for x in text.split(",")]
    if len(v) == 1:
        v = v * 4
    elif len(v) == 2:
        v = [v[0], v[1], v[0], v[1]]
    elif len(v) == 3:
        v = [v[0], v[1], v[2], v[1]]
    return Margins(*v)


def extend_canvas(image: Image.Image, mask: np.ndarray | None, m: Margins):
    """The image on a larger canvas, its new border filled by stretching the
    edge pixels (a better start than grey), and the mask grown to cover it."""
    pixels = np.asarray(image)
    pad = ((m.top, m.bottom), (m.left, m.right))
    canvas = np.pad(pixels, pad + ((0, 0),), mode="edge")
    inner = mask if mask is not None else np.zeros(pixels.shape[:2], dtype=bool)
    grown = np.pad(inner, pad, mode="constant", constant_values=True)
    return Image.fromarray(canvas), grown


def composite(original: Image.Image, generated: Image.Image, mask: np.ndarray) -> Image.Image:
    """Generated pixels inside the mask, the original's exactly outside it."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.LANCZOS)
    out = np.where(mask[..., None], np.asarray(generated), np.asarray(original))
    return Image.fromarray(out.astype(np.uint8))


def mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray((mask * 255).astype(np.uint8), mode="L")


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges as a 3-channel image, what canny ControlNets were trained on."""
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """An RGB PNG, deflated in parallel strips as pigz does.

    Pillow filters and deflates on one core: 50-250 ms for a 512-1024 px
    image, as long as the whole generation on a fast GPU. Here each row gets
    PNG's "up" filter (one numpy pass), and horizontal strips are deflated on
    several threads (zlib releases the GIL) into one valid zlib stream: each
    strip but the last ends on a byte boundary with a sync flush."""
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), dtype=np.uint8)
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    filtered[1:, 0] = 2  # "up": the difference from the row above, modulo 256
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    data = filtered.reshape(-1)
    strips = min(_PNG_THREADS, max(1, height // 32))
    bounds = [len(filtered[: height * i // strips].reshape(-1)) for i in range(strips + 1)]

    def deflate(i: int) -> bytes:
        stream = zlib.compressobj(level, zlib.DEFLATED, -15)
        out = stream.compress(data[bounds[i] : bounds[i + 1]])
        return out + stream.flush(zlib.Z_FINISH if i == strips - 1 else zlib.Z_SYNC_FLUSH)

    body = b"".join(_png_pool.map(deflate, range(strips)) if strips > 1 else [deflate(0)])
    idat = b"\x78\x01" + body + struct.pack(">I", zlib.adler32(data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def save_png(image: Image.Image, path, level: int = 1) -> None:
    with open(path, "wb") as f:
        f.write(encode_png(np.asarray(image.convert("RGB")), level))
