"""Pillow work on images: thumbnails, generation parameters in PNG files, link previews, download names."""

import io
import json
import re
import struct
import unicodedata
import zlib

from PIL import Image

THUMBNAIL_WIDTH = 384
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def a1111_parameters(prediction_input, version_ref):
    """The `parameters` text A1111, Civitai and others read from a PNG."""
    lines = [prediction_input.get("prompt", "")]
    if prediction_input.get("negative_prompt"):
        lines.append(f"Negative prompt: {prediction_input['negative_prompt']}")
    settings = []
    for label, key in (
        ("Steps", "num_inference_steps"),
        ("Sampler", "scheduler"),
        ("CFG scale", "guidance_scale"),
        ("Seed", "seed"),
    ):
        if prediction_input.get(key) is not None:
            settings.append(f"{label}: {prediction_input[key]}")
    if prediction_input.get("width") and prediction_input.get("height"):
        settings.append(f"Size: {prediction_input['width']}x{prediction_input['height']}")
    settings.append(f"Model: {version_ref}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def download_name(model_name, prompt, seed, index, extension, kind=""):
    """A file name that says what the image is: the model, the prompt's first
    words and the seed, e.g. "tiny-sd_a-red-fox-in-fresh-snow_seed-42.png";
    the second image of a prediction ends "-2". Only ASCII letters, digits and
    dashes, so every browser and file system keeps it as it is."""

    def slug(text, limit):
        words = re.sub(r"[^a-z0-9]+", " ", unicodedata.normalize("NFKD", str(text)).lower()).split()
        kept = []
        for word in words:
            if len("-".join([*kept, word])) > limit:
                break
            kept.append(word)
        return "-".join(kept)

    parts = [slug(model_name, 40) or "lightbox", slug(prompt, 48) or "image"]
    if seed is not None and seed != "":
        parts.append(f"seed-{slug(seed, 24)}")
    name = "_".join(parts) + (f"-{index + 1}" if index else "") + (f"-{kind}" if kind else "")
    return f"{name}.{extension}"


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _itxt(keyword, text):
    # iTXt: keyword, null, compression flag 0, method 0, empty language and
    # translated keyword, then UTF-8 text.
    return _chunk(b"iTXt", keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def embed_png_metadata(png_bytes, texts):
    """Insert text chunks right after IHDR without re-encoding the pixels.

    Before the image data, so readers that do not decode it (A1111 reads
    Pillow's `info` straight after opening) still find them."""
    after_ihdr = len(PNG_SIGNATURE) + 8 + 13 + 4
    if not png_bytes.startswith(PNG_SIGNATURE) or png_bytes[12:16] != b"IHDR":
        return png_bytes
    chunks = b"".join(_itxt(keyword, text) for keyword, text in texts.items())
    return png_bytes[:after_ihdr] + chunks + png_bytes[after_ihdr:]


def parameters_chunks(prediction):
    return {
        "parameters": a1111_parameters(prediction.input, prediction.version.ref),
        "lightbox": json.dumps(
            {
                "prediction": prediction.id,
                "version": prediction.version_id,
                "model": str(prediction.version.model),
                "input": prediction.input,
            },
            sort_keys=True,
        ),
    }


def inspect(data, formats=None, decode=False):
    """(width, height, content_type) of image bytes; raises ValueError if not an
    image (of one of `formats`, Pillow's names, when given). With `decode`,
    every pixel is read too, so a damaged file is refused here and not later,
    when a thumbnail is made of it."""
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            if decode:
                image.load()
            return image.width, image.height, Image.MIME.get(image.format, "application/octet-stream")
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise ValueError("not an image Pillow can read") from exc


def thumbnail(data, width=THUMBNAIL_WIDTH):
    """A WebP no wider than `width`, keeping the aspect ratio."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
        if image.width > width:
            image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
        buffer = io.BytesIO()
        # q75 with WebP's slowest, best method: ~18 KB for a detailed 1024² image
        # instead of ~24 KB, so a gallery page of 24 stays well under 600 KB.
        image.save(buffer, "WEBP", quality=75, method=6)
        return buffer.getvalue()


def blurred_thumbnail(data, width=THUMBNAIL_WIDTH):
    """A WebP in which nothing can be made out: shrunk to a few pixels across,
    blurred, and scaled back up. Made on the server, so the explicit pixels
    never reach a browser that should not have them."""
    from PIL import ImageFilter

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        height = max(1, round(image.height * width / image.width))
        tiny = image.resize((12, max(1, round(12 * image.height / image.width))), Image.BILINEAR)
        blurred = tiny.resize((width, height), Image.BILINEAR).filter(ImageFilter.GaussianBlur(width / 24))
        buffer = io.BytesIO()
        blurred.save(buffer, "WEBP", quality=60)
        return buffer.getvalue()


def side_by_side(pictures, size=(1200, 630), background=(17, 17, 21)):
    """A link preview (og:image) of a comparison: each (image bytes, label)
    in a column of its own, the image fitted whole into it, the label (a
    model's name) under it. JPEG: a preview is a photo, and small."""
    from PIL import ImageDraw, ImageFont

    width, height = size
    label_height = 56
    gap = 8
    count = max(1, len(pictures))
    column = (width - gap * (count + 1)) // count
    canvas = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=26)
    for index, (data, label) in enumerate(pictures):
        left = gap + index * (column + gap)
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            image.thumbnail((column, height - label_height - gap), Image.LANCZOS)
            if image.width < column and image.height < height - label_height - gap:
                scale = min(column / image.width, (height - label_height - gap) / image.height)
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            # The picture and its label under it, centred together.
            top = (height - image.height - label_height) // 2
            canvas.paste(image, (left + (column - image.width) // 2, top))
        text = label
        while text and draw.textlength(text, font=font) > column:
            text = text[:-2] + "…" if len(text) > 2 else ""
        middle = (left + column // 2, top + image.height + label_height // 2)
        draw.text(middle, text, font=font, fill=(236, 236, 241), anchor="mm")
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()


# A difference heatmap's colours, from none (black) to the largest (pale
# yellow), through purple and orange: an "inferno"-like ramp, readable on a
# light or a dark page and by most colour-blind viewers.
HEAT_STOPS = ((0, (0, 0, 4)), (64, (87, 16, 110)), (128, (188, 55, 84)), (192, (249, 142, 9)), (255, (252, 255, 164)))
# Channel levels (of 255) under which two pixels count as the same: PNG
# outputs of the same seed on other hardware differ by a level or two.
SAME_PIXEL_LEVELS = 8


def difference(first, second):
    """(heatmap PNG, stats) of two images: each pixel's largest channel
    difference, shown on a square-root scale so small differences show, in
    HEAT_STOPS' colours. Images of different sizes: the second is scaled to
    the first's size (stretched if its shape differs), as the viewer's
    slider and flip show it. stats: `mean` (levels of 255), `changed` (the
    share of pixels differing by more than SAME_PIXEL_LEVELS), `max`, and
    `scaled` (whether the second was scaled)."""
    import numpy as np

    with Image.open(io.BytesIO(first)) as a, Image.open(io.BytesIO(second)) as b:
        a, b = a.convert("RGB"), b.convert("RGB")
        scaled = a.size != b.size
        if scaled:
            b = b.resize(a.size, Image.LANCZOS)
        delta = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max(axis=2)
    shown = np.sqrt(delta / 255.0) * 255.0
    levels = [level for level, _ in HEAT_STOPS]
    palette = np.stack(
        [np.interp(np.arange(256), levels, [color[channel] for _, color in HEAT_STOPS]) for channel in range(3)],
        axis=1,
    )
    # A palette image: one byte a pixel to compress, not three.
    heat = Image.frombytes("P", a.size, shown.round().astype(np.uint8).tobytes())
    heat.putpalette(palette.astype(np.uint8).tobytes())
    buffer = io.BytesIO()
    heat.save(buffer, "PNG", compress_level=3)  # a page waits for it: speed over bytes
    stats = {
        "mean": float(delta.mean()),
        "changed": float((delta > SAME_PIXEL_LEVELS).mean()),
        "max": int(delta.max()),
        "scaled": scaled,
        "width": a.width,
        "height": a.height,
    }
    return buffer.getvalue(), stats


def labelled_grid(cells, columns, rows, *, x_name="", y_name="", title="", cell=192, background=(255, 255, 255)):
    """One PNG of a grid (issue 14): `cells[r][c]` image bytes or None (a
    cell with no image: left grey), the column labels across the top and the
    row labels down the left, the axes' names in the corner, `title` above."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(12, cell // 12))
    small = ImageFont.load_default(size=max(11, cell // 14))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_labels = [str(label) for label in rows] or [""]
    left = min(360, max([int(probe.textlength(label, font=font)) for label in row_labels + [y_name]] + [0]) + 24)
    title_height = 40 if title else 0
    top = title_height + (cell // 5 + 24)
    gap = 4
    width = left + len(columns) * (cell + gap) + gap
    height = top + max(1, len(rows)) * (cell + gap) + gap
    canvas = Image.new("RGB", (max(width, 200), height), background)
    draw = ImageDraw.Draw(canvas)
    ink, muted, empty = (23, 23, 28), (85, 85, 106), (228, 228, 234)

    def fitted(text, room, face):
        text = str(text)
        while text and draw.textlength(text, font=face) > room:
            text = text[:-2] + "…" if len(text) > 2 else ""
        return text

    if title:
        draw.text((gap * 2, 12), fitted(title, width - 16, font), font=font, fill=ink)
    # Words, not arrows: Pillow's built-in font has no arrows.
    corner = f"rows: {y_name} · columns: {x_name}" if y_name else (f"columns: {x_name}" if x_name else "")
    draw.text((gap * 2, title_height + 8), fitted(corner, left + cell, small), font=small, fill=muted)
    for c, label in enumerate(columns):
        x = left + gap + c * (cell + gap)
        draw.text((x + cell // 2, top - 12), fitted(label, cell, font), font=font, fill=ink, anchor="mb")
    for r, label in enumerate(rows or [""]):
        y = top + gap + r * (cell + gap)
        draw.text((left - 12, y + cell // 2), fitted(label, left - 16, font), font=font, fill=ink, anchor="rm")
        for c in range(len(columns)):
            x = left + gap + c * (cell + gap)
            data = cells[r][c] if r < len(cells) and c < len(cells[r]) else None
            if data is None:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=empty)
                continue
            with Image.open(io.BytesIO(data)) as image:
                image = image.convert("RGB")
                image.thumbnail((cell, cell), Image.LANCZOS)
                if image.width < cell and image.height < cell:
                    scale = min(cell / image.width, cell / image.height)
                    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
                canvas.paste(image, (x + (cell - image.width) // 2, y + (cell - image.height) // 2))
    return canvas


def png_of(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def jpeg_fitted(image, size=(1200, 630), background=(255, 255, 255)):
    """`image` fitted whole into `size` (a link preview), as JPEG."""
    image = image.copy()
    image.thumbnail(size, Image.LANCZOS)
    canvas = Image.new("RGB", size, background)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def without_metadata(data, width=1536):
    """The image as a WebP with none of its metadata (PNG text chunks name the
    model), no wider than `width`: what the blind arena shows."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
        if image.width > width:
            image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", quality=90, method=2)
        return buffer.getvalue()
