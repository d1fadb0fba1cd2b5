"""Image plumbing around the pipelines: loading, masks, outpainting canvases,
canny edges, compositing and PNG output."""

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 2048  # larger inputs are processed scaled down, then scaled back


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


def save_png(image: Image.Image, path, compress_level: int = 1) -> None:
    # Level 1 is several times faster than Pillow's default 6 for a file
    # about a third larger: the app re-encodes when it embeds metadata.
    image.save(path, format="PNG", compress_level=compress_level)
