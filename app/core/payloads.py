"""JSON and text from outside (API bodies, webhooks, stored inputs), checked
before anything else reads them; and data: URIs, decoded in one place.

Python's json parser, jsonschema, the database driver and the encoder that
sends an input on all recurse once per level: a body nested thousands deep
was a RecursionError (a 500) wherever it got first. So nesting is counted on
the raw bytes, before parsing, and refused past MAX_DEPTH.

Text must be what every later step can encode: no lone UTF-16 surrogate
("\\ud800" in JSON parses, but nothing can write it as UTF-8: not a page, not
the worker sending it to a model), no NUL (PostgreSQL refuses it), and no
longer than LIGHTBOX_MAX_TEXT_LENGTH per string.
"""

import base64
import binascii
import json
import math
import re
from urllib.parse import unquote_to_bytes

# Far above any model input (a list of objects is three levels inside the
# body), far below Python's recursion limit.
MAX_DEPTH = 32

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# Opening brackets become 2, closing ones 0, everything else is dropped.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")
INVALID_UNICODE = "Text must be valid Unicode: it has a lone UTF-16 surrogate (U+D800 to U+DFFF)."


class BadPayload(ValueError):
    """JSON Lightbox will not read, with the reason in words."""


def nested_deeper_than(raw, limit):
    """Does the JSON text `raw` (bytes) nest deeper than `limit`? Counted
    without parsing, at C speed: strings dropped, brackets kept, then each
    pass removes every innermost pair, one level of nesting."""
    structure = _JSON_STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    levels = 0
    while structure and levels < limit:
        shorter = structure.replace(b"\x02\x00", b"")
        if len(shorter) == len(structure):
            break  # brackets that do not pair up: closings, then openings
        structure, levels = shorter, levels + 1
    # Balanced JSON within the limit is empty by now; what is left can nest
    # at most as deep as it has openings.
    return levels + structure.count(b"\x02") > limit


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _finite(text):
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is out of range")
    return number


def loads(raw):
    """Parse JSON text (bytes or str); BadPayload when it is not JSON, nests
    deeper than MAX_DEPTH, or holds NaN or Infinity (not JSON, and PostgreSQL
    refuses them)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if nested_deeper_than(raw, MAX_DEPTH):
        raise BadPayload(f"The JSON is nested more than {MAX_DEPTH} levels deep.")
    try:
        return json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload("The body is not valid JSON.") from None


# --- Text ---------------------------------------------------------------------------


def text_error(text, max_length=None):
    """Why `text` cannot be taken, in words, or None."""
    if "\x00" in text:
        return "Text may not contain NUL characters (U+0000)."
    if _unwritable(text):
        return INVALID_UNICODE
    if max_length is not None and len(text) > max_length:
        return f"Text may be at most {max_length:,} characters (this has {len(text):,})."
    return None


def _strings(value, path=()):
    """(path, text) of every string in `value`, keys included (at their
    object's path), without recursing."""
    stack = [(path, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            yield path, item
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                stack.append((path + (key,), child))
                if isinstance(key, str):
                    stack.append((path, key))
        elif isinstance(item, list):
            stack.extend((path + (index,), child) for index, child in reversed(list(enumerate(item))))


def find_bad_text(value, path=(), max_length=None):
    """(path, reason) of the first string in `value` that text_error refuses, or None."""
    for where, text in _strings(value, path):
        reason = text_error(text, max_length)
        if reason:
            return where, reason
    return None


def find_invalid_unicode(value):
    """The path of the first string (or key) in `value` with a lone surrogate, or None."""
    for where, text in _strings(value):
        if not text.isascii() and _SURROGATE.search(text):
            return where
    return None


def _unwritable(text):
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _writable(text):
    if not _unwritable(text):
        return text
    return _UNWRITABLE.sub(lambda match: "" if match.group() == "\x00" else "\ufffd", text)


def writable(value):
    """`value` with every lone surrogate replaced by U+FFFD and NULs dropped,
    and nesting past MAX_DEPTH cut off, for JSON stored before it was checked
    here or sent by a backend: so a page can always show it. Changes
    containers in place."""
    if isinstance(value, str):
        return _writable(value)
    if not isinstance(value, (dict, list)) or not _needs_repair(value):
        return value
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            entries = list(item.items())
            item.clear()
            children = entries
        elif isinstance(item, list):
            children = list(enumerate(item))
        else:
            continue
        for key, child in children:
            if isinstance(child, str):
                child = _writable(child)
            elif isinstance(child, (dict, list)):
                if level >= MAX_DEPTH:
                    child = "(nested too deeply)"
                else:
                    stack.append((child, level + 1))
            item[_writable(key) if isinstance(key, str) else key] = child
    return value


def _needs_repair(value):
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            if isinstance(key, str) and _unwritable(key):
                return True
            if isinstance(child, str):
                if _unwritable(child):
                    return True
            elif isinstance(child, (dict, list)):
                if level >= MAX_DEPTH:
                    return True
                stack.append((child, level + 1))
    return False


# --- data: URIs ---------------------------------------------------------------------


def decode_data_uri(uri):
    """(bytes, media type in lower case, "" when none is given) of a data: URI;
    ValueError when its base64 is not valid."""
    header, _, payload = uri.partition(",")
    media_type = header[5:].split(";")[0].strip().lower()
    try:
        if ";base64" in header.lower():
            return base64.b64decode(payload, validate=True), media_type
        return unquote_to_bytes(payload), media_type
    except (binascii.Error, ValueError) as exc:
        raise ValueError("The data: URI is not valid base64.") from exc
