"""Generation parameters read back from a PNG, or from the text people paste:
Lightbox's own chunks (app.core.images.parameters_chunks: a "lightbox" JSON
iTXt and an A1111-style "parameters" iTXt), AUTOMATIC1111's "parameters"
text (tEXt, zTXt or iTXt), and ComfyUI's "prompt" graph (its sampler and
text nodes).

The file is never handed to a decoder: the chunks are walked here, and only
text chunks are read. Whatever the bytes, this returns or raises
NotReadable, never anything else: at most MAX_CHUNKS chunks, a text larger
than MAX_TEXT_BYTES is skipped, compressed text is inflated with a cap (a
zlib bomb stops at the cap), a chunk whose CRC does not match is skipped, and
a file cut short keeps what came before the cut.
"""

import json
import re
import struct
import zlib
from dataclasses import dataclass, field

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 4096
# Lightbox's own chunk carries the input, data URIs of an init image included.
MAX_TEXT_BYTES = 8 * 1024 * 1024
TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")

# AUTOMATIC1111's sampler names (modules/sd_samplers_*.py) as Lightbox's
# scheduler names (inference/engine.py make_scheduler). Ours map to themselves.
A1111_SAMPLERS = {
    "euler a": "K_EULER_ANCESTRAL",
    "euler": "K_EULER",
    "ddim": "DDIM",
    "plms": "PNDM",  # diffusers' PNDM with skip_prk_steps is PLMS
    "heun": "HeunDiscrete",
    "dpm++ 2m": "DPMSolverMultistep",
    "dpm++ 2m karras": "KarrasDPM",
    "lms": "KLMS",
    "lcm": "LCM",
}
OUR_SCHEDULERS = (
    "DDIM",
    "K_EULER",
    "K_EULER_ANCESTRAL",
    "DPMSolverMultistep",
    "PNDM",
    "HeunDiscrete",
    "KarrasDPM",
    "LCM",
    "KLMS",
)
# ComfyUI's sampler_name values that have a Lightbox scheduler.
COMFY_SAMPLERS = {
    "euler": "K_EULER",
    "euler_ancestral": "K_EULER_ANCESTRAL",
    "ddim": "DDIM",
    "heun": "HeunDiscrete",
    "dpmpp_2m": "DPMSolverMultistep",
    "lms": "KLMS",
    "lcm": "LCM",
}

# A key of A1111's "key: value" pairs ("Steps", "CFG scale", "Lora hashes").
_KEY = re.compile(r"\w[\w \-/+().]{0,63}")
_SIZE = re.compile(r"^(\d{1,6})x(\d{1,6})$")


class NotReadable(ValueError):
    """Nothing to restore from these bytes or this text, with the reason in words."""


@dataclass
class Found:
    """What a file or text said: `values` under Lightbox's input names, the
    model it named (`model`: a name or "owner/name[:version]"), Lightbox's
    `version` id when its own chunk says it, and `unmapped` as (label, value)
    for everything said that has no place in a Lightbox input."""

    source: str
    values: dict = field(default_factory=dict)
    model: str = ""
    version: str = ""
    unmapped: list = field(default_factory=list)


def text_chunks(data):
    """{keyword: text} of the PNG's text chunks (the first of each keyword).
    Raises NotReadable when the bytes are not a PNG at all."""
    if not isinstance(data, (bytes, bytearray)) or not data.startswith(PNG_SIGNATURE):
        raise NotReadable("This is not a PNG file.")
    texts, offset = {}, len(PNG_SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if offset + 8 > len(data):
            break
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 8 + length + 4
        if end > len(data):
            break  # cut short: what came before stands
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        offset = end
        if kind == b"IEND":
            break
        if kind not in TEXT_KINDS or length > MAX_TEXT_BYTES or zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            continue
        keyword, text = _text_of(kind, body)
        if keyword and text is not None:
            texts.setdefault(keyword, text)
    return texts


def _inflate(compressed):
    """The text inflated, or None past MAX_TEXT_BYTES or when broken."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(compressed, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return None
    return None if len(out) > MAX_TEXT_BYTES else out


def _text_of(kind, body):
    keyword, _, rest = body.partition(b"\x00")
    keyword = keyword.decode("latin-1")[:79]
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        raw = _inflate(rest[1:]) if rest[:1] == b"\x00" else None
        return keyword, None if raw is None else raw.decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text.
    if len(rest) < 2:
        return keyword, None
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\x00", 2)
    if len(parts) != 3:
        return keyword, None
    raw = parts[2]
    if compressed:
        raw = _inflate(raw) if method == 0 else None
    return keyword, None if raw is None else raw.decode("utf-8", errors="replace")


def read_png(data):
    """What a PNG says of how it was made: Lightbox's own chunk first, then
    A1111's "parameters", then ComfyUI's "prompt". Raises NotReadable."""
    texts = text_chunks(data)
    if "lightbox" in texts:
        found = parse_lightbox(texts["lightbox"])
        if found is not None:
            return found
    if texts.get("parameters", "").strip():
        return parse_parameters(texts["parameters"])
    if "prompt" in texts:
        found = parse_comfyui(texts["prompt"])
        if found is not None:
            return found
    raise NotReadable(
        "This PNG carries no generation parameters Lightbox can read "
        "(neither Lightbox's own, AUTOMATIC1111's nor ComfyUI's)."
    )


def parse_lightbox(text):
    """Lightbox's own chunk: the prediction's whole input and its version; None if it is not that."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past the interpreter's limit
        return None
    if not isinstance(record, dict) or not isinstance(record.get("input"), dict):
        return None
    values = {str(key): value for key, value in record["input"].items()}
    return Found("lightbox", values, model=str(record.get("model") or ""), version=str(record.get("version") or ""))


def _number(text, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value == value and abs(value) < 1e15 else None  # not NaN, not absurd


def _unquote(value):
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _pairs(line):
    """The (key, value) pairs of A1111's settings line, "Steps: 20, Lora
    hashes: "a: 1, b: 2", ...": a value runs to the next comma unless it is
    quoted. In one pass (A1111's own regex is quadratic on a long line of
    pasted text); a part without a key that looks like one is skipped."""
    pairs, start, length = [], 0, len(line)
    while start < length:
        colon = line.find(":", start)
        if colon < 0:
            break
        key, value_start = line[start:colon].strip(), colon + 1
        while value_start < length and line[value_start] == " ":
            value_start += 1
        if value_start < length and line[value_start] == '"':
            close = value_start + 1
            while close < length and line[close] != '"':
                close += 2 if line[close] == "\\" else 1
            value = line[value_start : close + 1]
            end = line.find(",", close + 1)
        else:
            end = line.find(",", value_start)
            value = line[value_start : end if end >= 0 else length]
        if _KEY.fullmatch(key):
            pairs.append((key, value.strip()))
        if end < 0:
            break
        start = end + 1
    return pairs


def scheduler_for(sampler, schedule_type=""):
    """Lightbox's scheduler name for an A1111 sampler (with its newer separate
    "Schedule type"), or one of ours as it is; None when none fits."""
    name = sampler.strip()
    ours = {scheduler.lower(): scheduler for scheduler in OUR_SCHEDULERS}
    if name.lower() in ours:
        return ours[name.lower()]
    if schedule_type.strip().lower() == "karras" and not name.lower().endswith("karras"):
        name += " Karras"
    return A1111_SAMPLERS.get(name.lower())


def parse_parameters(text):
    """AUTOMATIC1111's "parameters" text (modules/infotext_utils.py): prompt
    lines, then "Negative prompt: ..." lines, then one line of "Key: value"
    pairs. A last line with fewer than three pairs is still prompt, as A1111
    reads it."""
    if not isinstance(text, str) or not text.strip():
        raise NotReadable("Paste the parameters text, or choose a PNG.")
    *lines, last = text.strip().replace("\r\n", "\n").split("\n")
    if len(_pairs(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    found = Found("a1111")
    if "\n".join(prompt).strip():
        found.values["prompt"] = "\n".join(prompt).strip()
    if "\n".join(negative).strip():
        found.values["negative_prompt"] = "\n".join(negative).strip()
    pairs = {key: _unquote(value) for key, value in _pairs(last)}
    schedule_type = pairs.pop("Schedule type", "")
    for key, value in pairs.items():
        if not _take_pair(found, key, value, schedule_type):
            found.unmapped.append((key, value))
    if schedule_type and "Sampler" not in pairs:
        found.unmapped.append(("Schedule type", schedule_type))
    if not found.values and not found.model:
        raise NotReadable("No prompt or settings could be read from this text.")
    return found


def _take_pair(found, key, value, schedule_type):
    """Put one A1111 pair in `found.values`; False when it has no place there."""
    numbers = {"Steps": ("num_inference_steps", int), "CFG scale": ("guidance_scale", float), "Seed": ("seed", int)}
    if key in numbers:
        name, kind = numbers[key]
        number = _number(value, kind)
        if number is None:
            return False
        found.values[name] = number
        return True
    if key == "Size":
        size = _SIZE.match(value)
        if not size:
            return False
        found.values["width"], found.values["height"] = int(size.group(1)), int(size.group(2))
        return True
    if key == "Sampler":
        scheduler = scheduler_for(value, schedule_type)
        if scheduler is None:
            label = f"{value} ({schedule_type})" if schedule_type else value
            found.unmapped.append(("Sampler", f"{label}: no Lightbox scheduler matches"))
            return True
        found.values["scheduler"] = scheduler
        return True
    if key == "Model" and value:
        found.model = value
        return True
    return False


def parse_comfyui(text):
    """ComfyUI's "prompt" chunk (the API graph): the first KSampler's seed,
    steps, cfg and sampler, its positive and negative CLIPTextEncode texts,
    an EmptyLatentImage's size and a checkpoint's name; None if it is not one."""
    try:
        graph = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(graph, dict):
        return None
    nodes = {
        key: node for key, node in graph.items() if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
    }
    sampler = next((n for n in nodes.values() if str(n.get("class_type", "")).startswith("KSampler")), None)
    if sampler is None:
        return None
    inputs, found = sampler["inputs"], Found("comfyui")

    def linked_text(link):
        node = nodes.get(str(link[0])) if isinstance(link, list) and link else None
        text = node["inputs"].get("text") if node else None
        return text if isinstance(text, str) else None

    for name, key, kind in (
        ("seed", "seed", int),
        ("num_inference_steps", "steps", int),
        ("guidance_scale", "cfg", float),
    ):
        value = _number(inputs.get(key, inputs.get("noise_seed")) if key == "seed" else inputs.get(key), kind)
        if value is not None:
            found.values[name] = value
    for name, key in (("prompt", "positive"), ("negative_prompt", "negative")):
        text = linked_text(inputs.get(key))
        if text and text.strip():
            found.values[name] = text.strip()
    sampler_name = str(inputs.get("sampler_name", ""))
    if sampler_name:
        scheduler = COMFY_SAMPLERS.get(sampler_name)
        if scheduler and str(inputs.get("scheduler", "normal")) == "karras" and scheduler == "DPMSolverMultistep":
            scheduler = "KarrasDPM"
        if scheduler:
            found.values["scheduler"] = scheduler
        else:
            found.unmapped.append(("Sampler", f"{sampler_name}: no Lightbox scheduler matches"))
    for node in nodes.values():
        kind = node.get("class_type")
        if kind == "EmptyLatentImage":
            for name in ("width", "height"):
                value = _number(node["inputs"].get(name), int)
                if value is not None:
                    found.values[name] = value
        elif kind == "CheckpointLoaderSimple" and isinstance(node["inputs"].get("ckpt_name"), str):
            found.model = node["inputs"]["ckpt_name"]
    return found
