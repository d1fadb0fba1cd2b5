"""A grid's axes: what a user types for one axis, turned into its values.

Pure code (no models): the service gives each field's property schema (the
first chosen version's that has it) and the prompt. Kinds:

- ``version``: the model axis; its values are the chosen versions' ids.
- ``field``: any schema field. Numbers: a list ``7, 7.5, 8``, a range with a
  step ``20-40 (+5)`` or a count of evenly spaced values ``1-10 [4]``. An
  enum: ``all`` or a list of its choices. True/false: ``all`` or a list.
  Text: values separated by ``|`` (text may hold commas).
- ``prompt``: search/replace ``fox|cat|owl``: the first term is searched in
  the prompt and each term replaces it (the first leaves the prompt as is).
- ``seed``: a list, a range, or ``N random``.

Every error is an AxisError whose message names the axis and says what to
change, so the playground shows it next to the axis and /v1 per field.
"""

import math
import re
import secrets

MAX_SEED = 2**32 - 1
MAX_AXES = 3
AXIS_NAMES = ("X", "Y", "Z")
# One axis never has more values than this (the cell cap bounds the product).
MAX_VALUES = 1000
MAX_TEXT = 2000
KINDS = ("version", "field", "prompt", "seed")

_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?"
_RANGE = re.compile(
    rf"^\s*(?P<start>{_NUMBER})\s*(?:-|\.\.|to)\s*(?P<end>{_NUMBER})\s*"
    rf"(?:\(\s*(?P<step>{_NUMBER})\s*\)|\[\s*(?P<count>[0-9]{{1,7}})\s*\])?\s*$"
)
_RANDOM = re.compile(r"^\s*([0-9]{1,7})\s+random\s*$", re.IGNORECASE)
_NUMBER_ONLY = re.compile(rf"^\s*{_NUMBER}\s*$")


class AxisError(ValueError):
    """An axis the user typed that cannot be used; the message says why."""


def _number(text, integer):
    if not _NUMBER_ONLY.match(text):
        raise AxisError(f"“{text.strip()[:40]}” is not a number.")
    value = float(text)
    if not math.isfinite(value):
        raise AxisError(f"“{text.strip()[:40]}” is too large.")
    if integer:
        if not value.is_integer():
            raise AxisError(f"{text.strip()} is not a whole number.")
        return int(value)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _tidy(value, integer):
    """A generated value without float noise (0.1 + 0.2)."""
    if integer:
        return int(round(value))
    value = round(value, 10)
    return int(value) if value.is_integer() else value


def _range(match, integer):
    start, end = _number(match["start"], integer), _number(match["end"], integer)
    if match["count"] is not None:
        count = int(match["count"])
        if count < 2:
            raise AxisError("Ask for at least 2 values between the ends of a range, e.g. 1-10 [4].")
        if count > MAX_VALUES:
            raise AxisError(f"{count} values are too many: an axis has at most {MAX_VALUES}.")
        values = [_tidy(start + (end - start) * i / (count - 1), integer) for i in range(count)]
        return list(dict.fromkeys(values))
    if match["step"] is not None:
        step = _number(match["step"], integer)
    elif integer:
        step = 1 if end >= start else -1
    else:
        raise AxisError("Give a step, e.g. 1-2 (+0.25), or a count of values, e.g. 1-2 [5].")
    if step == 0:
        raise AxisError("A range's step cannot be 0.")
    if (end - start) * step < 0:
        raise AxisError(f"A step of {step} never goes from {start} to {end}.")
    count = int(math.floor((end - start) / step + 1e-9)) + 1
    if count > MAX_VALUES:
        raise AxisError(f"That range has {count} values: an axis has at most {MAX_VALUES}.")
    return [_tidy(start + step * i, integer) for i in range(count)]


def _split(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text, integer):
    match = _RANGE.match(text)
    # "-5" alone or "1, -5" are lists; a range has two ends.
    if match and "," not in text:
        return _range(match, integer)
    return [_number(part, integer) for part in _split(text)]


def _bounds(spec, value):
    """Why `value` is outside a number field's range, or ""."""
    for key, test, words in (
        ("minimum", lambda b: value < b, "below its minimum"),
        ("maximum", lambda b: value > b, "above its maximum"),
        ("exclusiveMinimum", lambda b: value <= b, "not above"),
        ("exclusiveMaximum", lambda b: value >= b, "not below"),
    ):
        bound = spec.get(key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and test(bound):
            return f"{value} is {words} {bound}."
    return ""


def _field_values(field, spec, text):
    kind = spec.get("type")
    if "enum" in spec:
        choices = list(spec["enum"])
        if text.strip().lower() == "all":
            return choices
        by_text = {str(choice).lower(): choice for choice in choices}
        values = []
        for part in _split(text):
            if part.lower() not in by_text:
                raise AxisError(f"“{part[:40]}” is not a choice of {field}: {', '.join(map(str, choices))}.")
            values.append(by_text[part.lower()])
        return values
    if kind == "boolean":
        if text.strip().lower() == "all":
            return [False, True]
        known = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        values = []
        for part in _split(text):
            if part.lower() not in known:
                raise AxisError(f"{field} is true or false, not “{part[:40]}”.")
            values.append(known[part.lower()])
        return values
    if kind in ("integer", "number"):
        values = _numbers(text, kind == "integer")
        for value in values:
            problem = _bounds(spec, value)
            if problem:
                raise AxisError(f"{field}: {problem}")
        return values
    if kind == "string" or kind is None:
        if spec.get("format") == "uri":
            raise AxisError(f"{field} is a file: it cannot be an axis.")
        values = [part.strip() for part in text.split("|")]
        limit = spec.get("maxLength")
        for value in values:
            if isinstance(limit, int) and len(value) > limit:
                raise AxisError(f"{field}: a value is longer than {limit} characters.")
        return values
    raise AxisError(f"{field} ({kind}) cannot be an axis.")


def _prompt_values(text, prompt):
    terms = [part.strip() for part in text.split("|")]
    if len(terms) < 2 or not terms[0]:
        raise AxisError("Write the word to replace first, then its replacements: fox|cat|owl.")
    if terms[0] not in (prompt or ""):
        raise AxisError(f"“{terms[0][:40]}” is not in the prompt: the first term is what each value replaces.")
    return terms


def _seed_values(text, maximum):
    match = _RANDOM.match(text)
    if match:
        count = int(match[1])
        if not 1 <= count <= MAX_VALUES:
            raise AxisError(f"Ask for 1 to {MAX_VALUES} random seeds.")
        return list(dict.fromkeys(secrets.randbelow(maximum + 1) for _ in range(count)))
    values = _numbers(text, integer=True)
    for value in values:
        if not 0 <= value <= maximum:
            raise AxisError(f"Seed {value} is outside 0 to {maximum}.")
    return values


def parse(kind, text="", *, field="", specs=None, prompt="", versions=None, max_seed=MAX_SEED):
    """One axis as stored on a Grid: {"kind", "field", "text", "values", "labels"}.

    `specs`: {field: property schema} of the fields the chosen versions
    have; `versions`: [(id, label)] of the chosen versions, for the model
    axis. Raises AxisError."""
    if kind not in KINDS:
        raise AxisError(f"Unknown kind of axis “{str(kind)[:20]}”: one of {', '.join(KINDS)}.")
    if not isinstance(text, str):
        raise AxisError("Type the axis's values as text.")
    if len(text) > MAX_TEXT:
        raise AxisError(f"An axis's text is at most {MAX_TEXT} characters.")
    if any(ord(ch) < 32 and ch not in "\t" for ch in text):
        raise AxisError("An axis's values cannot hold control characters or line breaks.")
    text = text.strip()
    if kind == "version":
        versions = list(versions or [])
        if len(versions) < 1:
            raise AxisError("Pick at least one model version for the version axis.")
        return {
            "kind": "version",
            "field": "",
            "text": "",
            "values": [v for v, _ in versions],
            "labels": [label for _, label in versions],
        }
    if not text:
        raise AxisError("Give this axis some values.")
    if kind == "prompt":
        values = _prompt_values(text, prompt)
        field = "prompt"
    elif kind == "seed":
        values = _seed_values(text, max_seed)
        field = "seed"
    else:
        specs = specs or {}
        if field in ("", None):
            raise AxisError("Pick the field this axis changes.")
        if field == "seed":
            return parse("seed", text, max_seed=max_seed)
        if field not in specs:
            raise AxisError(f"Unknown field “{str(field)[:40]}”: none of the chosen versions has it.")
        values = _field_values(field, specs[field], text)
    values = list(_dedupe(values))
    if not values:
        raise AxisError("Give this axis some values.")
    if len(values) > MAX_VALUES:
        raise AxisError(f"{len(values)} values are too many: an axis has at most {MAX_VALUES}.")
    return {"kind": kind, "field": field, "text": text, "values": values, "labels": [_label(v) for v in values]}


def _dedupe(values):
    seen = set()
    for value in values:
        key = (type(value).__name__ if isinstance(value, bool) else "", value)
        if key not in seen:
            seen.add(key)
            yield value


def _label(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check(axes):
    """Refuse what several axes cannot do together: more than three, two on
    the same field (a prompt search/replace and a prompt list both change
    the prompt), two model axes."""
    if len(axes) > MAX_AXES:
        raise AxisError(f"A grid has at most {MAX_AXES} axes (X, Y and Z).")
    seen = {}
    for name, axis in zip(AXIS_NAMES, axes):
        key = "version" if axis["kind"] == "version" else axis["field"]
        if key in seen:
            raise AxisError(f"Axes {seen[key]} and {name} both change {key}: keep one.")
        seen[key] = name
    return axes


def count(axes):
    """Cells in the grid: the product of the axes' lengths."""
    return math.prod(len(axis["values"]) for axis in axes) if axes else 1


def apply(base, axes, coords):
    """(input, version id or None) of one cell: `base` with each axis's value
    at `coords` (one index per axis) put in."""
    cell, version = dict(base), None
    for axis, index in zip(axes, coords):
        value = axis["values"][index]
        if axis["kind"] == "version":
            version = value
        elif axis["kind"] == "prompt":
            search = axis["values"][0]
            cell["prompt"] = str(base.get("prompt", "")).replace(search, value)
        else:
            cell[axis["field"]] = value
    return cell, version
